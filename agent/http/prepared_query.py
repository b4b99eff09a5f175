"""/v1/query: prepared queries - POST to create, GET to list; /v1/query/<id> GET, PUT
(replace), DELETE; /v1/query/<id or name>/execute (?near ?limit ?connect) and /explain
(Consul's agent/prepared_query_endpoint.go)."""

from __future__ import annotations

import ipaddress
from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    agent_of,
    datacenter,
    go_uint,
    json_response,
    meta_headers,
    query_options,
    read_json,
    request_token,
    rpc,
)
from agent.http.decode import Spec, fields

#: the most a query definition may weigh (Consul reads the body whole; this is generous)
MAX_QUERY_BODY = 512 * 1024
ERR_QUERY_NOT_FOUND = "Query not found"

#: what the server says of a query it refused (its checks, the state's integrity checks): the
#: request's fault, a 400 (Consul answers these 500)
_REFUSED = (
    "Invalid prepared query",
    "ID must be empty when creating",
    "Cannot modify non-existent prepared query",
    "Unknown prepared query operation",
    "Missing query ID",
    "name '",
    "a query template with an empty name",
    "invalid session",
    "failed compiling template",
    "prepared query templates can only be resolved",
    "Bad evaluation for",
    "Limit must be",
)

#: PreparedQuery as Consul's decodeBody reads it (any case, with or without underscores)
_QUERY: Spec = {
    "ID": None,
    "Name": None,
    "Session": None,
    "Token": None,
    "Template": {"Type": None, "Regexp": None, "RemoveEmptyTags": None},
    "Service": {
        "Service": None,
        "SamenessGroup": None,
        "Failover": {
            "NearestN": None,
            "Datacenters": None,
            "Targets": {"Peer": None, "Datacenter": None},
        },
        "OnlyPassing": None,
        "IgnoreCheckIDs": None,
        "Near": None,
        "Tags": None,
        "NodeMeta": None,
        "ServiceMeta": None,
        "Connect": None,
        "Peer": None,
    },
    "DNS": {"TTL": None},
}


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, MAX_QUERY_BODY)
    return fields({} if body is None else body, _QUERY)


async def _call(request: web.Request, method: str, args: dict[str, Any]) -> Any:
    """The RPC, with Consul's 404 for a query that does not exist and a 400 for one refused."""
    try:
        return await rpc(request, method, args)
    except HTTPError as exc:
        if exc.message == ERR_QUERY_NOT_FOUND:
            raise HTTPError(404, ERR_QUERY_NOT_FOUND) from None
        if exc.status == 500 and exc.message.startswith(_REFUSED):
            raise HTTPError(400, exc.message) from None
        raise


def _write_args(request: web.Request, op: str, query: dict[str, Any]) -> dict[str, Any]:
    return {
        "Datacenter": datacenter(request),
        "Op": op,
        "Query": query,
        "Token": request_token(request),
    }


async def query_create(request: web.Request) -> web.Response:
    query = await _body(request)
    qid = await _call(request, "PreparedQuery.Apply", _write_args(request, "create", query))
    return json_response(request, {"ID": qid})


async def query_update(request: web.Request) -> web.Response:
    query = await _body(request)
    query["ID"] = request.match_info["id"]  # the URL's, not the body's
    await _call(request, "PreparedQuery.Apply", _write_args(request, "update", query))
    return web.Response(status=200)


async def query_delete(request: web.Request) -> web.Response:
    query = {"ID": request.match_info["id"]}
    await _call(request, "PreparedQuery.Apply", _write_args(request, "delete", query))
    return web.Response(status=200)


def _headers(reply: Any) -> dict[str, str]:
    headers = meta_headers(reply)
    if headers.get("X-Consul-Index") == "0":
        headers["X-Consul-Index"] = "1"  # as Consul: an index of 0 would never block
    return headers


