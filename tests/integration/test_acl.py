"""ACLs enforced by real agents (acl.enabled, default_policy deny): every endpoint family
refuses an anonymous request with Consul's 403 and serves a token whose policy allows it; a
token with `key_prefix "app/" { policy = "write" }` reaches app/ and nothing else - through a
follower, a client agent, txn and the CLI; lists are filtered with
X-Consul-Results-Filtered-By-ACLs; DNS answers as the default (anonymous) token may see;
tokens survive a SIGKILL of the leader and come back with a snapshot restore; a second
datacenter (primary_datacenter = dc1) enforces the same token."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, Node, run_cli, wait_for

pytestmark = pytest.mark.timeout(240)

ROOT = "8f3c2c2e-2b39-4b3c-9d0a-1d2f3e4a5b6c"
IPS = ["127.5.40.1", "127.5.40.2", "127.5.40.3"]
CLIENT_IP = "127.5.40.4"
DC2_IP = "127.5.40.11"


def acl_conf(tmp: Path, name: str, *, primary: str = "dc1") -> str:
    path = tmp / f"{name}-acl.hcl"
    path.write_text(
        f'primary_datacenter = "{primary}"\n'
        'acl {\n  enabled = true\n  default_policy = "deny"\n'
        f'  tokens {{\n    initial_management = "{ROOT}"\n    agent = "{ROOT}"\n  }}\n}}\n'
    )
    return f"-config-file={path}"


def call(
    node: Node,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
) -> tuple[int, Any, dict[str, str]]:
    import urllib.error
    import urllib.request

    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method=method)
    if token is not None:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers)
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, parsed, headers


def ok(node: Node, method: str, path: str, body: Any = None, token: str = ROOT) -> Any:
    status, parsed, _ = call(node, method, path, body, token)
    assert status == 200, f"{method} {path}: {status} {parsed}"
    return parsed


def app_token(node: Node) -> dict[str, Any]:
    pol = ok(
        node,
        "PUT",
        "/v1/acl/policy",
        {"Name": "app-writer", "Rules": 'key_prefix "app/" { policy = "write" }'},
    )
    return dict(ok(node, "PUT", "/v1/acl/token", {"Policies": [{"ID": pol["ID"]}]}))


def dns_a(ip: str, name: str) -> tuple[int, list[str]]:
    reply = DNSRecord.parse(DNSRecord.question(name, "A").send(ip, 8600, timeout=5.0))
    return reply.header.rcode, [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def start_dc1(cluster: Cluster, tmp: Path) -> tuple[list[Node], Node]:
    servers = [
        cluster.add(
            f"s{i + 1}",
            ip,
            server=True,
            bootstrap_expect=3,
            retry_join=[IPS[0]],
            extra=[acl_conf(tmp, f"s{i + 1}")],
        )
        for i, ip in enumerate(IPS)
    ]
    client = cluster.add("c1", CLIENT_IP, retry_join=[IPS[0]], extra=[acl_conf(tmp, "c1")])
    cluster.start_all()
    wait_http([*servers, client])
    cluster.wait_leader(servers, timeout=30)
    # the leader writes the management token from acl.tokens.initial_management
    wait_for(
        lambda: call(servers[0], "GET", "/v1/acl/token/self", token=ROOT)[0] == 200,
        20,
        "the initial management token",
    )
    return servers, client


def wait_http(nodes: list[Node]) -> None:
    """The HTTP API up (/v1/status/leader needs no token)."""
    for node in nodes:
        wait_for(
            lambda n=node: n.request("GET", "/v1/status/leader", timeout=2.0)[0] == 200,  # type: ignore[misc]
            20,
            f"HTTP API of {node.name}",
        )


def leader_node(cluster: Cluster, servers: list[Node]) -> Node:
    return cluster.node_by_server_addr(cluster.wait_leader(servers))


def test_default_deny_everywhere_and_a_prefix_token(cluster: Cluster, tmp_path: Path) -> None:
    servers, client = start_dc1(cluster, tmp_path)
    leader = leader_node(cluster, servers)
    follower = next(s for s in servers if s is not leader)

    # anonymous: every endpoint family refuses with Consul's 403
    anonymous = [
        ("GET", "/v1/kv/app/x", None),
        ("PUT", "/v1/kv/app/x", b"1"),
        ("PUT", "/v1/catalog/register", {"Node": "n9", "Address": "10.0.0.9"}),
        ("PUT", "/v1/session/create", {"Name": "s"}),
        ("PUT", "/v1/event/fire/deploy", b""),
        ("GET", "/v1/agent/self", None),
        ("PUT", "/v1/agent/service/register", {"Name": "web", "Port": 80}),
        ("GET", "/v1/operator/raft/configuration", None),
        ("GET", "/v1/snapshot", None),
        ("GET", "/v1/acl/tokens", None),
        ("GET", "/v1/operator/keyring", None),
        ("PUT", "/v1/agent/leave", None),
        ("GET", "/v1/agent/host", None),
        ("GET", "/v1/agent/monitor", None),
        ("GET", "/v1/operator/autopilot/configuration", None),
    ]
    for node in (leader, follower, client):
        for method, path, body in anonymous:
            status, text, _ = call(node, method, path, body)
            assert status == 403, f"{node.name} {method} {path}: {status} {text}"
            assert str(text).startswith("Permission denied"), text
    # a list answers what the token may see, and says it filtered
    status, nodes, headers = call(follower, "GET", "/v1/catalog/nodes")
    assert status == 200 and nodes == []
    assert headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    assert len(ok(follower, "GET", "/v1/catalog/nodes")) == 4
    # an unknown token is not anonymous
    status, text, _ = call(client, "GET", "/v1/kv/app/x", token="no-such-token")
    assert (status, text) == (403, "ACL not found")
    # ... but where no ACL applies it is no error (Consul ignores it there)
    assert call(client, "GET", "/v1/status/leader", token="no-such-token")[0] == 200
    status, text, _ = call(follower, "PUT", "/v1/acl/bootstrap", token="no-such-token")
    assert status == 403 and "bootstrap no longer allowed" in text

    token = app_token(leader)
    secret = token["SecretID"]
    for node in (leader, follower, client):
        assert ok(node, "PUT", f"/v1/kv/app/{node.name}", b"v", token=secret) is True
        status, text, _ = call(node, "PUT", "/v1/kv/other/x", b"v", token=secret)
        assert status == 403 and "lacks permission 'key:write' on \"other/x\"" in text
        status, _, _ = call(node, "GET", "/v1/kv/other/x", token=secret)
        assert status == 403
    keys = ok(client, "GET", "/v1/kv/?keys", token=secret)
    assert keys == ["app/c1", "app/s1", "app/s2", "app/s3"] or set(keys) == {
        f"app/{n.name}" for n in (leader, follower, client)
    }
    # txn: the op outside app/ fails at its index, and nothing is applied
    ops = [
        {"KV": {"Verb": "set", "Key": "app/t", "Value": "MQ=="}},
        {"KV": {"Verb": "set", "Key": "other/t", "Value": "MQ=="}},
    ]
    status, reply, _ = call(follower, "PUT", "/v1/txn", ops, token=secret)
    assert status == 409, reply
    assert reply["Errors"] == [{"OpIndex": 1, "What": "Permission denied"}]
    assert call(leader, "GET", "/v1/kv/app/t", token=ROOT)[0] == 404
    # the CLI, with -token and with CONSUL_HTTP_TOKEN
    r = run_cli(["kv", "put", f"-http-addr={client.http}", f"-token={secret}", "app/cli", "1"])
    assert r.returncode == 0, r.stderr
    r = run_cli(["kv", "put", f"-http-addr={client.http}", f"-token={secret}", "other/cli", "1"])
    assert r.returncode == 1 and "Permission denied" in r.stderr
    r = run_cli(["members", f"-http-addr={client.http}", f"-token={ROOT}"])
    assert r.returncode == 0 and "s1" in r.stdout
    # the CLI RPC (8400) too: anonymous sees no member (Consul's exit 2: nothing listed)
    r = run_cli(["members", f"-rpc-addr={client.ip}:8400"])
    assert (r.returncode, r.stdout) == (2, "")
    r = run_cli(["members", f"-rpc-addr={client.ip}:8400", f"-token={ROOT}"])
    assert r.returncode == 0 and "s1" in r.stdout
    r = run_cli(["leave", f"-rpc-addr={client.ip}:8400", f"-token={secret}"])
    assert r.returncode == 1 and "Permission denied" in r.stdout + r.stderr

    # DNS answers as the default (anonymous) token may see
    ok(client, "PUT", "/v1/agent/service/register", {"Name": "web", "Port": 80})
    wait_for(lambda: ok(leader, "GET", "/v1/catalog/service/web") != [], 20, "web in the catalog")
    assert dns_a(follower.ip, "web.service.consul")[0] == RCODE.NXDOMAIN
    dns_policy = ok(
        leader,
        "PUT",
        "/v1/acl/policy",
        {
            "Name": "dns",
            "Rules": 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }',
        },
    )
    ok(
        leader,
        "PUT",
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        {"Policies": [{"Name": dns_policy["Name"]}]},
    )
    wait_for(
        lambda: dns_a(follower.ip, "web.service.consul") == (RCODE.NOERROR, [CLIENT_IP]),
        10,
        "the follower's DNS to answer as the anonymous token's new policy allows",
    )

    # tokens live in raft: a SIGKILLed leader loses none
    leader.kill()
    rest = [s for s in servers if s is not leader]

    def elected() -> str | None:
        seen = {s.leader() for s in rest}
        addr = seen.pop() if len(seen) == 1 else ""
        return addr if addr and addr != leader.server_addr else None

    new_leader = cluster.node_by_server_addr(wait_for(elected, 30, "a new leader"))
    assert ok(new_leader, "PUT", "/v1/kv/app/after-kill", b"v", token=secret) is True
    assert call(new_leader, "PUT", "/v1/kv/other/after-kill", b"v", token=secret)[0] == 403

    # a snapshot restore brings back a token deleted after it was taken
    raw_snapshot = _raw_get(new_leader, "/v1/snapshot", ROOT)
    assert ok(new_leader, "DELETE", f"/v1/acl/token/{token['AccessorID']}") is True
    wait_for(
        lambda: call(client, "GET", "/v1/kv/app/s1", token=secret)[0] == 403,
        40,
        "the deleted token to stop working (clients cache for token_ttl)",
    )
    assert call(new_leader, "PUT", "/v1/snapshot", raw_snapshot)[0] == 403  # anonymous
    status, text, _ = call(new_leader, "PUT", "/v1/snapshot", raw_snapshot, token=ROOT)
    assert status == 200, text
    wait_for(
        lambda: call(new_leader, "GET", "/v1/kv/app/s1", token=secret)[0] == 200,
        20,
        "the restored token",
    )


def _raw_get(node: Node, path: str, token: str) -> bytes:
    import urllib.request

    req = urllib.request.Request(f"http://{node.http}{path}", headers={"X-Consul-Token": token})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


def test_a_second_datacenter_enforces_the_primarys_tokens(cluster: Cluster, tmp_path: Path) -> None:
    s1 = cluster.add(
        "p1", IPS[0], server=True, bootstrap_expect=1, extra=[acl_conf(tmp_path, "p1")]
    )
    s2 = cluster.add(
        "q1",
        DC2_IP,
        server=True,
        bootstrap_expect=1,
        datacenter="dc2",
        extra=[acl_conf(tmp_path, "q1"), f"-retry-join-wan={IPS[0]}", "-retry-interval-wan=1s"],
    )
    cluster.start_all()
    wait_http([s1, s2])
    cluster.wait_leader([s1])
    cluster.wait_leader([s2])
    wait_for(
        lambda: call(s1, "GET", "/v1/acl/token/self", token=ROOT)[0] == 200,
        20,
        "the initial management token",
    )
    wait_for(lambda: len(ok(s2, "GET", "/v1/agent/members?wan=1")) == 2, 30, "the WAN pool")
    token = app_token(s1)
    secret = token["SecretID"]
    # dc2's servers ask dc1 (the primary) who the token is
    wait_for(
        lambda: call(s2, "PUT", "/v1/kv/app/x", b"v", token=secret)[0] == 200,
        20,
        "dc2 to accept the primary's token",
    )
    status, text, _ = call(s2, "PUT", "/v1/kv/other/x", b"v", token=secret)
    assert status == 403 and "Permission denied" in text
    assert call(s2, "PUT", "/v1/kv/app/y", b"v")[0] == 403  # anonymous
    # and a request from dc1 into dc2 is checked there the same way
    assert call(s1, "PUT", "/v1/kv/app/z?dc=dc2", b"v", token=secret)[0] == 200
    assert call(s1, "PUT", "/v1/kv/other/z?dc=dc2", b"v", token=secret)[0] == 403
    # ACL writes in dc2 go to the primary
    pol = ok(s2, "PUT", "/v1/acl/policy", {"Name": "from-dc2", "Rules": ""})
    assert ok(s1, "GET", f"/v1/acl/policy/{pol['ID']}")["Name"] == "from-dc2"


def test_the_acl_api_as_consul_answers_it(cluster: Cluster, tmp_path: Path) -> None:
    """Bootstrap once (Consul's reset index after), the not-found answers, templated
    policies and expiring tokens, on a fresh ACL-enabled agent without initial management."""
    conf = tmp_path / "acl.hcl"
    conf.write_text('acl { enabled = true\n default_policy = "deny" }\n')
    node = cluster.add("a1", "127.5.40.21", server=True, bootstrap_expect=1)
    node.args.append(f"-config-file={conf}")
    node.start()
    wait_http([node])
    cluster.wait_leader([node])
    status, boot, _ = call(node, "PUT", "/v1/acl/bootstrap")
    assert status == 200, boot
    assert boot["Description"] == "Bootstrap Token (Global Management)"
    assert boot["Policies"] == [
        {"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}
    ]
    root = boot["SecretID"]
    status, text, _ = call(node, "PUT", "/v1/acl/bootstrap")
    assert status == 403
    assert text.startswith("Permission denied: ACL bootstrap no longer allowed (reset index: ")
    # not found: a token is 403 "ACL not found", a policy or role 404, a malformed ID 400
    missing = "8f3c2c2e-0000-4b3c-9d0a-1d2f3e4a5b6c"
    assert call(node, "GET", f"/v1/acl/token/{missing}", token=root)[:2] == (403, "ACL not found")
    assert call(node, "GET", f"/v1/acl/policy/{missing}", token=root)[0] == 404
    assert call(node, "GET", f"/v1/acl/role/{missing}", token=root)[0] == 404
    assert call(node, "GET", "/v1/acl/policy/unknown", token=root)[0] == 400
    # a templated policy acts: builtin/service writes its service only
    status, tok, _ = call(
        node,
        "PUT",
        "/v1/acl/token",
        {
            "TemplatedPolicies": [
                {"TemplateName": "builtin/service", "TemplateVariables": {"Name": "web"}}
            ]
        },
        token=root,
    )
    assert status == 200, tok
    assert tok["TemplatedPolicies"] == [
        {"TemplateName": "builtin/service", "TemplateVariables": {"name": "web"}}
    ]
    reg = {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "web"}}
    ok(node, "PUT", "/v1/catalog/register", reg, token=root)  # then the token needs no node write
    assert ok(node, "PUT", "/v1/catalog/register", reg, token=tok["SecretID"]) is True
    status, text, _ = call(
        node,
        "PUT",
        "/v1/catalog/register",
        {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "db"}},
        token=tok["SecretID"],
    )
    assert status == 403 and "'service:write' on \"db\"" in text
    status, bad, _ = call(
        node,
        "PUT",
        "/v1/acl/token",
        {"TemplatedPolicies": [{"TemplateName": "builtin/nope"}]},
        token=root,
    )
    assert status == 400
    assert 'templated policy "builtin/nope" does not exist' in bad
    # an expiring token carries its ExpirationTime; a TTL out of Consul's bounds is refused
    exp = ok(node, "PUT", "/v1/acl/token", {"ExpirationTTL": "10m"}, token=root)
    assert ok(node, "PUT", "/v1/acl/token", {"ExpirationTTL": 600_000_000_000}, token=root)
    assert exp["ExpirationTime"].endswith("Z")
    status, text, _ = call(node, "PUT", "/v1/acl/token", {"ExpirationTTL": "1s"}, token=root)
    assert status == 400 and "should be between 1m0s and 24h0m0s" in text
    # the anonymous token cannot be deleted, nor can a token delete itself
    anon = "00000000-0000-0000-0000-000000000002"
    status, text, _ = call(node, "DELETE", f"/v1/acl/token/{anon}", token=root)
    assert status == 400
    assert "Delete operation not permitted on the anonymous token" in text
    status, text, _ = call(node, "DELETE", f"/v1/acl/token/{boot['AccessorID']}", token=root)
    assert status == 400
    assert "Deletion of the request's authorization token is not permitted" in text


def test_a_config_watch_uses_its_token(cluster: Cluster, tmp_path: Path) -> None:
    """A watch's `token` is what its requests carry: under default deny, the watch whose
    token may read the key sees it; the one without a token (anonymous) never does."""
    out_ok, out_anon = tmp_path / "with-token.json", tmp_path / "anonymous.json"

    def watch(out: Path, token: str) -> str:
        return (
            '{ type = "key"\n key = "config/flag"\n'
            + (f' token = "{token}"\n' if token else "")
            + f' args = ["/bin/sh", "-c", "cat > {out}.tmp && mv {out}.tmp {out}"] }}'
        )

    conf = tmp_path / "watch.hcl"
    conf.write_text(f"watches = [\n{watch(out_ok, ROOT)},\n{watch(out_anon, '')}\n]\n")
    node = cluster.add(
        "w1", "127.5.40.31", server=True, bootstrap_expect=1, extra=[acl_conf(tmp_path, "w1")]
    )
    node.args.append(f"-config-file={conf}")
    node.start()
    wait_http([node])
    cluster.wait_leader([node])
    wait_for(
        lambda: call(node, "PUT", "/v1/kv/config/flag", b"on", token=ROOT)[0] == 200,
        20,
        "the management token",
    )

    def seen(out: Path) -> bool:
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("Value") == "b24="

    wait_for(lambda: seen(out_ok), 20, "the watch with a token to get the key")
    assert not seen(out_anon)
    wait_for(
        lambda: (
            "Watch (type: key) errored: Unexpected response code: 403 (Permission denied: "
            "anonymous token lacks permission 'key:read'" in node.log_text()
        ),
        20,
        "the anonymous watch's refusal in the log",
    )


def test_services_sync_with_their_own_tokens(cluster: Cluster, tmp_path: Path) -> None:
    """A client whose agent token has only its node identity: the service whose definition
    carries a token with service:write reaches the catalog; the one without stays out, and
    the agent logs why, as Consul's anti-entropy does."""
    server = cluster.add(
        "t1", "127.5.40.41", server=True, bootstrap_expect=1, extra=[acl_conf(tmp_path, "t1")]
    )
    server.start()
    wait_http([server])
    cluster.wait_leader([server])
    wait_for(
        lambda: call(server, "GET", "/v1/acl/token/self", token=ROOT)[0] == 200,
        20,
        "the initial management token",
    )
    node_token = ok(
        server,
        "PUT",
        "/v1/acl/token",
        {"NodeIdentities": [{"NodeName": "t2", "Datacenter": "dc1"}]},
    )["SecretID"]
    web_token = ok(
        server,
        "PUT",
        "/v1/acl/token",
        {"ServiceIdentities": [{"ServiceName": "web"}]},
    )["SecretID"]
    conf = tmp_path / "t2.hcl"
    conf.write_text(
        'acl {\n enabled = true\n default_policy = "deny"\n'
        f' tokens {{ agent = "{node_token}" }}\n}}\n'
        f'service {{\n name = "web"\n port = 80\n token = "{web_token}"\n}}\n'
        'service {\n name = "db"\n port = 5432\n}\n'
    )
    client = cluster.add("t2", "127.5.40.42", retry_join=[server.ip])
    client.args.append(f"-config-file={conf}")
    client.start()
    wait_for(
        lambda: call(server, "GET", "/v1/catalog/service/web", token=ROOT)[1] not in ([], None),
        30,
        "web synced with its own token",
    )
    assert call(server, "GET", "/v1/catalog/node/t2", token=ROOT)[0] == 200
    wait_for(
        lambda: (
            "Service registration of 'db' blocked by ACLs: Permission denied" in client.log_text()
        ),
        30,
        "db refused, and said so",
    )
    assert call(server, "GET", "/v1/catalog/service/db", token=ROOT)[1] == []
