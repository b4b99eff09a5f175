"""`senate agent` as a process: -dev end to end with the seed's CLI commands, the banner, the
data-dir lock, config errors without tracebacks, pid file and graceful exit on SIGINT."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, run_cli, wait_for

pytestmark = pytest.mark.timeout(120)

DEV_IP = "127.5.2.1"


def test_dev_agent_with_seed_commands(cluster: Cluster) -> None:
    node = cluster.add("dev1", DEV_IP)
    conf = cluster.root / "web.json"
    conf.write_text(json.dumps({"service": {"name": "web", "port": 80, "tags": ["v1"]}}))
    node.args = [
        "-dev",
        "-node=dev1",
        f"-bind={DEV_IP}",
        f"-client={DEV_IP}",
        f"-config-file={conf}",
    ]
    node.start()
    cluster.wait_http([node], timeout=30)
    assert cluster.wait_leader([node], timeout=10) == f"{DEV_IP}:8300"
    text = node.log_text()
    for line in (
        "==> Starting Senate agent...",
        "         Node name: 'dev1'",
        "        Datacenter: 'dc1'",
        "            Server: true (bootstrap: true)",
        f"       Client Addr: {DEV_IP} (HTTP: 8500, HTTPS: -1, DNS: 8600, RPC: 8400)",
        f"      Cluster Addr: {DEV_IP} (LAN: 8301, WAN: 8302)",
        "==> Log data will now stream in as it occurs:",
    ):
        assert line in text, line
    wait_for(
        lambda: "[INFO] consul: cluster leadership acquired" in node.log_text(),
        10,
        "leadership log",
    )
    wait_for(
        lambda: "[INFO] consul: member 'dev1' joined, marking health alive" in node.log_text(),
        15,
        "the leader registering itself",
    )
    # Consul 1.x: the consul service is the leader's catalog entry, not the agent's own
    consul = wait_for(lambda: node.get_json("/v1/catalog/service/consul"), 15, "the consul service")
    assert (consul[0]["Node"], consul[0]["ServicePort"]) == ("dev1", 8300)
    assert consul[0]["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    assert consul[0]["ServiceMeta"]["non_voter"] == "false"
    assert consul[0]["ServiceMeta"]["raft_version"] == "3"
    assert "consul" not in node.get_json("/v1/agent/services")
    web = wait_for(
        lambda: node.get_json("/v1/catalog/service/web"), 15, "the web service from config"
    )
    assert (web[0]["ServicePort"], web[0]["ServiceTags"], web[0]["Node"]) == (80, ["v1"], "dev1")
    http = [f"-http-addr={node.http}"]
    put = run_cli(["kv", "put", *http, "name", "ivan"])
    assert (put.returncode, put.stdout) == (0, "Success! Data written to: name\n"), put.stderr
    get = run_cli(["kv", "get", *http, "name"])
    assert (get.returncode, get.stdout) == (0, "ivan\n")
    detailed = run_cli(["kv", "get", "-detailed", *http, "name"])
    assert [ln.split()[0] for ln in detailed.stdout.splitlines()] == [
        "CreateIndex",
        "Flags",
        "Key",
        "LockIndex",
        "ModifyIndex",
        "Session",
        "Value",
    ]
    members = run_cli(["members", *http, f"-rpc-addr={DEV_IP}:8400"])
    assert members.returncode == 0, members.stderr
    row = members.stdout.splitlines()[1].split()
    assert row[:4] == ["dev1", f"{DEV_IP}:8301", "alive", "server"] and row[-1] == "dc1"
    delete = run_cli(["kv", "delete", *http, "name"])
    assert delete.stdout == "Success! Deleted key: name\n"
    assert "Traceback" not in node.log_text()
    assert node.stop(signal.SIGINT) == 0 or not node.running()


def test_second_agent_on_same_data_dir_is_refused(cluster: Cluster) -> None:
    first = cluster.add("lock1", "127.5.2.2")
    first.start()
    cluster.wait_http([first], timeout=30)
    second = cluster.add("lock2", "127.5.2.3")
    second.args = [
        a if not a.startswith("-data-dir=") else f"-data-dir={first.data_dir}" for a in second.args
    ]
    second.start()
    assert second.proc is not None and second.proc.wait(30) == 1
    text = second.log_text()
    assert "is in use by another agent" in text and "Traceback" not in text
    # Another agent on the same address (own data dir) cannot bind the ports: a clear error.
    third = cluster.add("lock3", "127.5.2.2")
    third.start()
    assert third.proc is not None and third.proc.wait(30) == 1
    text = third.log_text()
    assert "==> Error starting agent: cannot listen on 127.5.2.2:8301 (LAN gossip)" in text
    assert "Traceback" not in text
    assert first.running()


def test_bad_config_file_exits_with_file_key_and_expectation(tmp_path: Path) -> None:
    conf = tmp_path / "agent.json"
    conf.write_text(json.dumps({"bootstrap_expect": "three", "server": True}))
    out = run_cli(["agent", f"-config-file={conf}", f"-data-dir={tmp_path / 'd'}"])
    assert out.returncode == 1
    assert (
        str(conf) in out.stderr
        and "bootstrap_expect" in out.stderr
        and "expected an integer" in out.stderr
    )
    assert "Traceback" not in out.stderr + out.stdout
    out = run_cli(["agent", "-data-dir=/tmp/x", "-no-such-flag"])
    assert out.returncode == 1 and "flag provided but not defined: -no-such-flag" in out.stderr
    valid = run_cli(["validate", str(conf)])
    assert valid.returncode == 1 and "bootstrap_expect" in valid.stderr


def test_pid_file_and_graceful_leave_on_interrupt(cluster: Cluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "agent.pid"
    node = cluster.add("pid1", "127.5.2.4", extra=[f"-pid-file={pid_file}"])
    node.start()
    cluster.wait_http([node], timeout=30)
    # Written once the agent has started (its HTTP API may answer a moment earlier).
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "the pid file")
    assert pid_file.read_text().strip() == str(node.pid)
    assert node.stop(signal.SIGINT) == 0
    text = node.log_text()
    assert "==> Caught signal: interrupt" in text
    assert "==> Gracefully shutting down agent..." in text
    assert not pid_file.exists()


def test_after_a_leave_a_restarted_agent_rejoins_only_with_rejoin(cluster: Cluster) -> None:
    """A client that left gracefully rejoins from its snapshot on restart only with -rejoin
    (rejoin_after_leave); without it Consul logs `Failed to re-join any previously known node`
    and stays alone."""
    server = cluster.add("rj-s1", "127.5.2.10", server=True, bootstrap=True)
    client = cluster.add("rj-c1", "127.5.2.11", retry_join=[server.ip])
    cluster.start_all()
    cluster.wait_http([server, client], timeout=30)
    wait_for(lambda: server.alive_members() == {"rj-s1", "rj-c1"}, 20, "the client joined")
    assert client.stop(signal.SIGINT) == 0  # a client leaves on interrupt
    wait_for(lambda: server.alive_members() == {"rj-s1"}, 20, "the leave")
    client.args.remove(f"-retry-join={server.ip}")
    client.args.append("-rejoin")
    client.start()
    wait_for(lambda: server.alive_members() == {"rj-s1", "rj-c1"}, 20, "the rejoin")
    text = client.log_text().rsplit("===== start #2", 1)[1]
    assert "Ignoring previous leave in snapshot" in text
    assert "Re-joined to previously known node: rj-s1" in text
    assert client.stop(signal.SIGINT) == 0
    wait_for(lambda: server.alive_members() == {"rj-s1"}, 20, "the second leave")
    client.args.remove("-rejoin")
    client.start()
    cluster.wait_http([client], timeout=30)
    wait_for(
        lambda: (
            "Failed to re-join any previously known node"
            in client.log_text().rsplit("===== start #3", 1)[1]
        ),
        10,
        "the failed re-join warning",
    )
    assert client.alive_members() == {"rj-c1"}
    assert server.alive_members() == {"rj-s1"}
