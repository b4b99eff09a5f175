"""Raft protocol 3 on real servers: raft names a server by its node ID (persisted in its data
dir), so a server restarted on a new loopback address keeps its ID and its vote, at the new
address, and writes keep working; a datacenter running raft protocol 2 (address IDs) is
restarted server by server with protocol 3 while a client writes, with no failed write (a
write retried as Consul's clients retry "No cluster leader", failed only if it never succeeds
within 5 s), and once every server speaks 3 the leader rewrites every ID to a node ID."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, Node, run_cli, wait_for

pytestmark = pytest.mark.timeout(240)

IPS = ["127.5.60.1", "127.5.60.2", "127.5.60.3"]
MOVED_IP = "127.5.60.9"
CLIENT_IP = "127.5.60.20"
#: a write that has not succeeded this long after it was first sent has failed
WRITE_DEADLINE = 5.0


def raft_servers(node: Node) -> list[dict[str, Any]]:
    return list(node.get_json("/v1/operator/raft/configuration", timeout=3.0)["Servers"])


def node_id(node: Node) -> str:
    return str(node.get_json("/v1/agent/self")["Config"]["NodeID"])


def servers(cluster: Cluster, extra: list[str]) -> list[Node]:
    return [
        cluster.add(
            f"s{i + 1}", ip, server=True, bootstrap_expect=3, retry_join=[IPS[0]], extra=extra
        )
        for i, ip in enumerate(IPS)
    ]


def move(node: Node, ip: str) -> None:
    """The node's next start binds (and serves HTTP on) `ip`; same name, same data dir."""
    node.args = [
        f"-bind={ip}"
        if a.startswith("-bind=")
        else f"-client={ip}"
        if a == f"-client={node.ip}"
        else a
        for a in node.args
    ]
    node.ip = ip


def healthy(node: Node, n: int) -> bool:
    """Autopilot on the leader reports n healthy servers (so one may be restarted)."""
    try:
        status, body, _ = node.request("GET", "/v1/operator/autopilot/health", timeout=3.0)
    except OSError:
        return False
    if status != 200:
        return False
    reply = json.loads(body)
    return bool(reply["Healthy"]) and len(reply["Servers"]) == n


def test_a_server_restarted_on_a_new_address_keeps_its_id_and_its_vote(
    cluster: Cluster, tmp_path: Path
) -> None:
    # dead-server cleanup off: the point is raft's address change, not autopilot's removal
    conf = tmp_path / "autopilot.hcl"
    conf.write_text("autopilot { cleanup_dead_servers = false }\n")
    nodes = servers(cluster, [f"-config-file={conf}"])
    cluster.start_all()
    cluster.wait_http(nodes)
    leader = cluster.node_by_server_addr(cluster.wait_leader(nodes, timeout=30))
    victim = next(n for n in nodes[1:] if n is not leader)
    before = {s["ID"]: s for s in raft_servers(leader)}
    vid = node_id(victim)
    assert before[vid]["Address"] == victim.server_addr  # protocol 3: the node ID is the ID

    victim.kill()
    wait_for(
        lambda: any(
            m["Name"] == victim.name and m["Status"] == 4
            for m in leader.get_json("/v1/agent/members", timeout=3.0)
        ),
        60,
        "gossip to declare the killed server failed",
    )
    move(victim, MOVED_IP)
    victim.start()
    cluster.wait_http([victim])

    def moved() -> dict[str, Any] | None:
        entry = next((s for s in raft_servers(leader) if s["ID"] == vid), None)
        return entry if entry is not None and entry["Address"] == f"{MOVED_IP}:8300" else None

    entry = wait_for(moved, 60, "the leader to update the moved server's address")
    assert entry["Voter"] is True and entry["Node"] == victim.name
    assert len(raft_servers(leader)) == 3
    assert node_id(victim) == vid
    wait_for(lambda: healthy(leader, 3), 60, "autopilot to see the moved server healthy")
    # writes work through the moved server (forwarded to the leader) and are read back
    assert victim.request("PUT", "/v1/kv/moved", b"here")[0] == 200
    wait_for(
        lambda: leader.request("GET", "/v1/kv/moved?raw&consistent")[1] == b"here",
        10,
        "the write through the moved server",
    )
    r = run_cli(["operator", "raft", "list-peers", f"-http-addr={leader.http}"])
    assert r.returncode == 0, r
    row = next(ln.split() for ln in r.stdout.splitlines() if ln.startswith(victim.name))
    assert row[1:3] == [vid, f"{MOVED_IP}:8300"] and row[4] == "true"


