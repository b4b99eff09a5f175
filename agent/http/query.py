"""The shape most read endpoints share: QueryOptions + path args -> one RPC -> a field of
the reply, with the X-Consul-* headers of its QueryMeta."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.filter import Filter, FilterError, filter_dict, filter_list, parse_filter
from agent.gossip.coordinate import parse_coordinates, sort_by_distance
from agent.http.common import (
    HTTPError,
    agent_of,
    json_response,
    meta_headers,
    query_options,
    rpc,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def query(
    method: str,
    field: str | None,
    path_args: dict[str, str] | None = None,
    extra: Callable[[web.Request, dict[str, Any]], None] | None = None,
    empty: Any = None,
    shape: Callable[[web.Request, Any], Any] | None = None,
    server_filter: bool = False,
) -> Handler:
    """A GET handler: QueryOptions + path args -> RPC -> reply[field] with X-Consul-* headers,
    `?filter=` applied to the result's entries."""

    async def handler(request: web.Request) -> web.StreamResponse:
        flt = request_filter(request)
        args = query_options(request)
        if server_filter and flt is not None:
            args["Filter"], flt = flt.expression, None  # the server filters (Catalog.ListServices)
        for var, name in (path_args or {}).items():
            value = request.match_info.get(var, "")
            if not value:
                raise HTTPError(400, f"Missing {var} name")
            args[name] = value
        if extra is not None:
            extra(request, args)
        peer = request.query.get("peer", "")
        reply = await rpc(request, method, args)
        out = reply.get(field) if field is not None and isinstance(reply, dict) else reply
        if out is None:
            out = empty
        if peer and isinstance(out, list):
            out = []  # nothing is imported from a cluster peer here: none exists
        if shape is not None:
            out = shape(request, out)
        out = apply_filter(flt, out)
        if request.query.get("near") and isinstance(out, list):
            out = await sort_near(request, args, out)
        return json_response(request, out, meta_headers(reply) | cache_headers(request))

    return handler


def _node_name(item: Any) -> str:
    node = item.get("Node") if isinstance(item, dict) else None
    if isinstance(node, dict):
        return str(node.get("Node") or "")
    return str(node or "")


async def sort_near(request: web.Request, args: dict[str, Any], items: list[Any]) -> list[Any]:
    """`?near=<node>` (or `_agent`, this agent): entries sorted by estimated round-trip time
    from that node's network coordinate; nodes without a coordinate go last, in their
    order (Consul's sortByDistanceFrom)."""
    near = request.query["near"]
    if near == "_agent":
        near = agent_of(request).node_name
    reply = await rpc(request, "Coordinate.ListNodes", {"Datacenter": args.get("Datacenter")})
    coords = parse_coordinates((reply or {}).get("Coordinates"))
    origin = coords.get(near)
    if origin is None:
        return items
    return sort_by_distance(origin, items, lambda item: coords.get(_node_name(item)))


def request_filter(request: web.Request) -> Filter | None:
    """`?filter=` parsed up front, so a bad expression is a 400 before any work is done."""
    text = request.query.get("filter")
    if not text:
        return None
    try:
        return parse_filter(text)
    except FilterError as exc:
        raise HTTPError(400, str(exc)) from None


def apply_filter(flt: Filter | None, out: Any) -> Any:
    """The entries of a list, or the values of a map of objects, that match `flt`; a node's
    services (`{Node, Services}`) filter their Services."""
    if flt is None or out is None:
        return out
    try:
        if isinstance(out, list):
            return filter_list(flt, out)
        if isinstance(out, dict) and "Node" in out and "Services" in out:
            services = out["Services"] or {}
            if isinstance(services, list):
                return dict(out, Services=filter_list(flt, services))
            return dict(out, Services=filter_dict(flt, services))
        if isinstance(out, dict) and all(isinstance(v, dict) for v in out.values()):
            return filter_dict(flt, out)
    except FilterError as exc:
        raise HTTPError(400, str(exc)) from None
    raise HTTPError(400, "filter is not supported on this endpoint")


def cache_headers(request: web.Request) -> dict[str, str]:
    """`?cached`: this agent keeps no result cache, so every answer is fetched fresh and
    says so the way Consul's agent cache does for a miss."""
    return {"X-Cache": "MISS", "Age": "0"} if "cached" in request.query else {}
