"""/v1/status/leader and /v1/status/peers."""

from __future__ import annotations

from aiohttp import web

from agent.http.common import (
    datacenter,
    json_response,
    rpc,
)


async def status_leader(request: web.Request) -> web.Response:
    reply = await rpc(request, "Status.Leader", {"Datacenter": datacenter(request)})
    if isinstance(reply, dict):
        reply = reply.get("Leader", "")
    return json_response(request, reply or "")


async def status_peers(request: web.Request) -> web.Response:
    reply = await rpc(request, "Status.Peers", {"Datacenter": datacenter(request)})
    if isinstance(reply, dict):
        reply = reply.get("Peers")
    return json_response(request, list(reply or []))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/status/leader", status_leader, allow_head=False),
        web.get("/v1/status/peers", status_peers, allow_head=False),
    ]
