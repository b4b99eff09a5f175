"""/v1/agent/*: what the local agent answers itself (members, join, leave, self, monitor...),
and the registration of its own services and checks (service/check register, deregister, TTL
pass/warn/fail/update, maintenance mode) through the agent's `LocalRegistry`."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from agent.api import JoinError
from agent.http.common import (
    HTTPError,
    access_of,
    agent_of,
    flag,
    json_response,
    need,
    read_json,
    request_token,
)
from agent.local.checks import CRITICAL, PASSING, STATUSES, WARNING, normalise_key
from agent.local.registry import (
    LocalRegistry,
    RegistrationError,
    parse_check,
    parse_service,
)

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR")


async def agent_self(request: web.Request) -> web.Response:
    agent = agent_of(request)
    await need(request, "agent", "read", agent.node_name)
    body = dict(agent.self_info())
    if "Stats" not in body:
        body["Stats"] = agent.stats()
    return json_response(request, body)


async def agent_members(request: web.Request) -> web.Response:
    acc = await access_of(request)
    members = agent_of(request).members(wan=flag(request, "wan"))
    # node:read of each member (a WAN member's name is "node.dc")
    wan = flag(request, "wan")
    visible, _dropped = acc.filter(
        members, "node", lambda m: str(m["Name"]).rsplit(".", 1)[0] if wan else str(m["Name"])
    )
    return json_response(request, visible)


async def agent_join(request: web.Request) -> web.Response:
    addr = request.match_info.get("addr", "")
    if not addr:
        raise HTTPError(400, "Missing address to join")
    await need(request, "agent", "write", agent_of(request).node_name)
    try:
        await agent_of(request).join([addr], wan=flag(request, "wan"))
    except JoinError as exc:
        raise HTTPError(500, str(exc)) from None
    return web.Response(body=b"", content_type="application/json")


async def agent_leave(request: web.Request) -> web.Response:
    await need(request, "agent", "write", agent_of(request).node_name)
    await agent_of(request).leave()
    return web.Response(body=b"", content_type="application/json")


async def agent_force_leave(request: web.Request) -> web.Response:
    node = request.match_info.get("node", "")
    if not node:
        raise HTTPError(400, "Missing node name")
    await need(request, "operator", "write")
    await agent_of(request).force_leave(node, prune=flag(request, "prune"))
    return web.Response(body=b"", content_type="application/json")


async def agent_reload(request: web.Request) -> web.Response:
    await need(request, "agent", "write", agent_of(request).node_name)
    await agent_of(request).reload()
    return web.Response(body=b"", content_type="application/json")


async def agent_monitor(request: web.Request) -> web.StreamResponse:
    level = (request.query.get("loglevel") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise HTTPError(400, f"Unknown log level: {request.query.get('loglevel')}")
    await need(request, "agent", "read", agent_of(request).node_name)
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    stream = agent_of(request).log_stream(level, "logjson" in request.query)
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


# ---- registration of this agent's services and checks ------------------------------------

#: Largest registration body accepted (a service with its checks is a few hundred bytes).
MAX_REGISTER_BODY = 1 << 20
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def registry_of(request: web.Request) -> LocalRegistry:
    return agent_of(request).registry


def _empty() -> web.Response:
    return web.Response(body=b"", content_type="application/json")


async def _body(request: web.Request) -> Any:
    body = await read_json(request, MAX_REGISTER_BODY)
    if body is None:
        raise HTTPError(400, "Request decode failed: EOF")
    return body


async def need_check_write(request: web.Request, check_id: str, service_id: str = "") -> None:
    """A check is written with its service's `service:write`, a node-level one with the
    node's `node:write` (Consul's vetCheckUpdate); an unknown check is left to the registry."""
    agent = agent_of(request)
    if not service_id:
        chk = agent.registry.state.checks.get(check_id)
        if chk is None and check_id:
            return
        service_id = str((chk or {}).get("ServiceID") or "")
    if service_id:
        svc = agent.registry.state.services.get(service_id)
        if svc is not None:
            await need(request, "service", "write", str(svc["Service"]))
        return
    await need(request, "node", "write", agent.node_name)


async def need_service_write(request: web.Request, service_id: str) -> None:
    svc = agent_of(request).registry.state.services.get(service_id)
    if svc is not None:
        await need(request, "service", "write", str(svc["Service"]))


def _apply(action: Any, *args: Any) -> Any:
    try:
        return action(*args)
    except RegistrationError as exc:
        raise HTTPError(exc.status, exc.message) from None


async def service_register(request: web.Request) -> web.Response:
    registry = registry_of(request)
    definition = _apply(parse_service, await _body(request))
    await need(request, "service", "write", str(definition.service["Service"]))
    await need_service_write(request, str(definition.service["ID"]))  # the one it replaces
    replace = flag(request, "replace-existing-checks")
    token = request_token(request)
    _apply(
        lambda: registry.add_service(
            definition, persist=True, replace_existing_checks=replace, token=token
        )
    )
    return _empty()


async def service_deregister(request: web.Request) -> web.Response:
    registry = registry_of(request)
    service_id = request.match_info["id"]
    if not service_id:
        raise HTTPError(400, "Missing service ID")
    await need_service_write(request, service_id)
    _apply(lambda: registry.remove_service(service_id, persist=True))
    return _empty()


async def check_register(request: web.Request) -> web.Response:
    registry = registry_of(request)
    chk = _apply(parse_check, await _body(request))
    await need_check_write(request, chk.check_id, chk.service_id or "")
    token = request_token(request)
    _apply(lambda: registry.add_check(chk, persist=True, token=token))
    return _empty()


async def check_deregister(request: web.Request) -> web.Response:
    registry = registry_of(request)
    check_id = request.match_info["id"]
    if not check_id:
        raise HTTPError(400, "Missing check ID")
    await need_check_write(request, check_id)
    _apply(lambda: registry.remove_check(check_id, persist=True))
    return _empty()


def _ttl_update(status: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        registry = registry_of(request)
        check_id = request.match_info["id"]
        note = request.query.get("note", "")
        await need_check_write(request, check_id)
        _apply(lambda: registry.update_ttl(check_id, status, note))
        return _empty()

    return handler


async def check_update(request: web.Request) -> web.Response:
    registry = registry_of(request)
    check_id = request.match_info["id"]
    await need_check_write(request, check_id)
    body = await _body(request)
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: expected a JSON object")
    fields = {normalise_key(str(k)): v for k, v in body.items()}
    status, output = fields.get("status", ""), fields.get("output", "")
    if not isinstance(output, str):
        raise HTTPError(400, "Request decode failed: Output: expected a string")
    if status not in STATUSES:
        raise HTTPError(400, f"Invalid check status: '{status}'")
    _apply(lambda: registry.update_ttl(check_id, str(status), output))
    return _empty()


def _enable(request: web.Request) -> bool:
    if "enable" not in request.query:
        raise HTTPError(400, "Missing value for enable")
    raw = request.query["enable"]
    if raw in _GO_TRUE:
        return True
    if raw in _GO_FALSE:
        return False
    raise HTTPError(400, f'Invalid value for enable: "{raw}"')


async def service_maintenance(request: web.Request) -> web.Response:
    registry = registry_of(request)
    service_id = request.match_info["id"]
    if not service_id:
        raise HTTPError(400, "Missing service ID")
    await need_service_write(request, service_id)
    if _enable(request):
        reason = request.query.get("reason", "")
        _apply(lambda: registry.enable_service_maintenance(service_id, reason))
    else:
        _apply(lambda: registry.disable_service_maintenance(service_id))
    return _empty()


async def node_maintenance(request: web.Request) -> web.Response:
    registry = registry_of(request)
    await need(request, "node", "write", agent_of(request).node_name)
    if _enable(request):
        registry.enable_node_maintenance(request.query.get("reason", ""))
    else:
        registry.disable_node_maintenance()
    return _empty()


def routes() -> list[web.RouteDef]:
    ident = "{id:.*}"  # IDs may hold any character, "/" too (Consul trims the path prefix)
    # State changes only with PUT, as Consul 1.x (0.7 took a GET too): a GET is what a page
    # in a browser can make of any link or image, and it answers 405.
    return [
        web.put("/v1/agent/service/register", service_register),
        web.put(f"/v1/agent/service/deregister/{ident}", service_deregister),
        web.put(f"/v1/agent/service/maintenance/{ident}", service_maintenance),
        web.put("/v1/agent/check/register", check_register),
        web.put(f"/v1/agent/check/deregister/{ident}", check_deregister),
        web.put(f"/v1/agent/check/pass/{ident}", _ttl_update(PASSING)),
        web.put(f"/v1/agent/check/warn/{ident}", _ttl_update(WARNING)),
        web.put(f"/v1/agent/check/fail/{ident}", _ttl_update(CRITICAL)),
        web.put(f"/v1/agent/check/update/{ident}", check_update),
        web.put("/v1/agent/maintenance", node_maintenance),
        web.get("/v1/agent/self", agent_self, allow_head=False),
        web.get("/v1/agent/members", agent_members, allow_head=False),
        web.put("/v1/agent/join/{addr}", agent_join),
        web.put("/v1/agent/leave", agent_leave),
        web.put("/v1/agent/force-leave/{node}", agent_force_leave),
        web.put("/v1/agent/reload", agent_reload),
        web.get("/v1/agent/monitor", agent_monitor, allow_head=False),
    ]
