"""/v1/event/fire/<name> and /v1/event/list (blocking on the last event's index)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from agent.api import RPCError
from agent.event_ids import event_id_index
from agent.http.common import (
    DEFAULT_QUERY_TIME,
    HTTPError,
    access_of,
    agent_of,
    b64,
    json_response,
    need,
    query_options,
    read_body,
    request_token,
    rpc_error,
)

#: Consul's limit on a user event's payload (serf.UserEventSizeLimit).
MAX_EVENT_PAYLOAD = 512


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
    await need(request, "event", "write", name)
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
            datacenter=q.get("dc", ""),
            token=request_token(request),
        )
    except RPCError as exc:
        raise rpc_error(exc) from None
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
    acc = await access_of(request)
    events, index = _events_and_index(agent, name)
    min_index = opts["MinQueryIndex"]
    if min_index and index == min_index:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (opts["MaxQueryTime"] or DEFAULT_QUERY_TIME)
        while index == min_index and loop.time() < deadline:
            await asyncio.sleep(EVENT_POLL_INTERVAL)
            events, index = _events_and_index(agent, name)
    headers = {"X-Consul-Index": str(index)}
    events, dropped = acc.filter(events, "event", lambda e: str(e.get("Name") or ""))
    if dropped:
        headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    return json_response(request, [event_json(e) for e in events], headers)


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/event/fire/{name}", event_fire),
        web.get("/v1/event/list", event_list, allow_head=False),
    ]
