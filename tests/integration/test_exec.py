"""`senate exec` as the seed runs it: a job reaches the agents the filter selects, runs under
/bin/sh, and its output and exit code come back through the KV store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, run_cli, wait_for

pytestmark = pytest.mark.timeout(120)

SERVER_IP = "127.5.8.1"
CLIENT_IP = "127.5.8.2"


def test_exec_on_one_node_and_on_all(cluster: Cluster, tmp_path: Path) -> None:
    server = cluster.add("server1", SERVER_IP)
    # Remote exec is off unless enabled (Consul >= 0.8): the seed's agents enable it.
    server.args = [
        "-dev",
        "-node=server1",
        f"-bind={SERVER_IP}",
        f"-client={SERVER_IP}",
        "-hcl=disable_remote_exec = false",
    ]
    server.start()
    cluster.wait_http([server], timeout=30)
    cluster.wait_leader([server], timeout=20)
    client = cluster.add("ceph-debug", CLIENT_IP)
    client.args = [
        "-node=ceph-debug",
        f"-bind={CLIENT_IP}",
        f"-client={CLIENT_IP}",
        f"-join={SERVER_IP}",
        f"-data-dir={tmp_path / 'client-data'}",
        "-disable-remote-exec=false",
    ]
    client.start()
    cluster.wait_http([client], timeout=30)
    http = f"-http-addr={CLIENT_IP}:8500"

    def two_alive() -> bool:
        r = run_cli(["members", http])
        return r.returncode == 0 and r.stdout.count(" alive ") == 2

    wait_for(two_alive, 30, "two alive members")

    # The seed: run on server1 only, from the client.
    target = tmp_path / "enen"
    r = run_cli(["exec", http, "-node=server1", f"echo 'enen' > {target}"])
    assert "Traceback" not in r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "==> server1: finished with exit code 0",
        "1 / 1 node(s) completed / acknowledged",
    ]
    assert target.read_text() == "enen\n"

    # Every node; a failing command is reported per node and makes the exit code non-zero.
    r = run_cli(["exec", http, "echo out-$(hostname -s >/dev/null; echo ok); exit 3"])
    assert r.returncode != 0
    assert "    server1: out-ok" in r.stdout and "    ceph-debug: out-ok" in r.stdout
    assert "==> server1: finished with exit code 3" in r.stdout
    assert "==> ceph-debug: finished with exit code 3" in r.stdout
    assert "2 / 2 node(s) completed / acknowledged" in r.stdout


def test_exec_is_off_unless_enabled(cluster: Cluster) -> None:
    ip = "127.5.8.9"
    node = cluster.add("plain", ip)
    node.args = ["-dev", "-node=plain", f"-bind={ip}", f"-client={ip}"]
    node.start()
    cluster.wait_http([node], timeout=30)
    cluster.wait_leader([node], timeout=20)
    r = run_cli(["exec", f"-http-addr={ip}:8500", "-wait=1s", "id -un"])
    assert "Traceback" not in r.stderr
    assert "0 / 0 node(s) completed / acknowledged" in r.stdout, r.stdout + r.stderr
    wait_for(
        lambda: "ignoring remote exec event" in node.log_text(),
        10,
        "the agent to log that it ignored the exec",
    )
    assert node.get_json("/v1/agent/self")["DebugConfig"]["DisableRemoteExec"] is True
