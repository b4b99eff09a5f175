"""/v1/coordinate/*: network coordinates of the LAN nodes and the WAN servers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    datacenter,
    json_response,
    meta_headers,
    query_options,
    read_json,
    rpc,
)
from agent.http.decode import fields
from agent.http.query import query


async def coordinate_datacenters(request: web.Request) -> web.Response:
    reply = await rpc(request, "Coordinate.ListDatacenters", {})
    if isinstance(reply, dict):
        reply = reply.get("Datacenters") or reply.get("Maps")
    # Consul >= 0.8 names the network area of each map; the WAN is the area "wan"
    out = [dict(m, AreaID=m.get("AreaID") or "wan") for m in reply or [] if isinstance(m, dict)]
    return json_response(request, out)


async def coordinate_node(request: web.Request) -> web.Response:
    """/v1/coordinate/node/:node: that node's coordinates (one per segment); 404 if none."""
    node = request.match_info["node"]
    reply = await rpc(request, "Coordinate.ListNodes", query_options(request))
    coords = [c for c in (reply or {}).get("Coordinates") or [] if c.get("Node") == node]
    headers = meta_headers(reply)
    if not coords:
        return web.Response(status=404, headers=headers)
    return json_response(request, [_entry(c) for c in coords], headers)


def _entry(c: dict[str, Any]) -> dict[str, Any]:
    return {"Node": c.get("Node", ""), "Segment": c.get("Segment", ""), "Coord": c.get("Coord")}


def _entries(_request: web.Request, coords: Any) -> Any:
    return [_entry(c) for c in coords or []]


async def coordinate_update(request: web.Request) -> web.Response:
    """PUT /v1/coordinate/update {Node, Segment, Coord}: recorded like an agent's own."""
    body = fields(
        await read_json(request, 64 * 1024), {"Node": None, "Segment": None, "Coord": None}
    )
    if not body.get("Node"):
        raise HTTPError(400, "Missing node name")
    args = {"Datacenter": datacenter(request), "Node": body["Node"], "Coord": body.get("Coord")}
    await rpc(request, "Coordinate.Update", args)
    return web.Response(body=b"", content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/coordinate/datacenters", coordinate_datacenters, allow_head=False),
        web.get(
            "/v1/coordinate/nodes",
            query("Coordinate.ListNodes", "Coordinates", empty=[], shape=_entries),
            allow_head=False,
        ),
        web.get("/v1/coordinate/node/{node}", coordinate_node, allow_head=False),
        web.put("/v1/coordinate/update", coordinate_update),
    ]
