"""/v1/operator/autopilot/*: autopilot's configuration (GET, and PUT with `?cas`), the
servers' health (200 when healthy, 429 when not, as Consul answers load balancers) and
autopilot's state, over the Operator.Autopilot* server methods."""

from __future__ import annotations

from aiohttp import web

from agent.http.common import (
    HTTPError,
    json_response,
    parse_uint,
    query_options,
    read_json,
    rpc,
)


async def get_configuration(request: web.Request) -> web.Response:
    reply = await rpc(request, "Operator.AutopilotGetConfiguration", query_options(request))
    return json_response(request, (reply or {}).get("Config"))


async def set_configuration(request: web.Request) -> web.Response:
    body = await read_json(request, 64 * 1024)
    if not isinstance(body, dict):
        raise HTTPError(400, "Error parsing autopilot config: expected a JSON object")
    cas = parse_uint(request, "cas", "cas index")
    if cas is not None:
        body = {**body, "ModifyIndex": cas}
    args = {
        "Datacenter": query_options(request)["Datacenter"],
        "Config": body,
        "CAS": cas is not None,
    }
    return json_response(
        request, bool(await rpc(request, "Operator.AutopilotSetConfiguration", args))
    )


async def health(request: web.Request) -> web.Response:
    args = {"Datacenter": query_options(request)["Datacenter"]}
    reply = await rpc(request, "Operator.ServerHealth", args)
    status = 200 if (reply or {}).get("Healthy") else 429
    return json_response(request, reply, status=status)


async def state(request: web.Request) -> web.Response:
    args = {"Datacenter": query_options(request)["Datacenter"]}
    return json_response(request, await rpc(request, "Operator.AutopilotState", args))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/operator/autopilot/configuration", get_configuration, allow_head=False),
        web.put("/v1/operator/autopilot/configuration", set_configuration),
        web.get("/v1/operator/autopilot/health", health, allow_head=False),
        web.get("/v1/operator/autopilot/state", state, allow_head=False),
    ]