class Writer(threading.Thread):
    """Writes distinct keys through a client agent, each retried until it succeeds or
    WRITE_DEADLINE has passed; bounded in count and time."""

    def __init__(self, node: Node, max_writes: int = 5000, max_seconds: float = 200.0) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.max_writes = max_writes
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.retried = 0

    def run(self) -> None:
        started = time.monotonic()
        for i in range(self.max_writes):
            if self.stop.is_set() or time.monotonic() - started > self.max_seconds:
                return
            key = f"upgrade/{i:05d}"
            first = time.monotonic()
            last_error = ""
            while time.monotonic() - first < WRITE_DEADLINE:
                req = urllib.request.Request(
                    f"http://{self.node.http}/v1/kv/{key}", data=key.encode(), method="PUT"
                )
                try:
                    with urllib.request.urlopen(req, timeout=WRITE_DEADLINE) as resp:
                        if resp.read() == b"true":
                            self.acked.append(key)
                            break
                except (urllib.error.URLError, OSError) as exc:
                    body = exc.read() if isinstance(exc, urllib.error.HTTPError) else b""
                    last_error = f"{exc} {body[:120]!r}"
                self.retried += 1
                time.sleep(0.05)
            else:
                self.failed.append((key, last_error))


def test_a_protocol_2_datacenter_upgrades_to_3_by_a_rolling_restart_without_a_failed_write(
    cluster: Cluster,
) -> None:
    nodes = servers(cluster, ["-raft-protocol=2"])
    client = cluster.add("c1", CLIENT_IP, retry_join=[IPS[0]])
    cluster.start_all()
    cluster.wait_http([*nodes, client])
    leader_addr = cluster.wait_leader(nodes, timeout=30)
    leader = cluster.node_by_server_addr(leader_addr)
    assert sorted(s["ID"] for s in raft_servers(leader)) == sorted(n.server_addr for n in nodes)
    wait_for(lambda: healthy(leader, 3), 60, "a healthy datacenter before the upgrade")
    ids = {n.server_addr: node_id(n) for n in nodes}

    writer = Writer(client)
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) >= 20, 30, "writes before the upgrade")
        for n in nodes:  # one by one, each back and healthy before the next
            n.stop()
            n.args = [a for a in n.args if a != "-raft-protocol=2"]  # 3, the default
            n.start()
            cluster.wait_http([n])
            others = [o for o in nodes if o is not n]
            wait_for(
                lambda o=others: any(healthy(x, 3) for x in o),  # type: ignore[misc]
                60,
                f"the datacenter healthy again after restarting {n.name}",
            )
        # every server speaks 3: the leader rewrites each address ID to the node ID
        leader = cluster.node_by_server_addr(cluster.wait_leader(nodes, timeout=30))
        wait_for(
            lambda: sorted(s["ID"] for s in raft_servers(leader)) == sorted(ids.values()),
            60,
            "every raft ID to be a node ID",
        )
        done = len(writer.acked)
        wait_for(lambda: len(writer.acked) >= done + 20, 30, "writes after the upgrade")
    finally:
        writer.stop.set()
        writer.join(WRITE_DEADLINE * 2)
    assert writer.failed == []
    configuration = raft_servers(leader)
    assert all(s["Voter"] for s in configuration)
    assert {s["Address"]: s["ID"] for s in configuration} == ids
    # every acknowledged write is there
    keys = set(leader.get_json("/v1/kv/upgrade/?keys&consistent", timeout=10.0))
    assert set(writer.acked) <= keys
    print(f"{len(writer.acked)} writes acknowledged, {writer.retried} retries, 0 failed")
