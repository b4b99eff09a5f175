"""`senate maint` against a real `senate agent` process (127.9.0.1): a service put into
maintenance leaves /v1/health/service/web?passing and is listed by `senate maint`; disabled, it
is passing again; node maintenance takes every service of the node out likewise, and is kept
across an agent restart (Consul: "Maintenance mode is persistent")."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, Node, run_cli, wait_for

pytestmark = pytest.mark.timeout(60)

AGENT_IP = "127.9.0.1"


def maint(node: Node, *args: str) -> tuple[int, str, str]:
    result = run_cli(["maint", f"-http-addr={node.http}", *args])
    return result.returncode, result.stdout, result.stderr


def passing(node: Node, service: str) -> list[Any]:
    return list(node.get_json(f"/v1/health/service/{service}?passing") or [])


def test_maint_takes_service_and_node_out_of_passing(cluster: Cluster) -> None:
    node = cluster.add("maint1", AGENT_IP, server=True, bootstrap=True)
    node.start()
    cluster.wait_http([node], timeout=30)
    cluster.wait_leader([node], timeout=20)

    status, body, _ = node.request(
        "PUT", "/v1/agent/service/register", json.dumps({"Name": "web", "Port": 80}).encode()
    )
    assert status == 200, body
    wait_for(lambda: passing(node, "web"), 10, "web passing after register")
    assert maint(node) == (0, "", "")

    # Service maintenance: out of ?passing, listed with its reason; then back.
    t0 = time.monotonic()
    assert maint(node, "-enable", "-service=web", "-reason=x") == (
        0,
        'Service maintenance is now enabled for "web"\n',
        "",
    )
    wait_for(lambda: passing(node, "web") == [], 10, "web out of ?passing")
    print(f"service maintenance: out of ?passing {time.monotonic() - t0:.2f}s after enable")
    assert maint(node) == (0, "Service:\n  ID:     web\n  Reason: x\n\n", "")
    (entry,) = node.get_json("/v1/health/service/web")
    maint_check = [c for c in entry["Checks"] if c["CheckID"] == "_service_maintenance:web"]
    assert [(c["Status"], c["Notes"]) for c in maint_check] == [("critical", "x")]

    t0 = time.monotonic()
    assert maint(node, "-disable", "-service=web") == (
        0,
        'Service maintenance is now disabled for "web"\n',
        "",
    )
    wait_for(lambda: passing(node, "web"), 10, "web passing again")
    print(f"service maintenance: passing {time.monotonic() - t0:.2f}s after disable")
    assert maint(node) == (0, "", "")

    # An unknown service is Consul's 404 error, exit 1.
    rc, out, err = maint(node, "-enable", "-service=redis")
    assert (rc, out) == (1, "")
    assert err == (
        "Error enabling service maintenance: Unexpected response code: 404 "
        '(No service registered with ID "redis")\n'
    )

    # Node maintenance: every service of the node leaves ?passing; kept across a restart.
    assert maint(node, "-enable", "-reason=kernel upgrade") == (
        0,
        "Node maintenance is now enabled\n",
        "",
    )
    wait_for(lambda: passing(node, "web") == [], 10, "web out of ?passing (node maintenance)")
    node_listing = "Node:\n  Name:   maint1\n  Reason: kernel upgrade\n\n"
    assert maint(node) == (0, node_listing, "")

    node.kill()
    node.start()
    cluster.wait_http([node], timeout=30)
    assert maint(node) == (0, node_listing, "")
    cluster.wait_leader([node], timeout=20)

    assert maint(node, "-disable") == (0, "Node maintenance is now disabled\n", "")
    wait_for(lambda: passing(node, "web"), 10, "web passing after node maintenance")
    assert maint(node) == (0, "", "")
