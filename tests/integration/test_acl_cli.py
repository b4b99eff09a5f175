"""`senate acl ...` as a user runs it: the real CLI in its own process against a real
`senate agent -dev` with ACLs on and default deny. Bootstrap (and Consul's refusal the second
time), a policy `key_prefix "app/" { policy = "write" }`, a token holding it that may write
app/ but not other/ through `senate kv put`, `token read -self`, list/update/clone/delete of
tokens, policies and roles, set-agent-token, and the errors for IDs that do not exist."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import REPO, SENATE, Cluster, HarnessError, Node, senate_env, wait_for

pytestmark = pytest.mark.timeout(180)

IP = "127.91.13.11"
HTTP = f"{IP}:8500"
ACL_HCL = 'acl { enabled = true default_policy = "deny" }'
APP_RULES = 'key_prefix "app/" { policy = "write" }'


@dataclass
class Run:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def senate(*args: str, token: str | None = None, **env: str) -> Run:
    """`senate <args>` against the agent (SENATE_HTTP_ADDR), with `token` as SENATE_HTTP_TOKEN."""
    full = senate_env()
    for name in ("CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "SENATE_HTTP_TOKEN_FILE"):
        full.pop(name, None)
    full["SENATE_HTTP_ADDR"] = HTTP
    full.pop("SENATE_HTTP_TOKEN", None)
    if token is not None:
        full["SENATE_HTTP_TOKEN"] = token
    full.update(env)
    proc = subprocess.run(
        [*SENATE, *args], capture_output=True, text=True, timeout=30, env=full, cwd=REPO
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Agent:
    node: Node
    root: str  # the bootstrap token's SecretID
    bootstrap: Run


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    root = tmp_path_factory.mktemp("acl-cli")
    cluster = Cluster(root)
    node = Node(
        "acl1",
        IP,
        root / "data",
        root / "agent.log",
        ["-dev", f"-bind={IP}", f"-client={IP}", f"-hcl={ACL_HCL}"],
    )
    cluster.nodes[node.name] = node
    try:
        node.start()
        # /v1/agent/self needs agent:read; the status endpoints answer anyone
        cluster.wait_leader([node], timeout=30)

        def bootstrapped() -> Run | None:
            r = senate("acl", "bootstrap", "-format=json")
            if r.rc != 0 and "no longer allowed" in r.err:
                raise HarnessError(f"bootstrapped by someone else: {r.err}")
            return r if r.rc == 0 else None

        first = wait_for(bootstrapped, 30, "the first ACL bootstrap")
        yield Agent(node, first.json()["SecretID"], first)
    except BaseException:
        print(cluster.dump_logs(), file=sys.stderr)
        raise
    finally:
        cluster.cleanup()


def test_bootstrap_once(agent: Agent) -> None:
    token = agent.bootstrap.json()
    assert token["Description"] == "Bootstrap Token (Global Management)"
    assert token["Policies"] == [
        {"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}
    ]
    again = senate("acl", "bootstrap")
    assert again.rc == 1 and again.out == ""
    assert re.fullmatch(
        r"Failed ACL bootstrapping: Unexpected response code: 403 \(Permission denied: ACL "
        r"bootstrap no longer allowed \(reset index: \d+\)\)\n",
        again.err,
    ), again.err
    # the pretty block, read back with the bootstrap token itself
    me = senate("acl", "token", "read", "-self", token=agent.root)
    assert me.rc == 0, me.err
    lines = me.out.splitlines()
    assert lines[0] == f"AccessorID:       {token['AccessorID']}"
    assert lines[1] == f"SecretID:         {agent.root}"
    assert lines[2] == "Description:      Bootstrap Token (Global Management)"
    assert lines[3] == "Local:            false"
    assert re.fullmatch(
        r"Create Time:      \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC", lines[4]
    )
    assert lines[5:] == [
        "Policies:",
        "   00000000-0000-0000-0000-000000000001 - global-management",
        "",
    ]
    assert me.out.endswith("\n\n")  # Consul's block ends in a newline, and Info adds one


def test_token_with_a_key_prefix_policy(agent: Agent, tmp_path: Path) -> None:
    rules = tmp_path / "app.hcl"
    rules.write_text(APP_RULES + "\n")
    pol = senate(
        "acl",
        "policy",
        "create",
        "-name=app-writer",
        "-description=may write app/",
        f"-rules=@{rules}",
        token=agent.root,
    )
    assert pol.rc == 0, pol.err
    assert pol.out.splitlines()[1:5] == [
        "Name:         app-writer",
        "Description:  may write app/",
        "Datacenters:  ",
        "Rules:",
    ]
    assert pol.out.endswith(APP_RULES + "\n\n")
    created = senate(
        "acl",
        "token",
        "create",
        "-description=app token",
        "-policy-name=app-writer",
        "-format=json",
        token=agent.root,
    )
    assert created.rc == 0, created.err
    tok = created.json()
    secret, accessor = tok["SecretID"], tok["AccessorID"]
    assert [p["Name"] for p in tok["Policies"]] == ["app-writer"]

    ok = senate("kv", "put", f"-token={secret}", "app/x", "1")
    assert (ok.rc, ok.out) == (0, "Success! Data written to: app/x\n"), ok.err
    denied = senate("kv", "put", f"-token={secret}", "other/x", "1")
    assert denied.rc == 1 and denied.out == ""
    assert denied.err == (
        "Error! Failed writing data: Unexpected response code: 403 (Permission denied: token "
        f"with AccessorID '{accessor}' lacks permission 'key:write' on \"other/x\")\n"
    )
    anonymous = senate("kv", "put", "app/y", "1")
    assert anonymous.rc == 1 and "Permission denied" in anonymous.err
    # the token from SENATE_HTTP_TOKEN_FILE (and CONSUL_HTTP_TOKEN, behind SENATE_HTTP_TOKEN)
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    got = senate("kv", "get", "app/x", SENATE_HTTP_TOKEN_FILE=str(token_file))
    assert (got.rc, got.out) == (0, "1\n"), got.err
    got = senate("kv", "get", "app/x", CONSUL_HTTP_TOKEN=secret)
    assert (got.rc, got.out) == (0, "1\n"), got.err
    got = senate("kv", "get", "app/x", token="nope", CONSUL_HTTP_TOKEN=secret)
    assert got.rc == 1 and "ACL not found" in got.err

    me = senate("acl", "token", "read", "-self", token=secret)
    assert me.rc == 0, me.err
    assert me.out.splitlines()[:3] == [
        f"AccessorID:       {accessor}",
        f"SecretID:         {secret}",
        "Description:      app token",
    ]
    assert me.out.endswith(" - app-writer\n\n")
    # the token may not read the ACL system beyond itself
    listed = senate("acl", "token", "list", token=secret)
    assert listed.rc == 1
    assert listed.err.startswith("Failed to retrieve the token list: Unexpected response code: 403")

    # deleting the policy takes the permission away
    gone = senate("acl", "policy", "delete", "-name=app-writer", token=agent.root)
    assert gone.rc == 0 and re.fullmatch(r'Policy "[0-9a-f-]{36}" deleted successfully\n', gone.out)
    refused = wait_for(
        lambda: (r := senate("kv", "put", f"-token={secret}", "app/x", "2")).rc == 1 and r,
        10,
        "the token to lose app/ once its policy is gone",
    )
    assert "lacks permission 'key:write'" in refused.err


def test_token_list_update_clone_delete(agent: Agent) -> None:
    root = agent.root
    assert senate("acl", "policy", "create", "-name=ops", f"-rules={APP_RULES}", token=root).rc == 0
    assert (
        senate(
            "acl",
            "policy",
            "create",
            "-name=reader",
            '-rules=key_prefix "" { policy = "read" }',
            token=root,
        ).rc
        == 0
    )
    tok = senate(
        "acl", "token", "create", "-policy-name=ops", "-description=t1", "-format=json", token=root
    ).json()
    accessor = tok["AccessorID"]

    listed = senate("acl", "token", "list", "-format=json", token=root)
    assert listed.rc == 0, listed.err
    by_id = {t["AccessorID"]: t for t in listed.json()}
    assert by_id[accessor]["Description"] == "t1"
    assert by_id["00000000-0000-0000-0000-000000000002"]["Description"] == "Anonymous Token"
    pretty = senate("acl", "token", "list", token=root)
    assert f"AccessorID:       {accessor}\n" in pretty.out
    assert "\n\nAccessorID:" in pretty.out  # entries separated by a blank line

    # a unique prefix names the token; the update keeps what its flags do not change
    prefix = accessor[:8]
    upd = senate(
        "acl",
        "token",
        "update",
        f"-accessor-id={prefix}",
        "-append-policy-name=reader",
        "-service-identity=web:dc1",
        "-meta",
        token=root,
    )
    assert upd.rc == 0, upd.err
    assert "Description:      t1\n" in upd.out
    assert re.search(r"Hash:             [0-9a-f]{64}\n", upd.out)
    assert upd.out.endswith(" - ops\n   " + upd.out.split(" - ops\n   ")[1])
    assert "Service Identities:\n   web (Datacenters: dc1)\n" in upd.out
    read = senate(
        "acl", "token", "read", f"-accessor-id={prefix}", "-format=json", token=root
    ).json()
    assert [p["Name"] for p in read["Policies"]] == ["ops", "reader"]
    assert read["ServiceIdentities"] == [{"ServiceName": "web", "Datacenters": ["dc1"]}]

    replaced = senate(
        "acl",
        "token",
        "update",
        f"-accessor-id={accessor}",
        "-policy-name=reader",
        "-description=t2",
        "-format=json",
        token=root,
    ).json()
    assert [p["Name"] for p in replaced["Policies"]] == ["reader"]
    assert replaced["Description"] == "t2" and "ServiceIdentities" not in replaced

    clone = senate(
        "acl",
        "token",
        "clone",
        f"-accessor-id={prefix}",
        "-description=copy",
        "-format=json",
        token=root,
    )
    assert clone.rc == 0, clone.err
    copy = clone.json()
    assert copy["AccessorID"] != accessor and copy["Description"] == "copy"
    assert [p["Name"] for p in copy["Policies"]] == ["reader"]

    for a in (accessor, copy["AccessorID"]):
        d = senate("acl", "token", "delete", f"-accessor-id={a}", token=root)
        assert (d.rc, d.out) == (0, f'Token "{a}" deleted successfully\n'), d.err
    after = senate("acl", "token", "read", f"-accessor-id={accessor}", token=root)
    assert (after.rc, after.out) == (1, "")
    assert after.err == (
        f'Error reading token "{accessor}": Unexpected response code: 403 (ACL not found)\n'
    )
    unknown = senate("acl", "token", "read", "-accessor-id=ffffffff-ff", token=root)
    assert (unknown.rc, unknown.err) == (
        1,
        "Error determining token ID: No such token ID with prefix: ffffffff-ff\n",
    )
    assert (
        senate("acl", "token", "read", token=root).err
        == "Must specify the -accessor-id parameter\n"
    )
    anon = senate("acl", "token", "delete", "-accessor-id=anonymous", token=root)
    assert anon.rc == 1 and "Delete operation not permitted on the anonymous token" in anon.err


def test_templated_policies_are_shown_and_kept(agent: Agent) -> None:
    body = {
        "Description": "templated",
        "TemplatedPolicies": [
            {"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}}
        ],
    }
    req = urllib.request.Request(
        f"http://{HTTP}/v1/acl/token",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"X-Consul-Token": agent.root},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        accessor = json.loads(resp.read())["AccessorID"]
    shown = "Templated Policies:\n   builtin/service\n      Name: api\n      Datacenters: all\n"
    read = senate("acl", "token", "read", f"-accessor-id={accessor}", token=agent.root)
    assert read.rc == 0 and read.out.endswith(shown + "\n"), read.out + read.err
    upd = senate(
        "acl", "token", "update", f"-accessor-id={accessor}", "-description=still", token=agent.root
    )
    assert upd.rc == 0 and "Description:      still\n" in upd.out and shown in upd.out, upd.err
    as_json = senate(
        "acl", "token", "read", f"-accessor-id={accessor}", "-format=json", token=agent.root
    )
    assert as_json.json()["TemplatedPolicies"] == [
        {"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}}
    ]


def test_policies(agent: Agent) -> None:
    root = agent.root
    made = senate(
        "acl",
        "policy",
        "create",
        "-name=svc",
        "-valid-datacenter=dc1",
        "-rules=",
        "-format=json",
        token=root,
    )
    assert made.rc == 0, made.err
    pid = made.json()["ID"]
    assert made.json()["Datacenters"] == ["dc1"]
    by_name = senate("acl", "policy", "read", "-name=svc", token=root)
    by_id = senate("acl", "policy", "read", f"-id={pid[:8]}", token=root)
    assert by_name.rc == by_id.rc == 0 and by_name.out == by_id.out
    assert "Datacenters:  dc1\n" in by_name.out

    upd = senate(
        "acl",
        "policy",
        "update",
        f"-id={pid}",
        "-description=now described",
        '-rules=service_prefix "" { policy = "read" }',
        "-format=json",
        token=root,
    ).json()
    assert upd["Name"] == "svc" and upd["Datacenters"] == ["dc1"]  # merged: kept
    assert upd["Description"] == "now described"
    wiped = senate(
        "acl",
        "policy",
        "update",
        f"-id={pid}",
        "-no-merge",
        "-name=svc2",
        "-format=json",
        token=root,
    ).json()
    assert (wiped["Name"], wiped["Description"], wiped["Datacenters"]) == ("svc2", "", None)

    listed = senate("acl", "policy", "list", token=root)
    assert listed.rc == 0
    assert (
        "global-management:\n   ID:           00000000-0000-0000-0000-000000000001\n" in listed.out
    )
    assert f"svc2:\n   ID:           {pid}\n" in listed.out
    gm = senate("acl", "policy", "read", "-id=global-management", token=root)
    assert gm.rc == 0 and 'acl = "write"' in gm.out

    bad = senate(
        "acl",
        "policy",
        "create",
        "-name=bad",
        '-rules=key "x" { policy = "sometimes" }',
        token=root,
    )
    assert bad.rc == 1 and bad.err.startswith(
        "Failed to create new policy: Unexpected response code:"
    )
    missing = senate("acl", "policy", "read", "-name=nope", token=root)
    assert (missing.rc, missing.err) == (1, "Error policy not found: nope\n")
    gone = senate("acl", "policy", "read", "-id=00000000-0000-0000-0000-0000000000ff", token=root)
    assert gone.rc == 1
    assert gone.err == (
        'Error reading policy "id:00000000-0000-0000-0000-0000000000ff": Unexpected response '
        "code: 404 (ACL policy not found)\n"
    )
    no_prefix = senate("acl", "policy", "delete", "-id=abcdef", token=root)
    assert (no_prefix.rc, no_prefix.err) == (
        1,
        "Error determining policy ID: No such policy ID with prefix: abcdef\n",
    )
    assert senate("acl", "policy", "delete", f"-id={pid}", token=root).rc == 0
    assert senate("acl", "policy", "read", f"-id={pid}", token=root).rc == 1


def test_roles(agent: Agent) -> None:
    root = agent.root
    assert (
        senate("acl", "policy", "create", "-name=role-app", f"-rules={APP_RULES}", token=root).rc
        == 0
    )
    made = senate(
        "acl",
        "role",
        "create",
        "-name=app-role",
        "-description=apps",
        "-policy-name=role-app",
        "-format=json",
        token=root,
    )
    assert made.rc == 0, made.err
    rid = made.json()["ID"]
    tok = senate("acl", "token", "create", "-role-name=app-role", "-format=json", token=root).json()
    assert [r["Name"] for r in tok["Roles"]] == ["app-role"]
    ok = senate("kv", "put", f"-token={tok['SecretID']}", "app/role", "1")
    assert ok.rc == 0, ok.err
    assert senate("kv", "put", f"-token={tok['SecretID']}", "other/role", "1").rc == 1

    read = senate("acl", "role", "read", "-name=app-role", token=root)
    assert read.rc == 0 and read.out.splitlines()[:3] == [
        f"ID:           {rid}",
        "Name:         app-role",
        "Description:  apps",
    ]
    upd = senate(
        "acl",
        "role",
        "update",
        f"-id={rid[:8]}",
        "-service-identity=web",
        "-description=more",
        token=root,
    )
    assert upd.rc == 0, upd.err
    assert "Description:  more\n" in upd.out and " - role-app\n" in upd.out
    assert "Service Identities:\n   web (Datacenters: all)\n" in upd.out
    listed = senate("acl", "role", "list", token=root)
    assert f"app-role:\n   ID:           {rid}\n   Description:  more\n" in listed.out

    deleted = senate("acl", "role", "delete", "-name=app-role", token=root)
    assert (deleted.rc, deleted.out) == (0, f'Role "{rid}" deleted successfully\n')
    after = senate("acl", "role", "read", f"-id={rid}", token=root)
    assert (after.rc, after.err) == (1, f'Role not found with ID "{rid}"\n')
    no_name = senate("acl", "role", "delete", "-name=app-role", token=root)
    assert (no_name.rc, no_name.err) == (
        1,
        "Error determining role ID: No such role with name app-role\n",
    )


def test_set_agent_token(agent: Agent) -> None:
    root = agent.root
    assert (
        senate("acl", "policy", "create", "-name=default-app", f"-rules={APP_RULES}", token=root).rc
        == 0
    )
    tok = senate(
        "acl", "token", "create", "-policy-name=default-app", "-format=json", token=root
    ).json()
    assert senate("kv", "put", "app/default", "1").rc == 1
    r = senate("acl", "set-agent-token", "default", tok["SecretID"], token=root)
    assert (r.rc, r.out) == (0, 'ACL token "default" set successfully\n'), r.err
    try:
        # a request without a token now acts with the agent's default token
        ok = senate("kv", "put", "app/default", "1")
        assert ok.rc == 0, ok.err
        assert senate("kv", "put", "other/default", "1").rc == 1
    finally:
        assert senate("acl", "set-agent-token", "default", "", token=root).rc == 0
    assert senate("kv", "put", "app/default", "2").rc == 1
    denied = senate("acl", "set-agent-token", "agent", tok["SecretID"], token=tok["SecretID"])
    assert denied.rc == 1
    assert denied.err.startswith('Failed to set ACL token "agent": Unexpected response code: 403')
