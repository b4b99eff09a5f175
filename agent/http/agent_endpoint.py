"""/v1/agent/*: what the local agent answers itself (members, join, leave, self, monitor...)."""

from __future__ import annotations

import contextlib

from aiohttp import web

from agent.api import JoinError
from agent.http.common import (
    HTTPError,
    agent_of,
    flag,
    json_response,
    rpc,
)

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR")


async def agent_self(request: web.Request) -> web.Response:
    agent = agent_of(request)
    body = dict(agent.self_info())
    if "Stats" not in body:
        body["Stats"] = agent.stats()
    return json_response(request, body)


async def agent_members(request: web.Request) -> web.Response:
    return json_response(request, agent_of(request).members(wan=flag(request, "wan")))


async def agent_join(request: web.Request) -> web.Response:
    addr = request.match_info.get("addr", "")
    if not addr:
        raise HTTPError(400, "Missing address to join")
    try:
        await agent_of(request).join([addr], wan=flag(request, "wan"))
    except JoinError as exc:
        raise HTTPError(500, str(exc)) from None
    return web.Response(body=b"", content_type="application/json")


async def agent_leave(request: web.Request) -> web.Response:
    await agent_of(request).leave()
    return web.Response(body=b"", content_type="application/json")


async def agent_force_leave(request: web.Request) -> web.Response:
    node = request.match_info.get("node", "")
    if not node:
        raise HTTPError(400, "Missing node name")
    await agent_of(request).force_leave(node)
    return web.Response(body=b"", content_type="application/json")


async def agent_reload(request: web.Request) -> web.Response:
    await agent_of(request).reload()
    return web.Response(body=b"", content_type="application/json")


async def agent_monitor(request: web.Request) -> web.StreamResponse:
    level = (request.query.get("loglevel") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise HTTPError(400, f"Unknown log level: {request.query.get('loglevel')}")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    stream = agent_of(request).log_stream(level)
    try:
        async for line in stream:
            await resp.write(line.rstrip("\n").encode() + b"\n")
    except (ConnectionResetError, RuntimeError):
        pass  # the client went away
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    return resp


async def agent_services(request: web.Request) -> web.Response:
    """This agent's services: the agent's own view when it offers `local_services()`, else
    what the catalog holds for this node (a stale read, so it works without a leader)."""
    agent = agent_of(request)
    local = getattr(agent, "local_services", None)
    if callable(local):
        return json_response(request, local())
    args = {"Datacenter": agent.datacenter, "Node": agent.node_name, "AllowStale": True}
    reply = await rpc(request, "Catalog.NodeServices", args)
    node_services = (reply or {}).get("NodeServices") or {}
    services = {
        sid: {k: v for k, v in svc.items() if k not in ("CreateIndex", "ModifyIndex")}
        for sid, svc in (node_services.get("Services") or {}).items()
    }
    return json_response(request, services)


async def agent_checks(request: web.Request) -> web.Response:
    """This agent's checks by CheckID (see agent_services for where they come from)."""
    agent = agent_of(request)
    local = getattr(agent, "local_checks", None)
    if callable(local):
        return json_response(request, local())
    args = {"Datacenter": agent.datacenter, "Node": agent.node_name, "AllowStale": True}
    reply = await rpc(request, "Health.NodeChecks", args)
    checks = {
        c["CheckID"]: {k: v for k, v in c.items() if k not in ("CreateIndex", "ModifyIndex")}
        for c in (reply or {}).get("HealthChecks") or []
    }
    return json_response(request, checks)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/agent/self", agent_self, allow_head=False),
        web.get("/v1/agent/members", agent_members, allow_head=False),
        web.get("/v1/agent/services", agent_services, allow_head=False),
        web.get("/v1/agent/checks", agent_checks, allow_head=False),
        web.put("/v1/agent/join/{addr}", agent_join),
        web.get("/v1/agent/join/{addr}", agent_join, allow_head=False),
        web.put("/v1/agent/leave", agent_leave),
        web.put("/v1/agent/force-leave/{node}", agent_force_leave),
        web.get("/v1/agent/force-leave/{node}", agent_force_leave, allow_head=False),
        web.put("/v1/agent/reload", agent_reload),
        web.get("/v1/agent/monitor", agent_monitor, allow_head=False),
    ]
