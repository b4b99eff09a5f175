"""Autopilot on real servers: a SIGKILLed server is removed once gossip declares it failed,
its replacement on another address joins as a non-voter and is promoted only after
server_stabilization_time, voters never outnumber the live servers + 1, and
/v1/operator/autopilot/health ends Healthy with FailureTolerance 1; the configuration is
read and set (with ?cas) through the API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, Node, run_cli, wait_for

pytestmark = pytest.mark.timeout(180)

IPS = ["127.5.50.1", "127.5.50.2", "127.5.50.3", "127.5.50.4"]
STABILIZATION = 3.0


def raft_servers(node: Node) -> list[dict[str, Any]]:
    return list(node.get_json("/v1/operator/raft/configuration", timeout=3.0)["Servers"])


def test_a_dead_server_is_replaced_without_hands(cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "autopilot.hcl"
    conf.write_text(f'autopilot {{ server_stabilization_time = "{STABILIZATION:.0f}s" }}\n')
    servers = [
        cluster.add(
            f"s{i + 1}",
            ip,
            server=True,
            bootstrap_expect=3,
            retry_join=[IPS[0]],
            extra=[f"-config-file={conf}"],
        )
        for i, ip in enumerate(IPS[:3])
    ]
    cluster.start_all()
    cluster.wait_http(servers)
    leader_addr = cluster.wait_leader(servers, timeout=30)
    leader = cluster.node_by_server_addr(leader_addr)
    victim = next(s for s in servers if s is not leader)
    survivors = [s for s in servers if s is not victim]

    victim.kill()
    wait_for(
        lambda: len(raft_servers(leader)) == 2,
        60,
        "autopilot to remove the failed server once gossip says it failed",
    )
    wait_for(
        lambda: leader.request("GET", "/v1/operator/autopilot/health")[0] == 200,
        20,
        "the two survivors healthy",
    )
    health = leader.get_json("/v1/operator/autopilot/health")
    assert health["FailureTolerance"] == 0  # two voters: no failure tolerated

    new = cluster.add(
        "s4", IPS[3], server=True, retry_join=[IPS[0], IPS[1]], extra=[f"-config-file={conf}"]
    )
    new.start()
    cluster.wait_http([new])
    # joins as a non-voter first ...
    joined = wait_for(
        lambda: next((s for s in raft_servers(leader) if s["Address"] == f"{IPS[3]}:8300"), None),
        30,
        "the replacement in the raft configuration",
    )
    added_at = time.monotonic()
    assert joined["Voter"] is False, joined
    # ... and votes once it has been healthy for server_stabilization_time
    wait_for(
        lambda: all(s["Voter"] for s in raft_servers(leader)) and len(raft_servers(leader)) == 3,
        30,
        "autopilot to promote the replacement",
    )
    assert time.monotonic() - added_at >= STABILIZATION - 1.0
    # health is the leader's last pass (once a second): it catches up with the promotion
    health = wait_for(
        lambda: (
            (h := leader.get_json("/v1/operator/autopilot/health"))["FailureTolerance"] == 1
            and h["Healthy"]
            and h
        ),
        20,
        "a healthy datacenter that tolerates one failure",
    )
    assert sorted(s["Name"] for s in health["Servers"]) == sorted(n.name for n in (*survivors, new))
    assert all(s["Healthy"] and s["Voter"] for s in health["Servers"])
    state = leader.get_json("/v1/operator/autopilot/state")
    assert state["Healthy"] is True and len(state["Voters"]) == 3
    # a follower answers with the leader's view
    follower = next(s for s in survivors if s is not leader)
    assert follower.get_json("/v1/operator/autopilot/health")["FailureTolerance"] == 1


def test_autopilot_configuration_api(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.add("a1", "127.5.50.11", server=True, bootstrap_expect=1)
    node.start()
    cluster.wait_http([node])
    cluster.wait_leader([node])
    conf = node.get_json("/v1/operator/autopilot/configuration")
    assert conf["CleanupDeadServers"] is True
    assert conf["LastContactThreshold"] == "200ms"
    assert conf["MaxTrailingLogs"] == 250
    assert conf["ServerStabilizationTime"] == "10s"
    body = json.dumps({"CleanupDeadServers": False, "MinQuorum": 3}).encode()
    status, reply, _ = node.request("PUT", "/v1/operator/autopilot/configuration", body)
    assert (status, json.loads(reply)) == (200, True)
    conf = node.get_json("/v1/operator/autopilot/configuration")
    assert conf["CleanupDeadServers"] is False and conf["MinQuorum"] == 3
    stale = conf["ModifyIndex"] - 1
    status, reply, _ = node.request(
        "PUT", f"/v1/operator/autopilot/configuration?cas={stale}", b'{"MinQuorum": 5}'
    )
    assert (status, json.loads(reply)) == (200, False)
    status, reply, _ = node.request(
        "PUT",
        f"/v1/operator/autopilot/configuration?cas={conf['ModifyIndex']}",
        b'{"MinQuorum": 5}',
    )
    assert (status, json.loads(reply)) == (200, True)
    assert node.get_json("/v1/operator/autopilot/configuration")["MinQuorum"] == 5
    status, reply, _ = node.request(
        "PUT", "/v1/operator/autopilot/configuration", b'{"MaxTrailingLogs": -1}'
    )
    assert status == 400 and b"MaxTrailingLogs" in reply


def test_the_autopilot_cli(cluster: Cluster) -> None:
    node = cluster.add("a2", "127.5.50.21", server=True, bootstrap_expect=1)
    node.start()
    cluster.wait_http([node])
    cluster.wait_leader([node])
    addr = f"-http-addr={node.http}"
    r = run_cli(["operator", "autopilot", "get-config", addr])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "CleanupDeadServers = true",
        "LastContactThreshold = 200ms",
        "MaxTrailingLogs = 250",
        "MinQuorum = 0",
        "ServerStabilizationTime = 10s",
        'RedundancyZoneTag = ""',
        "DisableUpgradeMigration = false",
        'UpgradeVersionTag = ""',
    ]
    r = run_cli(
        [
            "operator",
            "autopilot",
            "set-config",
            addr,
            "-cleanup-dead-servers=false",
            "-server-stabilization-time=5s",
            "-min-quorum=3",
        ]
    )
    assert (r.returncode, r.stdout.strip()) == (0, "Configuration updated!"), r.stderr
    conf = node.get_json("/v1/operator/autopilot/configuration")
    assert conf["CleanupDeadServers"] is False
    assert conf["ServerStabilizationTime"] == "5s" and conf["MinQuorum"] == 3
    r = run_cli(["operator", "autopilot", "set-config", addr, "-min-quorum=x"])
    assert r.returncode == 1 and "-min-quorum" in r.stderr
    wait_for(
        lambda: run_cli(["operator", "autopilot", "state", addr]).returncode == 0,
        15,
        "autopilot's first pass",
    )
    r = run_cli(["operator", "autopilot", "state", addr])
    assert "Healthy:                      true" in r.stdout
    assert "Failure Tolerance:            0" in r.stdout
    state = json.loads(run_cli(["operator", "autopilot", "state", addr, "-format=json"]).stdout)
    assert state["Leader"] in state["Servers"] and len(state["Voters"]) == 1
