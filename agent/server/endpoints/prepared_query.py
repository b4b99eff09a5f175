"""PreparedQuery.*: stored service queries, executed with failover to other datacenters
(Consul's prepared_query_endpoint.go).

PreparedQuery.Apply   PreparedQueryRequest {Datacenter, Op: "create"|"update"|"delete",
                      Query: PreparedQuery} -> str (the query's ID; generated on create)
PreparedQuery.Get     PreparedQuerySpecificRequest {Datacenter, QueryID, +QO}
                      -> IndexedPreparedQueries {Queries: [PreparedQuery], +QueryMeta}
PreparedQuery.List    DCSpecificRequest {+QO} -> IndexedPreparedQueries
PreparedQuery.Explain PreparedQueryExecuteRequest {Datacenter, QueryIDOrName, Agent, Source,
                      +QO} -> {Query: PreparedQuery (a template rendered), +QueryMeta}
PreparedQuery.Execute PreparedQueryExecuteRequest {Datacenter, QueryIDOrName, Limit, Connect,
                      Source: {Datacenter, Node, Ip}, Agent: {Datacenter, Node, Segment}, +QO}
                      -> {Service, Nodes: [CheckServiceNode], DNS: {TTL}, Datacenter,
                      Failovers, +QueryMeta}
PreparedQuery.ExecuteRemote {Datacenter, Query: PreparedQuery, Limit, Connect, +QO}
                      -> as Execute, run here without failover (one level, as Consul)

PreparedQuery  {ID, Name, Session, Token, Template: {Type, Regexp, RemoveEmptyTags},
                Service: {Service, SamenessGroup, Failover: {NearestN, Datacenters, Targets},
                OnlyPassing, IgnoreCheckIDs, Near, Tags, NodeMeta, ServiceMeta, Connect,
                Peer}, DNS: {TTL}, CreateIndex, ModifyIndex}

ACLs: a query with a Name (or any template) is governed by `query` rules on its name; one
without is reachable by whoever knows its ID. The Token stored with a query is the token
its executions read the catalog with (the caller's when empty); only a management token
sees it, others see "<hidden>".
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from agent.acl.resolver import Access
from agent.durations import DurationError, parse_duration
from agent.errors import RPCError
from agent.gossip.coordinate import Coordinate, CoordinateError, sort_by_distance
from agent.metadata import meta_problem
from agent.server.endpoints import acl_filter
from agent.server.endpoints.base import (
    _ACCESS,
    Context,
    Kind,
    Methods,
    access,
    as_bool,
    get_str,
)
from agent.state.catalog import healthy_instances
from agent.state.commands import MessageType
from agent.state.query_template import is_template
from agent.state.tables import StateError

ERR_QUERY_NOT_FOUND = "Query not found"
REDACTED_TOKEN = "<hidden>"
OPS = ("create", "update", "delete")
#: Consul's QueryOptions fields, carried from an Execute to the ExecuteRemote it fails over to
_QUERY_OPTIONS = ("Token", "AllowStale", "RequireConsistent", "MaxQueryTime", "MinQueryIndex")


def _bad(what: str) -> RPCError:
    return RPCError(f"Invalid prepared query: {what}")


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{where}{key} must be a string")
    return value


def _flag(obj: dict[str, Any], key: str, where: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{where}{key} must be a boolean")
    return value


def _texts(obj: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{where}{key} must be a list of strings")
    return list(value)


def _meta(obj: dict[str, Any], key: str, where: str) -> dict[str, str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(f"{where}{key} must be a map of strings")
    return {str(k): v for k, v in value.items()}


def _section(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{key} must be an object")
    return value


def query_record(raw: Any) -> dict[str, Any]:
    """A PreparedQuery in Consul's shape (every field present, Go's zero values), from a
    request's; RPCError for a field of the wrong type."""
    if not isinstance(raw, dict):
        raise _bad("Query must be an object")
    template = _section(raw, "Template")
    service = _section(raw, "Service")
    failover = _section(service, "Failover")
    dns = _section(raw, "DNS")
    nearest = failover.get("NearestN") or 0
    if isinstance(nearest, bool) or not isinstance(nearest, int):
        raise _bad("Service.Failover.NearestN must be an integer")
    targets = failover.get("Targets")
    if targets is not None and (
        not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets)
    ):
        raise _bad("Service.Failover.Targets must be a list of objects")
    return {
        "ID": _text(raw, "ID", ""),
        "Name": _text(raw, "Name", ""),
        "Session": _text(raw, "Session", ""),
        "Token": _text(raw, "Token", ""),
        "Template": {
            "Type": _text(template, "Type", "Template."),
            "Regexp": _text(template, "Regexp", "Template."),
            "RemoveEmptyTags": _flag(template, "RemoveEmptyTags", "Template."),
        },
        "Service": {
            "Service": _text(service, "Service", "Service."),
            "SamenessGroup": _text(service, "SamenessGroup", "Service."),
            "Failover": {
                "NearestN": nearest,
                "Datacenters": _texts(failover, "Datacenters", "Service.Failover."),
                "Targets": [
                    {
                        "Peer": _text(t, "Peer", "Service.Failover.Targets."),
                        "Datacenter": _text(t, "Datacenter", "Service.Failover.Targets."),
                    }
                    for t in targets
                ]
                if targets is not None
                else None,
            },
            "OnlyPassing": _flag(service, "OnlyPassing", "Service."),
            "IgnoreCheckIDs": _texts(service, "IgnoreCheckIDs", "Service."),
            "Near": _text(service, "Near", "Service."),
            "Tags": _texts(service, "Tags", "Service."),
            "NodeMeta": _meta(service, "NodeMeta", "Service."),
            "ServiceMeta": _meta(service, "ServiceMeta", "Service."),
            "Connect": _flag(service, "Connect", "Service."),
            "Peer": _text(service, "Peer", "Service."),
        },
        "DNS": {"TTL": _text(dns, "TTL", "DNS.")},
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


def _check_query(query: dict[str, Any]) -> None:
    """Consul's parseQuery: what a stored query must satisfy."""
    if not query["Name"] and not query["Template"]["Type"] and not query["Session"]:
        raise _bad("Must be bound to a session")
    if query["Token"] == REDACTED_TOKEN:
        raise _bad(
            f"Bad Token '{REDACTED_TOKEN}', it looks like a query definition with a redacted "
            "token was submitted"
        )
    svc = query["Service"]
    if not svc["Service"]:
        raise _bad("Must provide a Service name to query")
    nearest = svc["Failover"]["NearestN"]
    if nearest < 0:
        raise _bad(f"Bad NearestN '{nearest}', must be >= 0")
    if svc["Failover"]["Targets"] and (nearest or svc["Failover"]["Datacenters"]):
        raise _bad("Targets cannot be populated with NearestN or Datacenters")
    if svc["SamenessGroup"]:
        raise _bad("sameness groups are not supported by this agent")
    if svc["Peer"] or any(t["Peer"] for t in svc["Failover"]["Targets"] or ()):
        raise _bad("cluster peering is not supported by this agent")
    problem = meta_problem(svc["NodeMeta"] or {}, allow_reserved=True)
    if problem:
        raise _bad(problem)
    ttl = query["DNS"]["TTL"]
    if ttl:
        try:
            ns = parse_duration(ttl)
        except DurationError as exc:
            raise _bad(f"Bad DNS TTL '{ttl}': {exc}") from None
        if ns < 0:
            raise _bad(f"DNS TTL '{ns}', must be >=0")


def acl_prefix(query: dict[str, Any]) -> str | None:
    """The name `query` rules are matched against; None when none governs the query."""
    if query.get("Name") or is_template(query):
        return str(query.get("Name") or "")
    return None


def _management(acc: Access) -> bool:
    return acc.can("acl", "write")


def _redacted(acc: Access, query: dict[str, Any]) -> dict[str, Any]:
    if query.get("Token") and not _management(acc):
        return dict(query, Token=REDACTED_TOKEN)
    return query


def visible_queries(queries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Consul's filterPreparedQueries: a management token sees every query; others the named
    ones their `query` read allows (queries without a name are dropped), tokens redacted."""
    acc = access()
    if _management(acc):
        return queries, False
    kept = []
    for query in queries:
        prefix = acl_prefix(query)
        if prefix is None or not acc.can("query", "read", prefix):
            continue
        kept.append(_redacted(acc, query))
    return kept, len(kept) != len(queries)


async def apply(ctx: Context, args: dict[str, Any]) -> str:
    op = get_str(args, "Op")
    raw = args.get("Query")
    if op == "delete":
        qid = get_str(raw, "ID") if isinstance(raw, dict) else ""
        query = {"ID": qid}
    else:
        query = query_record(raw)
    acc = access()
    if op == "create":
        if query["ID"]:
            raise RPCError("ID must be empty when creating a new prepared query")
        while True:
            query["ID"] = str(uuid.uuid4())
            if ctx.state.prepared_query_get(query["ID"])[1] is None:
                break
    if op != "delete":
        prefix = acl_prefix(query)
        if prefix is not None:
            acc.need("query", "write", prefix)
    if op != "create":
        existing = ctx.state.prepared_query_get(query["ID"])[1]
        if existing is None:
            raise RPCError(f"Cannot modify non-existent prepared query: '{query['ID']}'")
        prefix = acl_prefix(existing)
        if prefix is not None:
            acc.need("query", "write", prefix)
    if op in ("create", "update"):
        _check_query(query)
    elif op != "delete":
        raise RPCError(f"Unknown prepared query operation: {op}")
    await ctx.raft_apply(MessageType.PREPARED_QUERY, {"Op": op, "Query": query})
    return str(query["ID"])


async def get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    qid = get_str(args, "QueryID")
    acc = access()

    def run() -> dict[str, Any]:
        idx, query = ctx.state.prepared_query_get(qid)
        if query is None:
            raise RPCError(ERR_QUERY_NOT_FOUND)
        if acl_prefix(query) is None:  # whoever has the ID may see it
            return {"Index": idx, "Queries": [_redacted(acc, query)]}
        kept, _dropped = visible_queries([query])
        if not kept:
            acc.need("query", "read", str(query.get("Name") or ""))
        return {"Index": idx, "Queries": kept}

    return await ctx.blocking(args, ["prepared-queries"], run)


async def list_queries(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await ctx.query(
        args,
        ["prepared-queries"],
        "Queries",
        lambda: ctx.state.prepared_query_list(),
        acl=visible_queries,
    )


def _source(args: dict[str, Any], field: str) -> dict[str, Any]:
    """A QuerySource of the request (Source or Agent): {Datacenter, Node, Segment, Ip}."""
    value = args.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RPCError(f"{field} must be a map")
    return value


def _resolve(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    segment = get_str(_source(args, "Agent"), "Segment")
    try:
        _idx, query = ctx.state.prepared_query_resolve(get_str(args, "QueryIDOrName"), segment)
    except StateError as exc:  # an empty name, a template asked by ID, a failed render
        raise RPCError(str(exc)) from None
    if query is None:
        raise RPCError(ERR_QUERY_NOT_FOUND)
    return query


async def _read_meta(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The QueryMeta of a read that is not a blocking query (Execute, Explain)."""
    meta = ctx.query_meta()
    if as_bool(args.get("RequireConsistent")):
        await ctx.verify_leader()
    return meta


async def explain(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    meta = await _read_meta(ctx, args)
    query = _resolve(ctx, args)
    kept, _dropped = visible_queries([query])
    if not kept:
        access().need("query", "read", str(query.get("Name") or ""))
    return {"Query": kept[0], "Index": 0, **meta}


# ---------------------------------------------------------------------------- execution


def _tagged(nodes: list[dict[str, Any]], tags: list[str]) -> list[dict[str, Any]]:
    """Instances carrying every tag and none of the `!tag`s (case-insensitive)."""
    must = {t.lower() for t in tags if not t.startswith("!")}
    must_not = {t[1:].lower() for t in tags if t.startswith("!")}
    out = []
    for csn in nodes:
        have = {str(t).lower() for t in (csn.get("Service") or {}).get("Tags") or ()}
        if must <= have and not (must_not & have):
            out.append(csn)
    return out


def _meta_match(meta: dict[str, Any] | None, wanted: dict[str, str]) -> bool:
    have = meta or {}
    return all(have.get(k) == v for k, v in wanted.items())


def run_local(ctx: Context, query: dict[str, Any], connect: bool) -> dict[str, Any]:
    """Consul's execute: the query's healthy, filtered instances in this datacenter."""
    svc = query["Service"]
    if svc.get("Connect") or connect:
        # Connect-capable instances are proxies and native services: this agent has no
        # Connect, so its catalog keeps neither, and none qualifies.
        nodes: list[dict[str, Any]] = []
    else:
        _idx, nodes = ctx.state.check_service_nodes(str(svc["Service"]))
    nodes = healthy_instances(
        nodes, bool(svc.get("OnlyPassing")), set(svc.get("IgnoreCheckIDs") or ())
    )
    if svc.get("NodeMeta"):
        nodes = [n for n in nodes if _meta_match(n["Node"].get("Meta"), svc["NodeMeta"])]
    if svc.get("ServiceMeta"):
        nodes = [n for n in nodes if _meta_match(n["Service"].get("Meta"), svc["ServiceMeta"])]
    if svc.get("Tags"):
        nodes = _tagged(nodes, list(svc["Tags"]))
    return {
        "Service": svc["Service"],
        "Nodes": nodes,
        "DNS": dict(query.get("DNS") or {"TTL": ""}),
        "Datacenter": ctx.datacenter,
        "PeerName": "",
        "Failovers": 0,
    }


async def _filtered(ctx: Context, token: str, nodes: list[dict[str, Any]]) -> list[Any]:
    """The instances the query's token (else the caller's) may read."""
    if not token:
        return acl_filter.check_service_nodes(nodes)[0]
    reset = _ACCESS.set(await ctx.resolve_access(token))
    try:
        return acl_filter.check_service_nodes(nodes)[0]
    finally:
        _ACCESS.reset(reset)


def _source_node(ctx: Context, args: dict[str, Any], query: dict[str, Any]) -> tuple[str, str]:
    """(node, datacenter) to sort by distance from: the request's Source, else the query's
    Near; `_agent` is the asking agent, `_ip` the node whose address asked."""
    source, agent = _source(args, "Source"), _source(args, "Agent")
    node = get_str(source, "Node")
    dc = get_str(source, "Datacenter") or get_str(agent, "Datacenter")
    if not node:
        node = str(query["Service"].get("Near") or "")
    if node == "_agent":
        node = get_str(agent, "Node")
    elif node == "_ip":
        ip = get_str(source, "Ip")
        _idx, all_nodes = ctx.state.nodes(None)
        node = next((str(n["Node"]) for n in all_nodes if ip and n["Address"] == ip), "")
    return node, dc


def _coordinate(ctx: Context, node: str) -> Coordinate | None:
    wire = ctx.state.coordinate(node)
    if wire is None:
        return None
    try:
        return Coordinate.from_wire(wire)
    except CoordinateError:
        return None


def _sort_near(ctx: Context, node: str, dc: str, nodes: list[dict[str, Any]]) -> list[Any]:
    """Consul's sortNodesByDistanceFrom, then the source node itself first (when it is one
    of the first ten, as Consul looks)."""
    if not node or (dc and dc != ctx.datacenter):
        return nodes
    origin = _coordinate(ctx, node)
    if origin is not None:
        nodes = sort_by_distance(origin, nodes, lambda csn: _coordinate(ctx, csn["Node"]["Node"]))
    for i, csn in enumerate(nodes[:10]):
        if csn["Node"]["Node"] == node:
            nodes[0], nodes[i] = nodes[i], nodes[0]
            break
    return nodes


def _limit(args: dict[str, Any]) -> int:
    limit = args.get("Limit") or 0
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise RPCError("Limit must be an integer")
    return limit


def _failover_datacenters(ctx: Context, query: dict[str, Any]) -> list[str]:
    """Consul's queryFailover order: the NearestN other datacenters by WAN distance, then the
    listed ones not tried yet (unknown ones skipped)."""
    ranked = ctx.datacenters_by_distance() if ctx.datacenters_by_distance else []
    nearest = [dc for dc in ranked if dc != ctx.datacenter]
    failover = query["Service"]["Failover"]
    chosen = nearest[: max(int(failover.get("NearestN") or 0), 0)]
    listed = list(failover.get("Datacenters") or ())
    listed += [t["Datacenter"] for t in failover.get("Targets") or () if t.get("Datacenter")]
    for dc in listed:
        if dc in nearest and dc not in chosen:
            chosen.append(dc)
    return chosen


async def execute(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    meta = await _read_meta(ctx, args)
    query = _resolve(ctx, args)
    limit = _limit(args)
    connect = as_bool(args.get("Connect"))
    reply = run_local(ctx, query, connect)
    nodes = await _filtered(ctx, str(query.get("Token") or ""), reply["Nodes"])
    random.shuffle(nodes)
    node, dc = _source_node(ctx, args, query)
    nodes = _sort_near(ctx, node, dc, nodes)
    if limit > 0:
        nodes = nodes[:limit]
    reply["Nodes"] = nodes
    if not nodes and ctx.forward_dc is not None:
        failovers = 0
        for other in _failover_datacenters(ctx, query):
            failovers += 1
            remote = {k: args[k] for k in _QUERY_OPTIONS if k in args}
            remote.update(Datacenter=other, Query=query, Limit=limit, Connect=connect)
            try:
                answer = await ctx.forward_dc(other, "PreparedQuery.ExecuteRemote", remote)
            except RPCError:
                continue
            if isinstance(answer, dict) and answer.get("Nodes"):
                reply.update(
                    Nodes=list(answer["Nodes"]),
                    Datacenter=str(answer.get("Datacenter") or other),
                    DNS=answer.get("DNS") or reply["DNS"],
                )
                break
        reply["Failovers"] = failovers
    return {**reply, "Index": 0, **meta}


async def execute_remote(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    meta = await _read_meta(ctx, args)
    query = query_record(args.get("Query"))
    reply = run_local(ctx, query, as_bool(args.get("Connect")))
    nodes = await _filtered(ctx, query["Token"], reply["Nodes"])
    random.shuffle(nodes)
    limit = _limit(args)
    reply["Nodes"] = nodes[:limit] if limit > 0 else nodes
    return {**reply, "Index": 0, **meta}


METHODS: Methods = {
    "PreparedQuery.Apply": (apply, Kind.WRITE),
    "PreparedQuery.Get": (get, Kind.READ),
    "PreparedQuery.List": (list_queries, Kind.READ),
    "PreparedQuery.Explain": (explain, Kind.READ),
    "PreparedQuery.Execute": (execute, Kind.READ),
    "PreparedQuery.ExecuteRemote": (execute_remote, Kind.READ),
}
