"""/v1/session/*: create, destroy, renew, and the session reads."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    agent_of,
    datacenter,
    json_response,
    parse_duration,
    read_json,
    rpc,
)
from agent.http.query import query


def session_json(sess: dict[str, Any]) -> dict[str, Any]:
    out = dict(sess)
    out["LockDelay"] = int(out.get("LockDelay") or 0)  # nanoseconds, as Consul's JSON
    return out


async def session_create(request: web.Request) -> web.Response:
    body = await read_json(request, 64 * 1024)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: body must be a JSON object")
    sess: dict[str, Any] = {"ID": "", "Name": str(body.get("Name", "") or "")}
    sess["Node"] = body.get("Node") or agent_of(request).node_name
    for name in ("Checks", "LockDelay", "Behavior", "TTL"):
        if body.get(name) is not None:
            sess[name] = body[name]
    if "Checks" in sess and not (
        isinstance(sess["Checks"], list) and all(isinstance(c, str) for c in sess["Checks"])
    ):
        raise HTTPError(400, "Request decode failed: Checks must be a list of check IDs")
    if isinstance(sess.get("LockDelay"), str):
        try:
            sess["LockDelay"] = int(parse_duration(sess["LockDelay"]) * 1e9)
        except ValueError:
            raise HTTPError(
                400, f"Request decode failed: invalid LockDelay {sess['LockDelay']!r}"
            ) from None
    if "Behavior" in sess and sess["Behavior"] not in ("release", "delete"):
        raise HTTPError(400, f"Invalid Behavior setting '{sess['Behavior']}'")
    args = {"Datacenter": datacenter(request), "Op": "create", "Session": sess}
    reply = await rpc(request, "Session.Apply", args)
    return json_response(request, {"ID": reply})


async def session_destroy(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    args = {"Datacenter": datacenter(request), "Op": "destroy", "Session": {"ID": sid}}
    await rpc(request, "Session.Apply", args)
    return json_response(request, True)


async def session_renew(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    reply = await rpc(request, "Session.Renew", {"Datacenter": datacenter(request), "Session": sid})
    sessions = (reply or {}).get("Sessions") or []
    if not sessions:
        raise HTTPError(404, f"Session id '{sid}' not found")
    return json_response(request, [session_json(s) for s in sessions])


def _sessions(_request: web.Request, sessions: Any) -> Any:
    return [session_json(s) for s in sessions or []]


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/session/create", session_create),
        web.put("/v1/session/destroy/{id}", session_destroy),
        web.put("/v1/session/renew/{id}", session_renew),
        web.get(
            "/v1/session/info/{id}",
            query("Session.Get", "Sessions", {"id": "Session"}, empty=[], shape=_sessions),
            allow_head=False,
        ),
        web.get(
            "/v1/session/node/{node}",
            query("Session.NodeSessions", "Sessions", {"node": "Node"}, empty=[], shape=_sessions),
            allow_head=False,
        ),
        web.get(
            "/v1/session/list",
            query("Session.List", "Sessions", empty=[], shape=_sessions),
            allow_head=False,
        ),
    ]
