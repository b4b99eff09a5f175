"""Endpoints that are one server RPC each: status, operator raft, catalog, health, coordinate,
session, txn and snapshot. Names and shapes are Consul's (see agent/server/endpoints.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.http.archive import ArchiveError, build_archive, read_archive
from agent.http.common import (
    HTTPError,
    agent_of,
    datacenter,
    flag,
    json_response,
    meta_headers,
    parse_duration,
    query_options,
    read_body,
    read_json,
    rpc,
)
from agent.http.kv import dir_entry_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Consul's structs.MaxTxnOps.
MAX_TXN_OPS = 64
MAX_SNAPSHOT_SIZE = 1 << 30
CHECK_STATES = ("any", "passing", "warning", "critical")


def query(
    method: str,
    field: str | None,
    path_args: dict[str, str] | None = None,
    extra: Callable[[web.Request, dict[str, Any]], None] | None = None,
    empty: Any = None,
    shape: Callable[[web.Request, Any], Any] | None = None,
) -> Handler:
    """A GET handler: QueryOptions + path args -> RPC -> reply[field] with X-Consul-* headers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        args = query_options(request)
        for var, name in (path_args or {}).items():
            value = request.match_info.get(var, "")
            if not value:
                raise HTTPError(400, f"Missing {var} name")
            args[name] = value
        if extra is not None:
            extra(request, args)
        reply = await rpc(request, method, args)
        out = reply.get(field) if field is not None and isinstance(reply, dict) else reply
        if out is None:
            out = empty
        if shape is not None:
            out = shape(request, out)
        return json_response(request, out, meta_headers(reply))

    return handler


def _service_tag(request: web.Request, args: dict[str, Any]) -> None:
    if "tag" in request.query:
        args["ServiceTag"] = request.query["tag"]
        args["TagFilter"] = True


def _service_health(request: web.Request, args: dict[str, Any]) -> None:
    _service_tag(request, args)
    args["Passing"] = flag(request, "passing")


def _passing_only(request: web.Request, nodes: Any) -> Any:
    if not flag(request, "passing") or not isinstance(nodes, list):
        return nodes
    return [n for n in nodes if all(c.get("Status") == "passing" for c in (n.get("Checks") or []))]


def _check_state(request: web.Request, args: dict[str, Any]) -> None:
    if args["State"] not in CHECK_STATES:
        raise HTTPError(400, "Invalid check state")


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


async def operator_raft_configuration(request: web.Request) -> web.Response:
    args = query_options(request)
    reply = await rpc(request, "Operator.RaftGetConfiguration", args)
    body = {"Servers": reply.get("Servers") or [], "Index": reply.get("Index", 0)}
    return json_response(request, body)


async def operator_raft_peer(request: web.Request) -> web.Response:
    address = request.query.get("address", "")
    if not address:
        raise HTTPError(400, "Must specify ?address with IP:port of peer to remove")
    args = {"Datacenter": datacenter(request), "Address": address}
    await rpc(request, "Operator.RaftRemovePeerByAddress", args)
    return web.Response(body=b"", content_type="application/json")


async def snapshot_save(request: web.Request) -> web.Response:
    args = query_options(request)
    reply = await rpc(request, "Snapshot.Save", args)
    state = reply.get("Data") or b""
    archive = build_archive(bytes(state), int(reply.get("Index", 0)), int(reply.get("Term", 0)))
    headers = meta_headers(reply)
    return web.Response(body=archive, headers=headers, content_type="application/x-gzip")


async def snapshot_restore(request: web.Request) -> web.Response:
    data = await read_body(request, MAX_SNAPSHOT_SIZE)
    try:
        meta, state = read_archive(data)
    except ArchiveError as exc:
        raise HTTPError(400, str(exc)) from None
    args = {
        "Datacenter": datacenter(request),
        "Index": meta.index,
        "Term": meta.term,
        "Data": state,
    }
    await rpc(request, "Snapshot.Restore", args)
    return web.Response(body=b"", content_type="application/json")


async def catalog_register(request: web.Request) -> web.Response:
    body = await read_json(request, 512 * 1024)
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: body must be a JSON object")
    body.setdefault("Datacenter", datacenter(request))
    if not body.get("Node") or not body.get("Address"):
        raise HTTPError(400, "Must provide node and address")
    await rpc(request, "Catalog.Register", body)
    return json_response(request, True)


async def catalog_deregister(request: web.Request) -> web.Response:
    body = await read_json(request, 512 * 1024)
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: body must be a JSON object")
    body.setdefault("Datacenter", datacenter(request))
    if not body.get("Node"):
        raise HTTPError(400, "Must provide node")
    await rpc(request, "Catalog.Deregister", body)
    return json_response(request, True)


async def catalog_datacenters(request: web.Request) -> web.Response:
    reply = await rpc(request, "Catalog.ListDatacenters", {})
    if isinstance(reply, dict):
        reply = reply.get("Datacenters")
    return json_response(request, list(reply or []))


async def coordinate_datacenters(request: web.Request) -> web.Response:
    reply = await rpc(request, "Coordinate.ListDatacenters", {})
    if isinstance(reply, dict):
        reply = reply.get("Datacenters") or reply.get("Maps")
    return json_response(request, list(reply or []))


# --- sessions ------------------------------------------------------------------------------


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


# --- txn -----------------------------------------------------------------------------------

_TXN_VERBS = {
    "set",
    "delete",
    "delete-cas",
    "delete-tree",
    "cas",
    "lock",
    "unlock",
    "get",
    "get-tree",
    "check-index",
    "check-session",
}


