"""py-consul 1.8.0 as its users call it, against a running agent: the groups shared with
python-consul (scenario_common.py) plus the newer API this fork added (filter_expr=, service
meta/weights, config entries, multi-tag health queries, the asyncio client, autopilot, prepared queries).

    PYTHONPATH=.venv/clients/py-consul python scenario_py_consul.py HOST:PORT NODE GROUP...
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import consul  # type: ignore[import-not-found]
import consul.aio  # type: ignore[import-not-found]
from scenario_common import COMMON, Ctx, Group, eq, eventually, main

LIB = "py-consul"


def _register_pair(ctx: Ctx) -> None:
    c = ctx.client()
    Check = consul.Check
    c.agent.service.register(
        "web",
        service_id="web1",
        port=8081,
        tags=["v1", "primary"],
        meta={"version": "1"},
        check=Check.ttl("30s"),
    )
    c.agent.service.register(
        "web",
        service_id="web2",
        port=8082,
        tags=["v2"],
        meta={"version": "2"},
        check=Check.ttl("30s"),
    )
    c.agent.check.ttl_pass("service:web1")
    eventually(
        lambda: len(c.catalog.service("web")[1]) == 2, 10, "both web instances in the catalog"
    )


def filter_expr(ctx: Ctx) -> None:
    c = ctx.client()
    _register_pair(ctx)
    svcs = c.agent.services(filter_expr='Service == "web" and "v1" in Tags')
    eq(sorted(svcs), ["web1"], "agent/services?filter")
    svcs = c.agent.services(filter_expr='Meta.version == "2"')
    eq(sorted(svcs), ["web2"], "agent/services?filter on Meta")
    checks = c.agent.checks(filter_expr='ServiceID == "web2"')
    eq(sorted(checks), ["service:web2"], "agent/checks?filter")
    checks = c.agent.checks(filter_expr='Status == "passing"')
    eq(sorted(checks), ["service:web1"], "agent/checks?filter on Status")
    _, nodes = c.catalog.nodes(filter_expr=f'Node == "{ctx.node}"')
    eq([n["Node"] for n in nodes], [ctx.node], "catalog/nodes?filter")
    _, nodes = c.catalog.nodes(filter_expr='Node == "nope"')
    eq(nodes, [], "catalog/nodes?filter with no match")
    _, web = c.catalog.service("web", filter_expr='ServiceMeta.version == "1"')
    eq([s["ServiceID"] for s in web], ["web1"], "catalog/service?filter on ServiceMeta")
    # go-bexpr has no ordering operators (`>` is a 400 in Consul too): equality on the port
    _, web = c.catalog.service("web", filter_expr="ServicePort == 8082")
    eq([s["ServiceID"] for s in web], ["web2"], "catalog/service?filter on ServicePort")
    _, entries = c.health.service("web", filter_expr='Service.ID == "web2"')
    eq([e["Service"]["ID"] for e in entries], ["web2"], "health/service?filter")
    _, entries = c.health.service("web", filter_expr='Checks.Status == "critical"')
    eq([e["Service"]["ID"] for e in entries], ["web2"], "health/service?filter on Checks")
    _, checks = c.health.checks("web", filter_expr='ServiceID == "web1"')
    eq([x["CheckID"] for x in checks], ["service:web1"], "health/checks?filter")
    try:
        c.agent.services(filter_expr="Service ==")
    except consul.ConsulException as e:
        assert "400" in str(e), f"a malformed filter is a 400: {e}"
    else:
        raise AssertionError("a malformed filter expression must be refused")


def service_meta_weights(ctx: Ctx) -> None:
    c = ctx.client()
    ok = c.agent.service.register(
        "api",
        service_id="api1",
        port=9001,
        tags=["t"],
        meta={"version": "1.2", "team": "core"},
        weights={"Passing": 10, "Warning": 1},
    )
    eq(ok, True, "register with meta and weights")
    c.agent.service.register("api", service_id="api2", port=9002)
    svcs = c.agent.services()
    eq(svcs["api1"]["Meta"], {"version": "1.2", "team": "core"}, "agent/services Meta")
    eq(svcs["api1"]["Weights"], {"Passing": 10, "Warning": 1}, "agent/services Weights")
    eq(svcs["api2"]["Weights"], {"Passing": 1, "Warning": 1}, "default Weights")
    eq(svcs["api2"]["Meta"], {}, "Meta of a service registered without it")
    definition = c.agent.service_definition("api1")
    eq((definition["ID"], definition["Service"]), ("api1", "api"), "agent/service/:id")
    eq(definition["Meta"], {"version": "1.2", "team": "core"}, "agent/service/:id Meta")
    assert definition.get("ContentHash"), f"agent/service/:id has a ContentHash: {definition}"
    entries = eventually(
        lambda: (r := c.catalog.service("api")[1]) and len(r) == 2 and r,
        10,
        "api in the catalog",
    )
    by_id = {e["ServiceID"]: e for e in entries}
    eq(by_id["api1"]["ServiceMeta"], {"version": "1.2", "team": "core"}, "catalog ServiceMeta")
    eq(by_id["api1"]["ServiceWeights"], {"Passing": 10, "Warning": 1}, "catalog ServiceWeights")
    # Re-registering with replace_existing_checks drops checks missing from the request.
    c.agent.service.register("api", service_id="api2", port=9002, check=consul.Check.ttl("30s"))
    assert "service:api2" in c.agent.checks(), "api2's check registered"
    c.agent.service.register("api", service_id="api2", port=9002, replace_existing_checks=True)
    assert "service:api2" not in c.agent.checks(), "replace-existing-checks removed the check"


def multi_tag(ctx: Ctx) -> None:
    c = ctx.client()
    _register_pair(ctx)
    _, both = c.health.service("web", tag=["v1", "primary"])
    eq([e["Service"]["ID"] for e in both], ["web1"], "health/service?tag=v1&tag=primary")
    _, none = c.health.service("web", tag=["v1", "v2"])
    eq(none, [], "multiple tags are ANDed")
    _, passing = c.health.service("web", passing=True)
    eq([e["Service"]["ID"] for e in passing], ["web1"], "passing")


def config_entries(ctx: Ctx) -> None:
    c = ctx.client()
    ok = c.config.set("service-defaults", "web", {"Protocol": "http"})
    eq(ok, True, "config set")
    entry = c.config.get("service-defaults", "web")
    eq(
        (entry["Kind"], entry["Name"], entry["Protocol"]),
        ("service-defaults", "web", "http"),
        "get",
    )
    assert entry["ModifyIndex"] > 0, f"config entry ModifyIndex: {entry}"
    c.config.set("service-defaults", "api", {"Protocol": "grpc"})
    listed = c.config.list("service-defaults")
    eq(sorted(e["Name"] for e in listed), ["api", "web"], "config list")
    eq(
        c.config.set("service-defaults", "web", {"Protocol": "tcp"}, cas=entry["ModifyIndex"] - 1),
        False,
        "config set with a stale cas",
    )
    eq(
        c.config.set("service-defaults", "web", {"Protocol": "tcp"}, cas=entry["ModifyIndex"]),
        True,
        "config set with cas",
    )
    eq(c.config.get("service-defaults", "web")["Protocol"], "tcp", "after cas")
    eq(c.config.delete("service-defaults", "web"), True, "config delete")
    eq(c.config.get("service-defaults", "web"), None, "deleted entry reads as 404")
    proxy = c.config.set("proxy-defaults", "global", {"Config": {"protocol": "http"}})
    eq(proxy, True, "proxy-defaults global")


def aio_client(ctx: Ctx) -> None:
    async def run() -> None:
        c = consul.aio.Consul(host=ctx.host, port=ctx.port)
        try:
            eq(await c.kv.put("aio/k", "v"), True, "aio put")
            index, d = await c.kv.get("aio/k")
            eq(d["Value"], b"v", "aio get")

            async def later() -> None:
                await asyncio.sleep(0.3)
                await c.kv.put("aio/k", "w")

            task = asyncio.ensure_future(later())
            index2, d2 = await c.kv.get("aio/k", index=index, wait="10s")
            await task
            eq(d2["Value"], b"w", "aio blocking get")
            assert int(index2) > int(index), "aio index grows"
            sid = await c.session.create(ttl=10, behavior="delete", checks=[])
            eq(await c.kv.put("aio/lock", "me", acquire=sid), True, "aio acquire")
            eq(await c.session.destroy(sid), True, "aio session destroy")
            eq((await c.kv.get("aio/lock"))[1], None, "behavior=delete through aio")
            eq(await c.status.leader(), ctx.server_addr, "aio status/leader")
        finally:
            await c.close()

    asyncio.run(run())


def event_blocking(ctx: Ctx) -> None:
    c = ctx.client()
    c.event.fire("first", "1")
    index, _evs = eventually(
        lambda: (r := c.event.list(name="first")) and r[1] and r, 10, "the first event"
    )

    def fire() -> None:
        time.sleep(0.5)
        ctx.client().event.fire("first", "2")

    t = threading.Thread(target=fire)
    t.start()
    t0 = time.monotonic()
    index2, evs2 = c.event.list(name="first", index=index, wait="10s")
    t.join(10)
    assert time.monotonic() - t0 < 8, "event/list blocking query woke on the new event"
    assert index2 != index, "event/list index changes with a new event"
    eq([e["Payload"] for e in evs2], [b"1", b"2"], "both events, oldest first")


def autopilot(ctx: Ctx) -> None:
    c = ctx.client()
    conf = c.operator.autopilot_configuration()
    eq(conf["CleanupDeadServers"], True, "CleanupDeadServers default")
    eq(conf["LastContactThreshold"], "200ms", "LastContactThreshold default")
    eq(conf["MaxTrailingLogs"], 250, "MaxTrailingLogs default")
    eq(conf["ServerStabilizationTime"], "10s", "ServerStabilizationTime default")
    health = c.operator.autopilot_health()
    eq(health["Healthy"], True, "autopilot health")
    eq([s["Name"] for s in health["Servers"]], [ctx.node], "autopilot servers")
    eq(health["Servers"][0]["Leader"], True, "the server is the leader")


def prepared_query(ctx: Ctx) -> None:
    c = ctx.client()
    _register_pair(ctx)  # web1 passing, web2 critical (its TTL check never passed)
    # py-consul makes every query a name_prefix_match template (it always sends Template.Type)
    created = c.query.create("web", name="web-q", tags=["v1"], ttl="10s", onlypassing=True)
    qid = created["ID"]
    eq(len(qid), 36, "query.create returns the new ID")
    (got,) = c.query.get(qid)
    eq(got["Name"], "web-q", "query.get Name")
    eq(got["Service"]["Service"], "web", "query.get Service.Service")
    eq(got["Service"]["Tags"], ["v1"], "query.get Service.Tags")
    eq(got["DNS"]["TTL"], "10s", "query.get DNS.TTL")
    eq(got["Template"]["Type"], "name_prefix_match", "py-consul's queries are templates")
    eq([q["ID"] for q in c.query.list()], [qid], "query.list")
    result = c.query.execute("web-q")
    eq([n["Service"]["ID"] for n in result["Nodes"]], ["web1"], "query.execute")
    eq(result["Datacenter"], "dc1", "query.execute Datacenter")
    eq(result["DNS"]["TTL"], "10s", "query.execute DNS")
    eq(len(c.query.execute("web-q", near="_agent", limit=1)["Nodes"]), 1, "execute near/limit")
    eq(c.query.explain("web-q")["Query"]["ID"], qid, "query.explain")
    # a template answers every name it prefixes
    eq(c.query.execute("web-q-anything")["Service"], "web", "the template answers a longer name")
    eq(c.query.update(qid, "web", name="web-q", tags=["v2"], onlypassing=False), True, "update")
    eq(c.query.get(qid)[0]["Service"]["Tags"], ["v2"], "the update replaced the tags")
    eq(c.query.execute("web-q")["Nodes"], [], "web2 is critical: nothing to answer")
    eq(c.query.delete(qid), True, "query.delete")
    eq(c.query.list(), [], "no query left")
    eq(c.query.get(qid), None, "query.get of a deleted query (a 404) is None")


GROUPS: dict[str, Group] = {
    **COMMON,
    "filter_expr": filter_expr,
    "service_meta_weights": service_meta_weights,
    "multi_tag": multi_tag,
    "config_entries": config_entries,
    "aio_client": aio_client,
    "event_blocking": event_blocking,
    "autopilot": autopilot,
    "prepared_query": prepared_query,
}

if __name__ == "__main__":
    assert Path(consul.__file__).parent.parent.name == LIB, f"wrong consul: {consul.__file__}"
    sys.exit(main(consul, LIB, GROUPS, sys.argv))
