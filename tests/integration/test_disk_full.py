"""A server whose disk fills up never pretends: raft stops, the agent says why and exits 1
for its supervisor, leadership moves to a server that can write, and no acknowledged write
is lost. The data dir of one server is a small tmpfs the test fills (root only)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, Node, wait_for

pytestmark = pytest.mark.timeout(120)

IPS = ["127.18.2.1", "127.18.2.2", "127.18.2.3"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> None:
    with contextlib.suppress(OSError), (mnt / "filler").open("wb") as f:
        chunk = b"\0" * (1 << 20)
        for _ in range(64):
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())


@pytest.mark.parametrize("who", ["leader", "follower"])
def test_a_server_whose_disk_is_full_exits_and_the_others_go_on(
    cluster: Cluster, small_disk: Path, who: str
) -> None:
    nodes: list[Node] = []
    for i, ip in enumerate(IPS):
        node = cluster.add(f"f{i + 1}", ip, server=True, bootstrap_expect=3, retry_join=[IPS[0]])
        nodes.append(node)
    # the first server's data dir on the small disk
    victim = nodes[0]
    victim.data_dir = small_disk / "data"
    victim.data_dir.mkdir()
    victim.args = [
        f"-data-dir={victim.data_dir}" if a.startswith("-data-dir=") else a for a in victim.args
    ]
    cluster.start_all()
    cluster.wait_http(nodes, timeout=30)
    leader = cluster.node_by_server_addr(cluster.wait_leader(nodes, timeout=30))
    if (who == "leader") != (leader is victim):
        target = victim if who == "leader" else next(n for n in nodes if n is not victim)
        status, body, _ = leader.request(
            "POST", f"/v1/operator/raft/transfer-leader?id={node_id(target)}"
        )
        assert status == 200, body
        wait_for(lambda: leader_of(nodes) == target.server_addr, 15, f"{target.name} leading")
    acked = []
    for i in range(20):
        status, _, _ = victim.request("PUT", f"/v1/kv/before/{i}", b"v")
        assert status == 200
        acked.append(f"before/{i}")
    fill(small_disk)
    # writes go on (through a server that can write) until the victim has failed and left
    others = [n for n in nodes if n is not victim]

    def write(i: int) -> bool:
        for n in others:
            try:
                if n.request("PUT", f"/v1/kv/after/{i}", b"v", timeout=3)[0] == 200:
                    acked.append(f"after/{i}")
                    return True
            except OSError:
                pass
        return False

    i = 0

    def victim_exited() -> bool:
        nonlocal i
        i += 1
        write(i)
        return victim.proc is not None and victim.proc.poll() is not None

    wait_for(victim_exited, 30, "the server with the full disk to exit")
    assert victim.proc is not None and victim.proc.returncode == 1
    log = victim.log_text()
    assert "raft store failed" in log and "exiting, so that a supervisor restarts" in log
    # the two others lead and take writes; nothing acknowledged is lost
    wait_for(lambda: write(1000 + len(acked)), 20, "a write through the two others")
    for key in acked:
        status, _, _ = others[0].request("GET", f"/v1/kv/{key}?consistent")
        assert status == 200, key


def node_id(node: Node) -> str:
    return str(node.get_json("/v1/agent/self")["Config"]["NodeID"])


def leader_of(nodes: list[Node]) -> str:
    seen = {n.leader() for n in nodes if n.running()}
    return seen.pop() if len(seen) == 1 else ""
