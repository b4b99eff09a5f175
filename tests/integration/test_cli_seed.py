"""The seed transcript's CLI session against a real `senate agent -dev` and a client agent:
every command through the real HTTP API and CLI RPC, output in Consul 0.7's shape."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import REPO, SENATE, Cluster, run_cli, senate_env, wait_for

pytestmark = pytest.mark.timeout(150)

SERVER_IP = "127.5.7.1"
CLIENT_IP = "127.5.7.2"


def cli(*args: str) -> tuple[int, str, str]:
    r = run_cli(list(args))
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout, r.stderr


def test_seed_session_against_real_agents(cluster: Cluster, tmp_path: Path) -> None:
    server = cluster.add("server1", SERVER_IP)
    server.args = ["-dev", "-node=server1", f"-bind={SERVER_IP}", f"-client={SERVER_IP}"]
    server.start()
    cluster.wait_http([server], timeout=30)
    cluster.wait_leader([server], timeout=20)
    http = f"-http-addr={server.http}"
    rpc = f"-rpc-addr={SERVER_IP}:8400"

    # kv, exactly as the seed
    assert cli("kv", "put", http, "name", "ivan") == (0, "Success! Data written to: name\n", "")
    assert cli("kv", "get", http, "name") == (0, "ivan\n", "")
    rc, out, _ = cli("kv", "get", "-detailed", http, "name")
    lines = out.splitlines()
    assert rc == 0
    assert [ln[:17] for ln in lines] == [
        "CreateIndex      ",
        "Flags            ",
        "Key              ",
        "LockIndex        ",
        "ModifyIndex      ",
        "Session          ",
        "Value            ",
    ]
    assert lines[2] == "Key              name" and lines[6] == "Value            ivan"
    assert cli("kv", "delete", http, "name") == (0, "Success! Deleted key: name\n", "")
    assert cli("kv", "get", http, "name") == (1, "", "Error! No key exists at: name\n")

    # a client agent joins through the CLI RPC
    client = cluster.add("ceph-debug", CLIENT_IP)
    client.args = [
        "-node=ceph-debug",
        f"-bind={CLIENT_IP}",
        f"-client={CLIENT_IP}",
        "-datacenter=dc1",
        f"-data-dir={tmp_path / 'client-data'}",
    ]
    client.start()
    cluster.wait_http([client], timeout=30)
    assert cli("join", f"-rpc-addr={CLIENT_IP}:8400", SERVER_IP) == (
        0,
        "Successfully joined cluster by contacting 1 nodes.\n",
        "",
    )

    def both_alive() -> str | None:
        rc, out, _ = cli("members", rpc)
        return out if rc == 0 and out.count(" alive ") == 2 else None

    out = wait_for(both_alive, 20, "two alive members")
    lines = out.splitlines()
    assert lines[0].split() == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC"]
    assert lines[1].split() == [
        "ceph-debug",
        f"{CLIENT_IP}:8301",
        "alive",
        "client",
        "0.7.2",
        "2",
        "dc1",
    ]
    assert lines[2].split() == [
        "server1",
        f"{SERVER_IP}:8301",
        "alive",
        "server",
        "0.7.2",
        "2",
        "dc1",
    ]
    assert lines[0].index("Address") == lines[1].index(CLIENT_IP)  # columns aligned
    assert cli("members", http)[1] == out

    # info: the seed's sections and keys
    rc, out, _ = cli("info", rpc)
    assert rc == 0
    for needle in (
        "agent:\n",
        "build:\n",
        "consul:\n",
        "raft:\n",
        "serf_lan:\n",
        "\tleader = true\n",
    ):
        assert needle in out, needle
    assert "\tlatest_configuration = [{Suffrage:Voter ID:" in out

    # rtt, once both coordinates reached the catalog
    def rtt() -> str | None:
        rc, out, _ = cli("rtt", f"-http-addr={client.http}", "ceph-debug", "server1")
        return out if rc == 0 else None

    line = wait_for(rtt, 60, "coordinates of both nodes", interval=1.0)
    assert line.startswith("Estimated ceph-debug <-> server1 rtt: ")
    assert line.endswith(" ms (using LAN coordinates)\n")

    # operator raft, snapshot, event
    rc, out, _ = cli("operator", "raft", "list-peers", http)
    assert rc == 0
    # Consul 1.x's table: the server by its node ID (raft protocol 3), its commit index
    header = "Node ID Address State Voter RaftProtocol Commit Index Trails Leader By"
    assert out.splitlines()[0].split() == header.split()
    node_id = server.get_json("/v1/agent/self")["Config"]["NodeID"]
    row = out.splitlines()[1].split()
    assert row[:6] == ["server1", node_id, f"{SERVER_IP}:8300", "leader", "true", "3"]
    assert int(row[6]) > 0 and row[7:] == ["_"]
    raft = server.get_json("/v1/operator/raft/configuration")
    assert raft == {
        "Servers": [
            {
                "ID": node_id,
                "Node": "server1",
                "Address": f"{SERVER_IP}:8300",
                "Leader": True,
                "Voter": True,
                "ProtocolVersion": "3",
            }
        ],
        "Index": 0,
    }
    rc, _, err = cli("operator", "raft", "remove-peer", http, "-id=no-such-id")
    assert (rc, err) == (
        1,
        "Error removing peer: Unexpected response code: 500 "
        '(id "no-such-id" was not found in the Raft configuration)\n',
    )
    snap = str(tmp_path / "backup.snap")
    assert cli("kv", "put", http, "kept", "1")[0] == 0
    rc, out, _ = cli("snapshot", "save", http, snap)
    assert rc == 0 and out.startswith("Saved and verified snapshot to index ")
    rc, out, _ = cli("snapshot", "inspect", snap)
    assert rc == 0 and [ln.split()[0] for ln in out.splitlines()] == [
        "ID",
        "Size",
        "Index",
        "Term",
        "Version",
    ]
    assert cli("kv", "delete", http, "kept")[0] == 0
    assert cli("snapshot", "restore", http, snap) == (0, "Restored snapshot\n", "")
    assert wait_for(lambda: cli("kv", "get", http, "kept")[1] == "1\n", 10, "restored key")
    # the seed's watch: its handler runs once at start, then once per `senate event`
    watch_out = tmp_path / "watch.out"
    with watch_out.open("wb") as sink:
        watcher = subprocess.Popen(
            [*SENATE, "watch", "-type=event", "-name=sayhi", http, "echo 'got it'"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=senate_env(),
            cwd=REPO,
        )
    try:
        wait_for(lambda: watch_out.read_text() == "got it\n", 15, "the watch's first run")
        rc, out, _ = cli("event", "-name=sayhi", http)
        assert rc == 0 and out.startswith("Event ID: ")
        assert len(out.strip()) == len("Event ID: ") + 36
        wait_for(lambda: watch_out.read_text() == "got it\ngot it\n", 15, "the watch's second run")
    finally:
        watcher.kill()
        watcher.wait(10)

    # errors are Consul's words, exit 1, no traceback
    rc, _, err = cli("join", rpc, "127.5.7.99")
    assert rc == 1 and err.startswith("Error joining the cluster: ")
    rc, _, err = cli("kv", "get", "-http-addr=127.5.7.99:8500", "name")
    assert rc == 1 and err.startswith('Error querying "name": ')
    # force-leave of a node no pool knows: Consul 1.x's error (500 over HTTP), nothing changes
    assert cli("force-leave", rpc, "nope") == (
        1,
        "",
        "Error force leaving: agent: No node found with name 'nope'\n",
    )
    status, text, _ = server.request("PUT", "/v1/agent/force-leave/nope?prune")
    assert (status, text) == (500, b"agent: No node found with name 'nope'")
    assert cli("force-leave", http, "ceph-debug") == (0, "", "")  # a known member: done


def test_monitor_over_cli_rpc(cluster: Cluster) -> None:
    node = cluster.add("mon1", "127.5.7.3")
    node.args = ["-dev", "-node=mon1", "-bind=127.5.7.3", "-client=127.5.7.3"]
    node.start()
    cluster.wait_http([node], timeout=30)
    with socket.create_connection(("127.5.7.3", 8400), timeout=10) as sock:
        sock.sendall(
            msgpack.packb({"Command": "handshake", "Seq": 1})
            + msgpack.packb({"Version": 1})
            + msgpack.packb({"Command": "monitor", "Seq": 2})
            + msgpack.packb({"LogLevel": "DEBUG"})
        )
        unpacker = msgpack.Unpacker(raw=False)
        got: list[object] = []

        def three() -> bool:
            unpacker.feed(sock.recv(65536))
            got.extend(unpacker)
            return len(got) >= 2

        wait_for(three, 10, "handshake and monitor acks")
        assert got[:2] == [{"Seq": 1, "Error": ""}, {"Seq": 2, "Error": ""}]
        # a reload makes the agent log; the monitor must stream it
        assert cli("reload", "-rpc-addr=127.5.7.3:8400")[0] == 0

        def log_line() -> bool:
            unpacker.feed(sock.recv(65536))
            got.extend(unpacker)
            return any(isinstance(o, dict) and "Log" in o for o in got)

        wait_for(log_line, 10, "a streamed log line")
        # and `senate leave` over the same RPC shuts the agent down cleanly
        assert cli("leave", "-rpc-addr=127.5.7.3:8400") == (0, "Graceful leave complete\n", "")
        wait_for(lambda: not node.running(), 20, "the agent to exit after leave")
        assert "Traceback" not in node.log_text()
