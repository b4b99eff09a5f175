"""/v1/session/*: create, destroy, renew, and the session reads."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http import decode
from agent.http.common import (
    HTTPError,
    agent_of,
    datacenter,
    json_response,
    read_json,
    rpc,
)
from agent.http.decode import Spec, fields
from agent.http.query import query


def session_json(sess: dict[str, Any]) -> dict[str, Any]:
    out = dict(sess)
    out["LockDelay"] = int(out.get("LockDelay") or 0)  # nanoseconds, as Consul's JSON
    if "NodeChecks" not in out:  # a session stored before node and service checks split
        out["NodeChecks"] = list(out.get("Checks") or []) or None
        out["ServiceChecks"] = None
    return out


#: SessionRequest.Session as Consul's decodeBody reads it (any case, snake_case too)
_SESSION: Spec = {
    "Name": None,
    "Node": None,
    "Checks": None,
    "NodeChecks": None,
    "ServiceChecks": {"ID": None, "Namespace": None},
    "LockDelay": None,
    "Behavior": None,
    "TTL": None,
    "Namespace": None,
}


async def session_create(request: web.Request) -> web.Response:
    body = await read_json(request, 64 * 1024)
    got = fields({} if body is None else body, _SESSION)
    sess: dict[str, Any] = {"ID": "", "Name": decode.string(got.get("Name"), "Name")}
    sess["Node"] = decode.string(got.get("Node"), "Node") or agent_of(request).node_name
    if got.get("Behavior") is not None:
        behavior = decode.string(got["Behavior"], "Behavior")
        if behavior not in ("release", "delete"):
            raise HTTPError(400, f"Invalid Behavior setting '{behavior}'")
        sess["Behavior"] = behavior
    if got.get("TTL") is not None:
        ttl = got["TTL"]
        sess["TTL"] = ttl if isinstance(ttl, str) else f"{decode.duration_ns(ttl, 'TTL')}ns"
    if got.get("LockDelay") is not None:
        delay = got["LockDelay"]
        # a string is a Go duration; a number goes to the server's FixupLockDelay as given
        sess["LockDelay"] = (
            decode.duration_ns(delay, "LockDelay") if isinstance(delay, str) else delay
        )
        if isinstance(sess["LockDelay"], bool):
            raise HTTPError(400, "Request decode failed: LockDelay: expected a duration")
    # Consul's defaults and fixupEmptySessionChecks: no checks named -> the node's serfHealth;
    # Checks (older clients) and NodeChecks/ServiceChecks (>= 1.7) are two views of one set.
    checks = got.get("Checks")
    node_checks = got.get("NodeChecks")
    service_checks = got.get("ServiceChecks")
    if checks is None and node_checks is None and service_checks is None:
        node_checks = ["serfHealth"]
    node_ids = decode.string_list(node_checks if node_checks is not None else checks, "NodeChecks")
    svc = [
        {
            "ID": decode.string(c.get("ID"), "ServiceChecks.ID"),
            "Namespace": decode.string(c.get("Namespace"), "ServiceChecks.Namespace"),
        }
        for c in (service_checks or [])
    ]
    if checks is not None and node_checks is None and service_checks is None:
        sess["Checks"] = decode.string_list(checks, "Checks")
    else:
        sess["Checks"] = list(dict.fromkeys([*node_ids, *(c["ID"] for c in svc)]))
    sess["NodeChecks"] = node_ids
    sess["ServiceChecks"] = svc
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
