"""/v1/coordinate/*: network coordinates of the LAN nodes and the WAN servers."""

from __future__ import annotations

from aiohttp import web

from agent.http.common import (
    json_response,
    rpc,
)
from agent.http.query import query


async def coordinate_datacenters(request: web.Request) -> web.Response:
    reply = await rpc(request, "Coordinate.ListDatacenters", {})
    if isinstance(reply, dict):
        reply = reply.get("Datacenters") or reply.get("Maps")
    return json_response(request, list(reply or []))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/coordinate/datacenters", coordinate_datacenters, allow_head=False),
        web.get(
            "/v1/coordinate/nodes",
            query("Coordinate.ListNodes", "Coordinates", empty=[]),
            allow_head=False,
        ),
    ]
