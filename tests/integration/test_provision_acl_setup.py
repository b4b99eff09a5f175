"""provision's ACL step against a real agent: a server started from the config and TLS files
provision renders for `tls: generate` + `acl: bootstrap`, and the host-side acl_setup program run
as `up` runs it (over HTTPS with the node's certificate, the secrets on stdin). It bootstraps
once, makes the agents' policy and tokens, changes nothing the second time, corrects a token
that drifted, and refuses to go on when the ACLs were bootstrapped with another token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, wait_for

from provision import acl, secure
from provision.hostside import acl_setup, source
from provision.inventory import Inventory, load_inventory
from provision.render import render_node

pytestmark = pytest.mark.timeout(120)

IP = "127.5.50.1"


def inventory(tmp_path: Path) -> Inventory:
    p = tmp_path / "sec.yml"
    p.write_text(
        f"defaults: {{connection: local, install_dir: '{tmp_path}/opt/{{name}}',"
        f" data_dir: '{tmp_path}/data/{{name}}', tls: generate, acl: bootstrap}}\n"
        "datacenters:\n"
        f"  dc1:\n    servers: [{{name: p1, host: {IP}}}]\n"
        "    clients: [{name: p2, host: 127.5.50.2}]\n"
    )
    return load_inventory(p)


def setup(inv: Inventory, management: str) -> subprocess.CompletedProcess[str]:
    node = inv.node("p1")
    spec = json.dumps(acl.setup_spec(inv, management))
    return subprocess.run(
        [sys.executable, "-I", "-c", source(acl_setup), node.api_url, "30", "96"],
        input=spec,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **secure.api_env(node)},
    )


def call(method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{IP}:8500{path}", data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_acl_setup_bootstraps_once_and_keeps_the_tokens(cluster: Cluster, tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    node = inv.node("p1")
    rendered = render_node(inv, node, "launcher")
    for f in (rendered.config, *rendered.tls):
        Path(f.path).parent.mkdir(parents=True, exist_ok=True)
        Path(f.path).write_text(f.content)
        Path(f.path).chmod(f.mode)
    agent = cluster.add("p1", IP)
    agent.args = [f"-config-file={rendered.config.path}"]
    agent.start()
    # anonymous: /v1/status needs no token (the harness's waits would send one)
    wait_for(lambda: call("GET", "/v1/status/leader", None)[1], 20, "a leader")

    management = acl.management_token(inv)
    first = setup(inv, management)
    assert first.returncode == 0, first.stderr
    tokens = inv.secrets.tokens if inv.secrets else {}
    accessors = sorted(t.accessor for t in tokens.values())
    assert json.loads(first.stdout) == {
        "bootstrapped": True,
        "policy": "created",
        "created": [tokens["p1"].accessor, tokens["p2"].accessor],
        "updated": [],
    }
    # default deny: anonymous is refused, the management token works
    assert call("PUT", "/v1/kv/x", None, "1")[0] == 403
    assert call("PUT", "/v1/kv/x", management, "1") == (200, True)
    # each agent token is the pre-generated secret, with the node's identity and the policy
    status, me = call("GET", "/v1/acl/token/self", tokens["p2"].secret)
    assert status == 200, me
    assert me["AccessorID"] == tokens["p2"].accessor
    assert me["NodeIdentities"] == [{"NodeName": "p2", "Datacenter": "dc1"}]
    assert [p["Name"] for p in me["Policies"]] == [secure.AGENT_POLICY]
    # the agent's own token lets it write its node: anti-entropy gets through
    wait_for(
        lambda: call("GET", "/v1/catalog/node/p1", management)[1],
        20,
        "p1 in the catalog",
    )

    # again: nothing to write
    again = setup(inv, management)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "bootstrapped": False,
        "policy": "ok",
        "created": [],
        "updated": [],
    }
    # a token that drifted is corrected, its secret kept
    drifted = {"Description": "changed by hand", "NodeIdentities": [], "Policies": []}
    status, _ = call("PUT", f"/v1/acl/token/{tokens['p1'].accessor}", management, drifted)
    assert status == 200
    fixed = setup(inv, management)
    assert json.loads(fixed.stdout)["updated"] == [tokens["p1"].accessor]
    assert call("GET", "/v1/acl/token/self", tokens["p1"].secret)[1]["NodeIdentities"] == [
        {"NodeName": "p1", "Datacenter": "dc1"}
    ]
    assert len(accessors) == 2

    # bootstrapped before, with another token than the one provision holds
    other = setup(inv, "6b1f6e5e-0000-4000-8000-000000000001")
    assert other.returncode == 96, other.stderr
    assert "ACL bootstrap no longer allowed (reset index:" in other.stderr