def _decode_value(value: Any) -> bytes:
    import base64
    import binascii

    if value is None:
        return b""
    if not isinstance(value, str):
        raise HTTPError(400, "Failed to parse body: Value must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, "Failed to parse body: Value is not valid base64") from None


def _txn_uint(kv: dict[str, Any], name: str) -> int:
    value = kv.get(name, 0) or 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError(f"{name} must be an unsigned integer, got {value!r}")
    return value


async def txn(request: web.Request) -> web.Response:
    body = await read_json(request, 4 * 1024 * 1024)
    if not isinstance(body, list):
        raise HTTPError(400, "Failed to parse body: expected a JSON list of operations")
    if len(body) > MAX_TXN_OPS:
        raise HTTPError(
            413, f"Transaction contains too many operations ({len(body)} > {MAX_TXN_OPS})"
        )
    ops: list[dict[str, Any]] = []
    for op in body:
        kv = op.get("KV") if isinstance(op, dict) else None
        if not isinstance(kv, dict):
            raise HTTPError(400, 'Failed to parse body: each operation needs a "KV" object')
        verb = kv.get("Verb", "")
        if verb not in _TXN_VERBS:
            raise HTTPError(400, f"Failed to parse body: unknown KV verb {verb!r}")
        value = _decode_value(kv.get("Value"))
        if len(value) > 512 * 1024:
            raise HTTPError(
                413,
                f"Value for key {kv.get('Key', '')!r} is too large ({len(value)} > 524288 bytes)",
            )
        try:
            dir_ent = {
                "Key": str(kv.get("Key", "")),
                "Value": value,
                "Flags": _txn_uint(kv, "Flags"),
                "Session": str(kv.get("Session", "") or ""),
                "ModifyIndex": _txn_uint(kv, "Index"),
            }
        except ValueError as exc:
            raise HTTPError(400, f"Failed to parse body: {exc}") from None
        ops.append({"KV": {"Verb": verb, "DirEnt": dir_ent}})
    reply = await rpc(request, "Txn.Apply", {"Datacenter": datacenter(request), "Ops": ops})
    results = [
        {"KV": dir_entry_json(r["KV"])} if isinstance(r, dict) and r.get("KV") else r
        for r in (reply.get("Results") or [])
    ]
    errors = reply.get("Errors") or []
    body_out = {"Results": results or None, "Errors": errors or None}
    return json_response(request, body_out, status=409 if errors else 200)


def routes() -> list[web.RouteDef]:
    g = web.get
    return [
        g("/v1/status/leader", status_leader, allow_head=False),
        g("/v1/status/peers", status_peers, allow_head=False),
        g("/v1/operator/raft/configuration", operator_raft_configuration, allow_head=False),
        web.delete("/v1/operator/raft/peer", operator_raft_peer),
        g("/v1/snapshot", snapshot_save, allow_head=False),
        web.put("/v1/snapshot", snapshot_restore),
        web.put("/v1/catalog/register", catalog_register),
        web.put("/v1/catalog/deregister", catalog_deregister),
        g("/v1/catalog/datacenters", catalog_datacenters, allow_head=False),
        g("/v1/catalog/nodes", query("Catalog.ListNodes", "Nodes", empty=[]), allow_head=False),
        g(
            "/v1/catalog/services",
            query("Catalog.ListServices", "Services", empty={}),
            allow_head=False,
        ),
        g(
            "/v1/catalog/service/{service}",
            query(
                "Catalog.ServiceNodes",
                "ServiceNodes",
                {"service": "ServiceName"},
                _service_tag,
                empty=[],
            ),
            allow_head=False,
        ),
        g(
            "/v1/catalog/node/{node}",
            query("Catalog.NodeServices", "NodeServices", {"node": "Node"}),
            allow_head=False,
        ),
        g(
            "/v1/health/node/{node}",
            query("Health.NodeChecks", "HealthChecks", {"node": "Node"}, empty=[]),
            allow_head=False,
        ),
        g(
            "/v1/health/checks/{service}",
            query("Health.ServiceChecks", "HealthChecks", {"service": "ServiceName"}, empty=[]),
            allow_head=False,
        ),
        g(
            "/v1/health/service/{service}",
            query(
                "Health.ServiceNodes",
                "Nodes",
                {"service": "ServiceName"},
                _service_health,
                empty=[],
                shape=_passing_only,
            ),
            allow_head=False,
        ),
        g(
            "/v1/health/state/{state}",
            query(
                "Health.ChecksInState", "HealthChecks", {"state": "State"}, _check_state, empty=[]
            ),
            allow_head=False,
        ),
        g("/v1/coordinate/datacenters", coordinate_datacenters, allow_head=False),
        g(
            "/v1/coordinate/nodes",
            query("Coordinate.ListNodes", "Coordinates", empty=[]),
            allow_head=False,
        ),
        web.put("/v1/session/create", session_create),
        web.put("/v1/session/destroy/{id}", session_destroy),
        web.put("/v1/session/renew/{id}", session_renew),
        g(
            "/v1/session/info/{id}",
            query("Session.Get", "Sessions", {"id": "Session"}, empty=[], shape=_sessions),
            allow_head=False,
        ),
        g(
            "/v1/session/node/{node}",
            query("Session.NodeSessions", "Sessions", {"node": "Node"}, empty=[], shape=_sessions),
            allow_head=False,
        ),
        g(
            "/v1/session/list",
            query("Session.List", "Sessions", empty=[], shape=_sessions),
            allow_head=False,
        ),
        web.put("/v1/txn", txn),
    ]
