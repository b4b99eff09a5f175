"""/v1/operator/raft/* (configuration, peer removal, leadership transfer) and
/v1/operator/keyring."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    agent_of,
    datacenter,
    json_response,
    need,
    query_options,
    read_json,
    rpc,
)
from agent.http.query import query


async def operator_raft_configuration(request: web.Request) -> web.Response:
    args = query_options(request)
    reply = await rpc(request, "Operator.RaftGetConfiguration", args)
    body = {"Servers": reply.get("Servers") or [], "Index": reply.get("Index", 0)}
    return json_response(request, body)


async def operator_raft_peer(request: web.Request) -> web.Response:
    """DELETE ?id=<server ID> or ?address=<IP:port>, as Consul 1.x's OperatorRaftPeer."""
    has_id, has_address = "id" in request.query, "address" in request.query
    if not has_id and not has_address:
        raise HTTPError(
            400,
            "Must specify either ?id with the server's ID or ?address with IP:port of peer "
            "to remove",
        )
    if has_id and has_address:
        raise HTTPError(400, "Must specify only one of ?id or ?address")
    args = {"Datacenter": datacenter(request)}
    if has_id:
        await rpc(request, "Operator.RaftRemovePeerByID", {**args, "ID": request.query["id"]})
    else:
        args["Address"] = request.query["address"]
        await rpc(request, "Operator.RaftRemovePeerByAddress", args)
    return web.Response(body=b"", content_type="application/json")


async def operator_raft_transfer_leader(request: web.Request) -> web.Response:
    args = {"Datacenter": datacenter(request), "ID": request.query.get("id", "")}
    reply = await rpc(request, "Operator.RaftTransferLeader", args)
    return json_response(request, {"Success": bool((reply or {}).get("Success"))})


_KEYRING_OPS = {"GET": "list", "POST": "install", "PUT": "use", "DELETE": "remove"}


async def operator_keyring(request: web.Request) -> web.Response:
    op = _KEYRING_OPS[request.method]
    await need(request, "keyring", "read" if op == "list" else "write")
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
    errors = keyring_errors(replies)
    if errors:  # a list too: Consul answers the errors, not the keys
        raise HTTPError(500, errors)
    if op == "list":
        return json_response(request, replies)
    return web.Response(body=b"", content_type="application/json")


def keyring_errors(replies: list[dict[str, Any]]) -> str:
    """The pools' errors and their nodes' messages as Consul's keyringErrorsOrNil puts them
    (a go-multierror list), or "" when every pool succeeded."""
    errs: list[str] = []
    for r in replies:
        if not r.get("Error"):
            continue
        pool = "WAN" if r.get("WAN") else f"{r.get('Datacenter', '')} (LAN)"
        errs.append(f"{pool} error: {r['Error']}")
        errs.extend(f"{node}: {msg}" for node, msg in (r.get("Messages") or {}).items())
    if not errs:
        return ""
    if len(errs) == 1:
        return f"1 error occurred:\n\t* {errs[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errs)
    return f"{len(errs)} errors occurred:\n\t{points}\n\n"


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/operator/raft/configuration", operator_raft_configuration, allow_head=False),
        web.delete("/v1/operator/raft/peer", operator_raft_peer),
        web.post("/v1/operator/raft/transfer-leader", operator_raft_transfer_leader),
        web.get("/v1/operator/keyring", operator_keyring, allow_head=False),
        web.get("/v1/operator/usage", query("Operator.Usage", None), allow_head=False),
        web.post("/v1/operator/keyring", operator_keyring),
        web.put("/v1/operator/keyring", operator_keyring),
        web.delete("/v1/operator/keyring", operator_keyring),
    ]
