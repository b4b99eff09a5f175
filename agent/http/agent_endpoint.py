"""/v1/agent/*, /v1/operator/keyring and /v1/event/*: what the local agent answers itself."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from agent.api import JoinError
from agent.http.common import (
    DEFAULT_QUERY_TIME,
    HTTPError,
    agent_of,
    b64,
    flag,
    json_response,
    query_options,
    read_body,
    read_json,
    rpc,
)
from agent.http.events import event_id_index

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR")
#: Consul's limit on a user event's payload (serf.UserEventSizeLimit).
MAX_EVENT_PAYLOAD = 512


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


_KEYRING_OPS = {"GET": "list", "POST": "install", "PUT": "use", "DELETE": "remove"}


async def operator_keyring(request: web.Request) -> web.Response:
    op = _KEYRING_OPS[request.method]
    key: str | None = None
    if op != "list":
        body = await read_json(request, 64 * 1024)
        if not isinstance(body, dict) or not isinstance(body.get("Key"), str) or not body["Key"]:
            raise HTTPError(400, 'Request body must be a JSON object with a "Key" string')
        key = body["Key"]
    try:
        replies = await agent_of(request).keyring(op, key)
    except (ValueError, RuntimeError) as exc:
        raise HTTPError(500, str(exc)) from None
    if op == "list":
        return json_response(request, replies)
    errors = [
        f"{r.get('Datacenter', '')} ({'WAN' if r.get('WAN') else 'LAN'}): {r['Error']}"
        for r in replies
        if r.get("Error")
    ]
    if errors:
        raise HTTPError(500, "; ".join(errors))
    return web.Response(body=b"", content_type="application/json")


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    payload = out.get("Payload")
    if isinstance(payload, bytes | bytearray):
        out["Payload"] = b64(bytes(payload)) if payload else None
    return out


async def event_fire(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "")
    if not name:
        raise HTTPError(400, "Missing name")
    q = request.query
    if q.get("dc") and q["dc"] != agent_of(request).datacenter:
        raise HTTPError(500, f"No path to datacenter: {q['dc']}")
    payload = await read_body(request, 64 * 1024)
    if len(payload) > MAX_EVENT_PAYLOAD:
        raise HTTPError(
            400,
            f"user event exceeds limit of {MAX_EVENT_PAYLOAD} bytes (payload {len(payload)} bytes)",
        )
    try:
        event = await agent_of(request).fire_event(
            name,
            payload,
            node_filter=q.get("node", ""),
            service_filter=q.get("service", ""),
            tag_filter=q.get("tag", ""),
        )
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    return json_response(request, event_json(event))


def _events_and_index(agent: Any, name: str) -> tuple[list[dict[str, Any]], int]:
    events = agent.user_events()
    if name:
        events = [e for e in events if e.get("Name") == name]
    # An empty list answers index 1, as Consul's, so a watch does not spin on index 0.
    index = event_id_index(str(events[-1].get("ID", ""))) if events else 1
    return events, index


#: How often a blocking /v1/event/list looks for new events (the agent offers no wake-up).
EVENT_POLL_INTERVAL = 0.05


async def event_list(request: web.Request) -> web.Response:
    """Recent user events, optionally by ?name; blocks with ?index until the last one changes."""
    opts = query_options(request)
    agent = agent_of(request)
    name = request.query.get("name", "")
    events, index = _events_and_index(agent, name)
    min_index = opts["MinQueryIndex"]
    if min_index and index == min_index:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (opts["MaxQueryTime"] or DEFAULT_QUERY_TIME)
        while index == min_index and loop.time() < deadline:
            await asyncio.sleep(EVENT_POLL_INTERVAL)
            events, index = _events_and_index(agent, name)
    headers = {"X-Consul-Index": str(index)}
    return json_response(request, [event_json(e) for e in events], headers)


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
        web.get("/v1/operator/keyring", operator_keyring, allow_head=False),
        web.post("/v1/operator/keyring", operator_keyring),
        web.put("/v1/operator/keyring", operator_keyring),
        web.delete("/v1/operator/keyring", operator_keyring),
        web.put("/v1/event/fire/{name}", event_fire),
        web.get("/v1/event/list", event_list, allow_head=False),
    ]
