"""Prepared queries on real agents: two datacenters of one server each on 127.5.60.x, WAN
joined. /v1/query CRUD with Consul's JSON and errors (and a snapshot restore that brings a
deleted query back); execute's filters, Near, limit and DNS TTL; templates; the issue's proof
- a query with Failover.NearestN = 1 answers from dc1 while dc1's instance passes, from dc2
once it fails, and from dc1 again when it passes, over HTTP and with dig; and query ACL
rules on an ACL-enabled agent (the query's own token used to execute it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, Node, run_cli, wait_for

pytestmark = pytest.mark.timeout(240)

DC1_IP = "127.5.60.1"
DC2_IP = "127.5.60.2"
ACL_IP = "127.5.60.3"
ROOT = "5d0c9a1e-8c3e-4d6a-9d55-3b0f2a7e1c44"


def call(node: Node, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    """(status, parsed JSON or text) of one request, with `token` (else the node's)."""
    import urllib.error
    import urllib.request

    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method=method)
    token = node.token if token is None else token
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, (json.loads(raw) if raw else None)
    except ValueError:
        return status, raw.decode(errors="replace")


def ok(node: Node, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    status, parsed = call(node, method, path, body, token)
    assert status == 200, f"{method} {path}: {status} {parsed}"
    return parsed


def dig(ip: str, *args: str) -> str:
    cmd = ["dig", f"@{ip}", "-p", "8600", "+time=5", "+tries=1", "+noall", "+answer", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout


@pytest.fixture(scope="module")
def dcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    c = Cluster(tmp_path_factory.mktemp("pq"))
    try:
        d1 = c.add("pq1", DC1_IP, server=True, bootstrap=True, datacenter="dc1")
        d2 = c.add("pq2", DC2_IP, server=True, bootstrap=True, datacenter="dc2")
        c.start_all()
        c.wait_http([d1, d2], timeout=30)
        c.wait_leader([d1], timeout=30)
        c.wait_leader([d2], timeout=30)
        out = run_cli(["join", "-wan", f"-rpc-addr={DC2_IP}:8400", f"-http-addr={d2.http}", DC1_IP])
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: "dc2" in d1.get_json("/v1/catalog/datacenters"), 20, "dc2 known to dc1")
        yield d1, d2
    except BaseException:
        sys.stderr.write("\n" + c.dump_logs() + "\n")
        raise
    finally:
        c.cleanup()


def _register(node: Node, name: str, address: str, service: dict[str, Any], **extra: Any) -> None:
    ok(
        node,
        "PUT",
        "/v1/catalog/register",
        {"Node": name, "Address": address, "Service": service, **extra},
    )


def _ids(reply: dict[str, Any]) -> list[str]:
    return sorted(n["Service"]["ID"] for n in reply["Nodes"])


def test_crud_errors_and_snapshot_restore(dcs: tuple[Node, Node]) -> None:
    d1, _d2 = dcs
    created = ok(d1, "POST", "/v1/query", {"Name": "crud", "Service": {"Service": "db"}})
    qid = created["ID"]
    assert list(created) == ["ID"] and len(qid) == 36
    (query,) = ok(d1, "GET", f"/v1/query/{qid}")
    assert query["Name"] == "crud" and query["Service"]["Service"] == "db"
    assert query["Service"]["Failover"] == {"NearestN": 0, "Datacenters": None, "Targets": None}
    assert query["DNS"] == {"TTL": ""} and query["Template"]["Type"] == ""
    assert query["CreateIndex"] == query["ModifyIndex"] > 0
    assert qid in [q["ID"] for q in ok(d1, "GET", "/v1/query")]
    # names are unique, case-insensitively, and may not be another query's ID
    assert call(d1, "POST", "/v1/query", {"Name": "CRUD", "Service": {"Service": "x"}}) == (
        400,
        "name 'CRUD' aliases an existing query name",
    )
    assert call(d1, "POST", "/v1/query", {"Name": qid, "Service": {"Service": "x"}}) == (
        400,
        f"name '{qid}' aliases an existing query ID",
    )
    assert call(d1, "POST", "/v1/query", {"Service": {"Service": "x"}}) == (
        400,
        "Invalid prepared query: Must be bound to a session",
    )
    assert call(d1, "POST", "/v1/query", {"Name": "n"}) == (
        400,
        "Invalid prepared query: Must provide a Service name to query",
    )
    status, text = call(d1, "POST", "/v1/query", {"Name": "n", "Service": {"Service": 5}})
    assert status == 400 and "Service.Service must be a string" in text
    assert call(d1, "POST", "/v1/query", b"{nope")[0] == 400
    # update replaces the definition; the URL's ID wins over the body's
    ok(d1, "PUT", f"/v1/query/{qid}", {"ID": "x", "Name": "crud2", "Service": {"Service": "db2"}})
    (query,) = ok(d1, "GET", f"/v1/query/{qid}")
    assert (query["Name"], query["Service"]["Service"]) == ("crud2", "db2")
    assert query["ModifyIndex"] > query["CreateIndex"]
    snapshot = d1.request("GET", "/v1/snapshot")[1]
    ok(d1, "DELETE", f"/v1/query/{qid}")
    assert call(d1, "GET", f"/v1/query/{qid}") == (404, "Query not found")
    assert call(d1, "GET", f"/v1/query/{qid}/execute") == (404, "Query not found")
    missing = f"Cannot modify non-existent prepared query: '{qid}'"
    assert call(d1, "DELETE", f"/v1/query/{qid}") == (400, missing)
    # a snapshot taken before the delete brings the query back
    assert d1.request("PUT", "/v1/snapshot", snapshot)[0] == 200
    (query,) = ok(d1, "GET", f"/v1/query/{qid}")
    assert query["Name"] == "crud2"
    ok(d1, "DELETE", f"/v1/query/{qid}")


def test_execute_filters_near_limit_and_ttl(dcs: tuple[Node, Node]) -> None:
    d1, _d2 = dcs
    passing = {"CheckID": "c", "Name": "c", "Status": "passing", "ServiceID": "api"}
    for i, (tags, meta, status) in enumerate(
        [
            (["v1", "prod"], {"zone": "a"}, "passing"),
            (["v2", "prod"], {"zone": "b"}, "warning"),
            (["v1", "canary"], {"zone": "a"}, "critical"),
        ],
        1,
    ):
        _register(
            d1,
            f"api-node{i}",
            f"127.5.61.{i}",
            {"ID": "api", "Service": "api", "Tags": tags, "Meta": {"ver": tags[0]}, "Port": 80 + i},
            NodeMeta=meta,
            Checks=[dict(passing, Status=status)],
        )

    def run(service: dict[str, Any], qs: str = "") -> dict[str, Any]:
        qid = ok(d1, "POST", "/v1/query", {"Name": "f", "Service": service})["ID"]
        try:
            return dict(ok(d1, "GET", f"/v1/query/f/execute{qs}"))
        finally:
            ok(d1, "DELETE", f"/v1/query/{qid}")

    def nodes(reply: dict[str, Any]) -> list[str]:
        return sorted(n["Node"]["Node"] for n in reply["Nodes"])

    everyone = run({"Service": "api"})
    assert nodes(everyone) == ["api-node1", "api-node2"]  # critical is never served
    assert everyone["Service"] == "api" and everyone["Datacenter"] == "dc1"
    assert everyone["Failovers"] == 0 and everyone["DNS"] == {"TTL": ""}
    assert nodes(run({"Service": "api", "OnlyPassing": True})) == ["api-node1"]
    ignored = run({"Service": "api", "IgnoreCheckIDs": ["c"]})
    assert nodes(ignored) == ["api-node1", "api-node2", "api-node3"]
    assert nodes(run({"Service": "api", "Tags": ["PROD", "!v2"]})) == ["api-node1"]
    assert nodes(run({"Service": "api", "NodeMeta": {"zone": "b"}})) == ["api-node2"]
    assert nodes(run({"Service": "api", "ServiceMeta": {"ver": "v2"}})) == ["api-node2"]
    assert len(run({"Service": "api"}, "?limit=1")["Nodes"]) == 1
    assert run({"Service": "api"}, "?near=api-node2")["Nodes"][0]["Node"]["Node"] == "api-node2"
    # nothing matches and no failover is asked for: an empty answer, not an error
    empty = run({"Service": "api", "Tags": ["nope"]})
    assert empty["Nodes"] == [] and empty["Failovers"] == 0
    assert call(d1, "GET", "/v1/query/x/execute?limit=z")[0] == 400
    # DNS.TTL is the TTL of the query's DNS answers
    qid = ok(
        d1,
        "POST",
        "/v1/query",
        {
            "Name": "api-dns",
            "Service": {"Service": "api", "OnlyPassing": True},
            "DNS": {"TTL": "9s"},
        },
    )["ID"]
    try:
        if shutil.which("dig"):
            assert dig(DC1_IP, "api-dns.query.consul").split() == [
                "api-dns.query.consul.",
                "9",
                "IN",
                "A",
                "127.5.61.1",
            ]
            assert "127.5.61.1" in dig(DC1_IP, f"{qid}.query.dc1.consul")
            assert dig(DC1_IP, "nothing.query.consul") == ""
        explain = ok(d1, "GET", "/v1/query/api-dns/explain")
        assert explain["Query"]["ID"] == qid and explain["Query"]["DNS"]["TTL"] == "9s"
    finally:
        ok(d1, "DELETE", f"/v1/query/{qid}")
        for i in (1, 2, 3):
            ok(d1, "PUT", "/v1/catalog/deregister", {"Node": f"api-node{i}"})


def test_templates(dcs: tuple[Node, Node]) -> None:
    d1, _d2 = dcs
    for svc, tag in (("geo", "primary"), ("geo", "replica"), ("cache", "primary")):
        _register(
            d1,
            f"{svc}-{tag}",
            f"127.5.62.{len(svc) + len(tag)}",
            {"ID": svc, "Service": svc, "Tags": [tag], "Port": 6379},
        )
    template = {
        "Name": "store-",
        "Template": {"Type": "name_prefix_match", "Regexp": "^store-(.+?)-([a-z]+)$"},
        "Service": {"Service": "${match(1)}", "Tags": ["${match(2)}"]},
    }
    qid = ok(d1, "POST", "/v1/query", template)["ID"]
    catch_all = ok(
        d1,
        "POST",
        "/v1/query",
        {
            "Name": "",
            "Template": {"Type": "name_prefix_match"},
            "Service": {"Service": "${name.full}"},
        },
    )["ID"]
    try:
        explained = ok(d1, "GET", "/v1/query/store-geo-replica/explain")["Query"]
        assert explained["Service"]["Service"] == "geo"
        assert explained["Service"]["Tags"] == ["replica"]
        reply = ok(d1, "GET", "/v1/query/store-geo-replica/execute")
        assert [n["Node"]["Node"] for n in reply["Nodes"]] == ["geo-replica"]
        # the longest prefix wins; the empty-named template answers any other name
        assert ok(d1, "GET", "/v1/query/cache/execute")["Service"] == "cache"
        status, text = call(d1, "GET", f"/v1/query/{qid}/execute")
        assert (status, text) == (
            400,
            "prepared query templates can only be resolved up by name, not by ID",
        )
        assert call(
            d1,
            "POST",
            "/v1/query",
            {"Template": {"Type": "name_prefix_match"}, "Service": {"Service": "x"}},
        ) == (400, "a query template with an empty name already exists")
        status, text = call(
            d1,
            "POST",
            "/v1/query",
            {
                "Name": "bad-",
                "Template": {"Type": "name_prefix_match", "Regexp": "(?<=x)y"},
                "Service": {"Service": "x"},
            },
        )
        assert status == 400 and text.startswith("failed compiling template: Bad Regexp:")
        status, text = call(
            d1,
            "POST",
            "/v1/query",
            {"Name": "bad-", "Template": {"Type": "nope"}, "Service": {"Service": "x"}},
        )
        assert (status, text) == (400, "failed compiling template: Bad Template.Type 'nope'")
        if shutil.which("dig"):
            assert dig(DC1_IP, "store-cache-primary.query.consul", "SRV").split()[-1] == (
                "cache-primary.node.dc1.consul."
            )
    finally:
        ok(d1, "DELETE", f"/v1/query/{qid}")
        ok(d1, "DELETE", f"/v1/query/{catch_all}")
        for name in ("geo-primary", "geo-replica", "cache-primary"):
            ok(d1, "PUT", "/v1/catalog/deregister", {"Node": name})


def test_failover_nearest_n_follows_health_over_http_and_dns(dcs: tuple[Node, Node]) -> None:
    """The issue's proof."""
    d1, d2 = dcs
    for node in (d1, d2):
        ok(
            node,
            "PUT",
            "/v1/agent/service/register",
            {"Name": "web", "Port": 8080, "Check": {"TTL": "600s"}},
        )
        ok(node, "PUT", "/v1/agent/check/pass/service:web")
    qid = ok(
        d1,
        "POST",
        "/v1/query",
        {
            "Name": "web-fo",
            "Service": {"Service": "web", "Failover": {"NearestN": 1}},
            "DNS": {"TTL": "3s"},
        },
    )["ID"]

    def answered_from(dc: str, address: str, failovers: int) -> bool:
        reply = d1.get_json("/v1/query/web-fo/execute")
        return (
            reply["Datacenter"] == dc
            and [n["Node"]["Address"] for n in reply["Nodes"]] == [address]
            and reply["Failovers"] == failovers
        )

    def dns_says(address: str, target: str) -> bool:
        if not shutil.which("dig"):
            return True
        a = dig(DC1_IP, "web-fo.query.consul").split()
        srv = dig(DC1_IP, "web-fo.query.consul", "SRV").split()
        return a[-1:] == [address] and a[1] == "3" and srv[-1:] == [target]

    try:
        wait_for(lambda: answered_from("dc1", DC1_IP, 0), 20, "the query answered from dc1")
        wait_for(lambda: dns_says(DC1_IP, "pq1.node.dc1.consul."), 20, "DNS answer from dc1")
        ok(d1, "PUT", "/v1/agent/check/fail/service:web")
        wait_for(lambda: answered_from("dc2", DC2_IP, 1), 20, "the query failed over to dc2")
        wait_for(lambda: dns_says(DC2_IP, "pq2.node.dc2.consul."), 20, "DNS answer from dc2")
        # asked of dc2 directly (?dc=dc2) the query does not exist there: it lives in dc1
        assert call(d1, "GET", "/v1/query/web-fo/execute?dc=dc2") == (404, "Query not found")
        ok(d1, "PUT", "/v1/agent/check/pass/service:web")
        wait_for(lambda: answered_from("dc1", DC1_IP, 0), 20, "the query back on dc1")
        wait_for(lambda: dns_says(DC1_IP, "pq1.node.dc1.consul."), 20, "DNS back on dc1")
        # with every datacenter failing the answer is empty and says how far it looked
        ok(d1, "PUT", "/v1/agent/check/fail/service:web")
        ok(d2, "PUT", "/v1/agent/check/fail/service:web")
        wait_for(lambda: d1.get_json("/v1/query/web-fo/execute")["Nodes"] == [], 20, "no instance")
        assert d1.get_json("/v1/query/web-fo/execute")["Failovers"] == 1
        if shutil.which("dig"):
            assert dig(DC1_IP, "web-fo.query.consul") == ""
    finally:
        ok(d1, "DELETE", f"/v1/query/{qid}")
        for node in (d1, d2):
            ok(node, "PUT", "/v1/agent/service/deregister/web")


# ---------------------------------------------------------------------------------- ACLs


@pytest.fixture(scope="module")
def acl_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("pq-acl")
    conf = root / "acl.hcl"
    conf.write_text(
        'acl {\n  enabled = true\n  default_policy = "deny"\n'
        f'  tokens {{\n    initial_management = "{ROOT}"\n    agent = "{ROOT}"\n  }}\n}}\n'
    )
    c = Cluster(root)
    try:
        node = c.add("pqacl", ACL_IP, server=True, bootstrap=True, extra=[f"-config-file={conf}"])
        node.token = ROOT
        c.start_all()
        c.wait_http([node], timeout=30)
        c.wait_leader([node], timeout=30)
        yield node
    except BaseException:
        sys.stderr.write("\n" + c.dump_logs() + "\n")
        raise
    finally:
        c.cleanup()


def _token(node: Node, name: str, rules: str) -> str:
    pol = ok(node, "PUT", "/v1/acl/policy", {"Name": name, "Rules": rules}, ROOT)
    tok = ok(node, "PUT", "/v1/acl/token", {"Policies": [{"ID": pol["ID"]}]}, ROOT)
    return str(tok["SecretID"])


def test_acl_query_rules_and_the_captured_token(acl_agent: Node) -> None:
    node = acl_agent
    _register(node, "acl-node", "127.5.63.1", {"ID": "secret", "Service": "secret", "Port": 1})
    web_writer = _token(node, "pq-web", 'query_prefix "web-" { policy = "write" }')
    reader = _token(
        node,
        "pq-reader",
        'service "secret" { policy = "read" }\nnode_prefix "" { policy = "read" }',
    )
    body = {"Name": "web-secret", "Token": reader, "Service": {"Service": "secret"}}
    qid = ok(node, "POST", "/v1/query", body, web_writer)["ID"]
    status, text = call(node, "POST", "/v1/query", dict(body, Name="db-secret"), web_writer)
    assert status == 403 and "Permission denied" in text
    assert call(node, "POST", "/v1/query", body, "")[0] == 403  # anonymous
    # who may read the query sees it with the token hidden; management sees the token
    (seen,) = ok(node, "GET", f"/v1/query/{qid}", token=web_writer)
    assert seen["Token"] == "<hidden>"
    assert ok(node, "GET", f"/v1/query/{qid}", token=ROOT)[0]["Token"] == reader
    assert ok(node, "GET", "/v1/query", token="") == []
    assert call(node, "GET", f"/v1/query/{qid}", token="")[0] == 403
    # a definition sent back with the hidden token is refused
    status, text = call(node, "PUT", f"/v1/query/{qid}", dict(body, Token="<hidden>"), web_writer)
    assert status == 400 and "redacted token" in text
    # executing reads the catalog with the query's token: anonymous finds the instance
    reply = ok(node, "GET", "/v1/query/web-secret/execute", token="")
    assert [n["Node"]["Node"] for n in reply["Nodes"]] == ["acl-node"]
    # without a captured token the caller's own (anonymous: nothing) decides
    ok(node, "PUT", f"/v1/query/{qid}", dict(body, Token=""), web_writer)
    assert ok(node, "GET", "/v1/query/web-secret/execute", token="")["Nodes"] == []
    assert call(node, "DELETE", f"/v1/query/{qid}", token="")[0] == 403
    ok(node, "DELETE", f"/v1/query/{qid}", token=web_writer)
