"""Consul 1.x's HTTP API over the real server side: bodies decoded case-insensitively,
1.x's fields and values, ?node-meta, repeated ?tag, ?filter, ?cached, and the endpoints 1.x
clients call (agent/service/:id, agent/health/service/*, agent/host, agent/version,
coordinate/node and update, force-leave?prune, replace-existing-checks)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest
from agent_double import AgentDouble

pytestmark = pytest.mark.timeout(60)

Client = Any


async def put(client: Client, path: str, body: Any) -> tuple[int, str]:
    resp = await client.put(path, data=json.dumps(body))
    return resp.status, await resp.text()


async def get(client: Client, path: str) -> Any:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def _register(client: Client, node: str, addr: str, meta: dict[str, str], **svc: Any) -> None:
    body: dict[str, Any] = {"node": node, "address": addr, "node_meta": meta}
    if svc:
        body["service"] = svc
    status, text = await put(client, "/v1/catalog/register", body)
    assert status == 200, text


async def test_session_create_reads_lowercase_keys_as_python_consul_sends(client: Client) -> None:
    # python-consul / Patroni: name, ttl, behavior, lockdelay, checks=[]
    body = {"name": "patroni", "ttl": "15s", "behavior": "delete", "lockdelay": "1s", "checks": []}
    status, text = await put(client, "/v1/session/create", body)
    assert status == 200, text
    sid = json.loads(text)["ID"]
    (sess,) = await get(client, f"/v1/session/info/{sid}")
    assert (sess["Name"], sess["TTL"], sess["Behavior"]) == ("patroni", "15s", "delete")
    assert sess["LockDelay"] == 1_000_000_000
    assert sess["Checks"] == [] and not sess["NodeChecks"] and sess["ServiceChecks"] is None


async def test_session_defaults_and_node_checks(client: Client) -> None:
    status, text = await put(client, "/v1/session/create", {})
    assert status == 200, text
    (sess,) = await get(client, f"/v1/session/info/{json.loads(text)['ID']}")
    assert sess["Checks"] == ["serfHealth"] and sess["NodeChecks"] == ["serfHealth"]
    assert sess["LockDelay"] == 15_000_000_000 and sess["Behavior"] == "release"
    status, text = await put(client, "/v1/session/create", {"TTL": 5})
    assert status == 500 and "Invalid Session TTL" in text  # 5 ns: out of Consul's range
    status, text = await put(client, "/v1/session/create", {"LockDelay": "soon"})
    assert (
        status == 400 and text == "Request decode failed: LockDelay: time: invalid duration 'soon'"
    )


async def test_empty_kv_value_is_null(client: Client) -> None:
    assert (await put(client, "/v1/kv/empty", ""))[0] == 200
    resp = await client.put("/v1/kv/empty", data=b"")
    assert resp.status == 200
    (entry,) = await get(client, "/v1/kv/empty")
    assert entry["Value"] is None


async def test_node_meta_and_repeated_tags_and_filter(client: Client) -> None:
    await _register(
        client, "n1", "10.0.0.1", {"rack": "r1"}, service="web", tags=["a", "b"], port=80
    )
    await _register(client, "n2", "10.0.0.2", {"rack": "r2"}, service="web", tags=["a"], port=81)
    nodes = await get(client, "/v1/catalog/nodes?node-meta=rack:r1")
    assert [n["Node"] for n in nodes] == ["n1"]
    # a map, as Consul's parseMetaFilter: a repeated key keeps its last value
    nodes = await get(client, "/v1/catalog/nodes?node-meta=rack:r1&node-meta=rack:r2")
    assert [n["Node"] for n in nodes] == ["n2"]
    assert await get(client, "/v1/catalog/nodes?node-meta=rack:r1&node-meta=zone:z9") == []
    services = await get(client, "/v1/catalog/services?node-meta=rack:r2")
    assert services == {"web": ["a"]}
    both = await get(client, "/v1/catalog/service/web?tag=a&tag=b")
    assert [s["Node"] for s in both] == ["n1"]
    assert both[0]["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    health = await get(client, "/v1/health/service/web?tag=a&node-meta=rack:r2")
    assert [h["Node"]["Node"] for h in health] == ["n2"]
    flt = await get(client, "/v1/catalog/service/web?filter=ServicePort%20%3D%3D%2081")
    assert [s["Node"] for s in flt] == ["n2"]
    flt = await get(client, "/v1/health/service/web?filter=Service.Tags%20contains%20%22b%22")
    assert [h["Node"]["Node"] for h in flt] == ["n1"]
    flt = await get(client, "/v1/catalog/services?filter=ServiceTags%20contains%20%22b%22")
    assert flt == {"web": ["a", "b"]}
    flt = await get(client, "/v1/catalog/nodes?filter=Meta.rack%20%3D%3D%20r2")
    assert [n["Node"] for n in flt] == ["n2"]
    resp = await client.get("/v1/catalog/nodes?filter=Meta.rack%20%3D%3D")
    assert resp.status == 400
    assert (await resp.text()).startswith("Failed to create boolean expression evaluator: 1:13")
    resp = await client.get("/v1/catalog/services?filter=(")
    assert resp.status == 400


async def test_cached_says_miss(client: Client) -> None:
    resp = await client.get("/v1/catalog/nodes?cached")
    assert resp.status == 200 and resp.headers["X-Cache"] == "MISS"
    assert "X-Cache" not in (await client.get("/v1/catalog/nodes")).headers


async def test_agent_service_views_and_local_health(client: Client, agent: AgentDouble) -> None:
    web = {
        "name": "web",
        "id": "web1",
        "port": 80,
        "weights": {"passing": 3, "warning": 1},
        "check": {"ttl": "30s"},
    }
    assert (await put(client, "/v1/agent/service/register", web))[0] == 200
    svc = await get(client, "/v1/agent/service/web1")
    assert svc["Weights"] == {"Passing": 3, "Warning": 1} and svc["Datacenter"] == "mydc"
    assert svc["ContentHash"]
    resp = await client.get("/v1/agent/service/nope")
    assert resp.status == 404 and await resp.text() == "unknown service ID: nope"
    resp = await client.get("/v1/agent/health/service/id/web1")
    assert resp.status == 503
    assert (await resp.json())["AggregatedStatus"] == "critical"
    assert (await client.put("/v1/agent/check/pass/service:web1")).status == 200
    resp = await client.get("/v1/agent/health/service/name/web?format=text")
    assert resp.status == 200 and await resp.text() == "passing"
    resp = await client.get("/v1/agent/health/service/name/none")
    assert resp.status == 404
    flt = await get(client, "/v1/agent/services?filter=Service%20%3D%3D%20web")
    assert list(flt) == ["web1"]
    host = await get(client, "/v1/agent/host")
    assert host["Memory"]["total"] > 0 and host["Host"]["hostname"]
    version = await get(client, "/v1/agent/version")
    assert set(version) == {"SHA", "BuildDate", "HumanVersion", "FIPS"}


async def test_reregistering_keeps_checks_unless_replace_existing_checks(client: Client) -> None:
    two = {"name": "web", "checks": [{"id": "a", "ttl": "30s"}, {"id": "b", "ttl": "30s"}]}
    assert (await put(client, "/v1/agent/service/register", two))[0] == 200
    one = {"name": "web", "checks": [{"id": "a", "ttl": "30s"}]}
    assert (await put(client, "/v1/agent/service/register", one))[0] == 200
    assert sorted(await get(client, "/v1/agent/checks")) == ["a", "b"]
    path = "/v1/agent/service/register?replace-existing-checks"
    assert (await put(client, path, one))[0] == 200
    assert sorted(await get(client, "/v1/agent/checks")) == ["a"]


async def test_coordinates_1x(client: Client) -> None:
    dcs = await get(client, "/v1/coordinate/datacenters")
    assert all(d["AreaID"] == "wan" for d in dcs)
    resp = await client.get("/v1/coordinate/node/nobody")
    assert resp.status == 404 and "X-Consul-Index" in resp.headers
    status, text = await put(client, "/v1/coordinate/update", {"Node": "server1", "Coord": {}})
    assert status == 400 and text.startswith("rejected bad coordinate")
    status, text = await put(client, "/v1/coordinate/update", {"Coord": {}})
    assert status == 400 and text == "Missing node name"


async def test_force_leave_prune(client: Client, agent: AgentDouble) -> None:
    assert (await client.put("/v1/agent/force-leave/ceph-debug?prune")).status == 200
    assert agent.gossip.force_left == ["ceph-debug (prune)"]


async def test_catalog_register_reads_lowercase_keys(client: Client) -> None:
    body = {
        "node": "ext",
        "address": "10.1.1.1",
        "service": {"service": "db", "port": 5432},
        "check": {"name": "db alive", "status": "passing", "service_id": "db"},
    }
    status, text = await put(client, "/v1/catalog/register", body)
    assert status == 200, text
    (entry,) = await get(client, "/v1/health/service/db")
    assert entry["Service"]["Port"] == 5432
    assert [c["Name"] for c in entry["Checks"]] == ["db alive"]


async def test_usage_node_services_and_no_mesh(client: Client) -> None:
    await _register(client, "n1", "10.0.0.1", {}, service="web", port=80)
    await _register(client, "n2", "10.0.0.2", {}, service="web", port=81)
    resp = await client.get("/v1/operator/usage")
    assert resp.status == 200 and "X-Consul-Index" in resp.headers
    usage = (await resp.json())["Usage"]["mydc"]
    assert (usage["Services"], usage["ServiceInstances"]) == (2, 3)  # web x2 and consul
    assert usage["Nodes"] >= 2
    ns = await get(client, "/v1/catalog/node-services/n1")
    assert ns["Node"]["Node"] == "n1" and [s["Service"] for s in ns["Services"]] == ["web"]
    ns = await get(client, "/v1/catalog/node-services/n1?filter=Port%20%3D%3D%2099")
    assert ns["Services"] == []
    for path in ("/v1/health/connect/web", "/v1/catalog/connect/web", "/v1/health/ingress/web"):
        resp = await client.get(path)
        assert resp.status == 200 and await resp.json() == [] and "X-Consul-Index" in resp.headers


async def test_event_fire_in_another_datacenter_goes_through_its_servers(
    client: Client, agent: AgentDouble
) -> None:
    resp = await client.put("/v1/event/fire/deploy?dc=nowhere", data=b"x")
    assert resp.status == 500 and await resp.text() == "No path to datacenter"
    resp = await client.put("/v1/event/fire/deploy?dc=mydc", data=b"x")
    assert resp.status == 200


async def test_config_entries_are_stored_listed_cas_and_deleted(client: Client) -> None:
    status, text = await put(
        client, "/v1/config", {"kind": "service-defaults", "name": "web", "protocol": "http"}
    )
    assert (status, text.strip()) == (200, "true")
    entry = await get(client, "/v1/config/service-defaults/web")
    assert (entry["Kind"], entry["Name"], entry["Protocol"]) == ("service-defaults", "web", "http")
    modify = entry["ModifyIndex"]
    status, text = await put(client, f"/v1/config?cas={modify + 100}", dict(entry, Protocol="tcp"))
    assert text.strip() == "false"
    status, text = await put(client, f"/v1/config?cas={modify}", dict(entry, Protocol="grpc"))
    assert text.strip() == "true"
    listed = await get(client, "/v1/config/service-defaults")
    assert [(e["Name"], e["Protocol"]) for e in listed] == [("web", "grpc")]
    status, text = await put(client, "/v1/config", {"Kind": "proxy-defaults", "Name": "web"})
    assert status == 400 and 'only "global" is supported' in text
    status, text = await put(client, "/v1/config", {"Kind": "nonsense", "Name": "x"})
    assert status == 400 and text == "invalid config entry kind: nonsense"
    resp = await client.get("/v1/config/nonsense")
    assert resp.status == 400
    assert (await client.delete("/v1/config/service-defaults/web")).status == 200
    resp = await client.get("/v1/config/service-defaults/web")
    assert resp.status == 404
    assert await resp.text() == 'Config entry not found for "service-defaults" / "web"'
    assert await get(client, "/v1/config/service-defaults") == []


async def test_config_entries_survive_a_snapshot(agent: AgentDouble, client: Client) -> None:
    await put(client, "/v1/config", {"Kind": "service-defaults", "Name": "db", "Protocol": "tcp"})
    snap = agent.state.snapshot_tables()
    from agent.state.store import StateStore

    fresh = StateStore()
    fresh.restore_tables(snap)
    assert fresh.config_entry("service-defaults", "db")[1]["Protocol"] == "tcp"  # type: ignore[index]


async def test_txn_with_node_service_and_check_operations(client: Client) -> None:
    ops = [
        {
            "Node": {
                "Verb": "set",
                "Node": {"Node": "tx1", "Address": "10.9.0.1", "Meta": {"a": "b"}},
            }
        },
        {
            "Service": {
                "Verb": "set",
                "Node": "tx1",
                "Service": {"ID": "s1", "Service": "db", "Port": 5},
            }
        },
        {
            "Check": {
                "Verb": "set",
                "Check": {
                    "Node": "tx1",
                    "CheckID": "c1",
                    "Name": "c",
                    "Status": "passing",
                    "ServiceID": "s1",
                },
            }
        },
        {"kv": {"verb": "set", "key": "tx/k", "value": "dg=="}},
    ]
    resp = await client.put("/v1/txn", data=json.dumps(ops))
    assert resp.status == 200, await resp.text()
    results = (await resp.json())["Results"]
    assert results[0]["Node"]["Node"] == "tx1" and results[0]["Node"]["Meta"] == {"a": "b"}
    assert results[1]["Service"]["Port"] == 5 and results[2]["Check"]["Status"] == "passing"
    (entry,) = await get(client, "/v1/health/service/db?passing")
    assert entry["Node"]["Node"] == "tx1"
    node_index = results[0]["Node"]["ModifyIndex"]
    stale = [
        {
            "Node": {
                "Verb": "cas",
                "Node": {"Node": "tx1", "Address": "10.9.0.2", "ModifyIndex": node_index + 50},
            }
        },
        {"KV": {"Verb": "set", "Key": "tx/never", "Value": "dg=="}},
    ]
    resp = await client.put("/v1/txn", data=json.dumps(stale))
    assert resp.status == 409
    errors = (await resp.json())["Errors"]
    assert errors == [{"OpIndex": 0, "What": 'failed to set node "tx1", index is stale'}]
    assert (await client.get("/v1/kv/tx/never")).status == 404  # all or nothing
    gets = [{"Service": {"Verb": "get", "Node": "tx1", "Service": {"ID": "nope"}}}]
    resp = await client.put("/v1/txn", data=json.dumps(gets))
    assert resp.status == 409
    assert (await resp.json())["Errors"][0]["What"] == 'service "nope" on node "tx1" doesn\'t exist'
    dels = [{"Node": {"Verb": "delete", "Node": {"Node": "tx1"}}}]
    assert (await client.put("/v1/txn", data=json.dumps(dels))).status == 200
    assert await get(client, "/v1/health/service/db") == []
    resp = await client.put("/v1/txn", data=json.dumps([{"Node": {"Verb": "zap", "Node": {}}}]))
    assert resp.status == 400 and "unknown Node verb" in await resp.text()


async def test_near_sorts_by_round_trip_time_and_peer_is_empty(
    client: Client, agent: AgentDouble
) -> None:
    for name in ("far", "mid", "close"):
        await _register(client, name, f"10.0.1.{len(name)}", {}, service="api", port=1)
    agent.endpoints.coordinates.period = 0.05  # the leader's batcher writes them soon
    for name, x in (("server1", 0.0), ("far", 0.9), ("mid", 0.05), ("close", 0.001)):
        coord = {"Vec": [x] + [0.0] * 7, "Error": 0.1, "Adjustment": 0.0, "Height": 1e-5}
        status, text = await put(client, "/v1/coordinate/update", {"Node": name, "Coord": coord})
        assert status == 200, text

    async def coords_written() -> bool:
        return len(await get(client, "/v1/coordinate/nodes")) == 4

    for _ in range(200):
        if await coords_written():
            break
        await asyncio.sleep(0.05)
    assert await coords_written()
    nodes = await get(client, "/v1/catalog/service/api?near=_agent")
    assert [n["Node"] for n in nodes] == ["close", "mid", "far"]
    assert all(n["Datacenter"] == "mydc" for n in nodes)
    nodes = await get(client, "/v1/catalog/nodes?near=far")
    assert [n["Node"] for n in nodes][:2] == ["far", "mid"]
    assert await get(client, "/v1/catalog/service/api?peer=elsewhere") == []


async def test_acl_endpoints_say_acl_support_is_disabled(client: Client) -> None:
    for method, path in (
        ("PUT", "/v1/acl/bootstrap"),
        ("GET", "/v1/acl/tokens"),
        ("GET", "/v1/acl/token/self"),
        ("PUT", "/v1/acl/policy"),
    ):
        resp = await client.request(method, path)
        assert (resp.status, await resp.text()) == (401, "ACL support disabled")


async def test_every_request_is_logged_at_debug(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="http"):
        assert (await client.get("/v1/status/leader?stale")).status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "http"]
    assert any(
        re.fullmatch(
            r"Request GET /v1/status/leader\?stale \(\d+\.\d{3}ms\) from=127\.0\.0\.1:\d+", m
        )
        for m in lines
    ), lines