async def query_list(request: web.Request) -> web.Response:
    reply = await _call(request, "PreparedQuery.List", query_options(request))
    return json_response(request, reply.get("Queries") or [], _headers(reply))


async def query_get(request: web.Request) -> web.Response:
    args = query_options(request)
    args["QueryID"] = request.match_info["id"]
    reply = await _call(request, "PreparedQuery.Get", args)
    return json_response(request, reply.get("Queries") or [], _headers(reply))


def _source_ip(request: web.Request) -> str:
    """The asking address, as Consul's sourceAddrFromRequest: X-Forwarded-For's first, else
    the peer's."""
    for raw in (request.headers.get("X-Forwarded-For", "").split(",")[0], request.remote or ""):
        try:
            return str(ipaddress.ip_address(raw.strip()))
        except ValueError:
            continue
    return ""


def _execute_args(request: web.Request) -> dict[str, Any]:
    agent = agent_of(request)
    args = query_options(request)
    args["QueryIDOrName"] = request.match_info["id"]
    args["Agent"] = {"Datacenter": agent.datacenter, "Node": agent.node_name, "Segment": ""}
    source = {"Datacenter": args["Datacenter"], "Ip": _source_ip(request), "Node": ""}
    near = request.query.get("near", "")
    if near:
        source["Node"] = agent.node_name if near == "_agent" else near
    args["Source"] = source
    raw = request.query.get("limit", "")
    args["Limit"] = 0
    if raw:
        try:
            args["Limit"] = go_uint(raw)
        except ValueError:
            raise HTTPError(
                400, f'Bad limit: strconv.Atoi: parsing "{raw}": invalid syntax'
            ) from None
    return args


def _consistency(args: dict[str, Any]) -> str:
    if args.get("RequireConsistent"):
        return "consistent"
    return "stale" if args.get("AllowStale") else "leader"


def _query_meta(reply: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """QueryMeta as Consul's JSON embeds it in the execute and explain replies."""
    return {
        "Index": int(reply.get("Index") or 0),
        "LastContact": int(float(reply.get("LastContact") or 0) * 1e9),
        "KnownLeader": bool(reply.get("KnownLeader")),
        "ConsistencyLevel": _consistency(args),
        "NotModified": False,
        "Backend": 0,
        "ResultsFilteredByACLs": bool(reply.get("ResultsFilteredByACLs")),
    }


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


async def query_execute(request: web.Request) -> web.Response:
    args = _execute_args(request)
    raw = request.query.get("connect", "")
    if raw:
        if raw not in _GO_TRUE + _GO_FALSE:
            raise HTTPError(
                400,
                f"Error parsing 'connect' value: strconv.ParseBool: parsing \"{raw}\": "
                "invalid syntax",
            )
        args["Connect"] = raw in _GO_TRUE
    reply = await _call(request, "PreparedQuery.Execute", args)
    out = {
        "Service": reply.get("Service", ""),
        "Nodes": reply.get("Nodes") or [],
        "DNS": reply.get("DNS") or {"TTL": ""},
        "Datacenter": reply.get("Datacenter", ""),
        "PeerName": reply.get("PeerName", ""),
        "Failovers": int(reply.get("Failovers") or 0),
        **_query_meta(reply, args),
    }
    return json_response(request, out, _headers(reply))


async def query_explain(request: web.Request) -> web.Response:
    args = _execute_args(request)
    reply = await _call(request, "PreparedQuery.Explain", args)
    out = {"Query": reply.get("Query"), **_query_meta(reply, args)}
    return json_response(request, out, _headers(reply))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/query", query_create),
        web.get("/v1/query", query_list, allow_head=False),
        web.get("/v1/query/{id}/execute", query_execute, allow_head=False),
        web.get("/v1/query/{id}/explain", query_explain, allow_head=False),
        web.get("/v1/query/{id}", query_get, allow_head=False),
        web.put("/v1/query/{id}", query_update),
        web.delete("/v1/query/{id}", query_delete),
    ]
