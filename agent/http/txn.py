"""/v1/txn: up to 64 KV, Node, Service and Check operations applied all or nothing
(Txn.Apply); field names decoded as Consul does (any case, snake_case too)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from agent.http.catalog import CHECK_SPEC
from agent.http.common import (
    HTTPError,
    datacenter,
    json_response,
    read_json,
    rpc,
)
from agent.http.decode import Spec, fields
from agent.http.kv import dir_entry_json

#: Consul's structs.MaxTxnOps.
MAX_TXN_OPS = 64

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


_NODE: Spec = {
    "ID": None,
    "Node": None,
    "Address": None,
    "Datacenter": None,
    "TaggedAddresses": None,
    "Meta": None,
    "ModifyIndex": None,
}
_SERVICE: Spec = {
    "ID": None,
    "Service": None,
    "Tags": None,
    "Address": None,
    "Meta": None,
    "Port": None,
    "Weights": None,
    "EnableTagOverride": None,
    "Kind": None,
    "TaggedAddresses": None,
    "ModifyIndex": None,
}
#: api.TxnOp: exactly one of KV, Node, Service, Check (Consul >= 1.4 for the catalog ones)
_OP: Spec = {
    "KV": {"Verb": None, "Key": None, "Value": None, "Flags": None, "Index": None, "Session": None},
    "Node": {"Verb": None, "Node": _NODE},
    "Service": {"Verb": None, "Node": None, "Service": _SERVICE},
    "Check": {"Verb": None, "Check": {**CHECK_SPEC, "ModifyIndex": None}},
}
_CATALOG_VERBS = ("set", "cas", "get", "delete", "delete-cas")


def _op(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise HTTPError(400, "Failed to parse body: each operation must be an object")
    op = fields(raw, _OP, "operation")
    present = [k for k in _OP if op.get(k) is not None]
    if len(present) != 1:
        raise HTTPError(
            400, "Failed to parse body: each operation needs one of KV, Node, Service, Check"
        )
    kind = present[0]
    body = op[kind]
    verb = body.get("Verb", "")
    if kind != "KV":
        if verb not in _CATALOG_VERBS:
            raise HTTPError(400, f"Failed to parse body: unknown {kind} verb {verb!r}")
        return {kind: body}
    kv = body
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
            "Key": str(kv.get("Key", "") or ""),
            "Value": value,
            "Flags": _txn_uint(kv, "Flags"),
            "Session": str(kv.get("Session", "") or ""),
            "ModifyIndex": _txn_uint(kv, "Index"),
        }
    except ValueError as exc:
        raise HTTPError(400, f"Failed to parse body: {exc}") from None
    return {"KV": {"Verb": verb, "DirEnt": dir_ent}}


async def txn(request: web.Request) -> web.Response:
    body = await read_json(request, 4 * 1024 * 1024)
    if not isinstance(body, list):
        raise HTTPError(400, "Failed to parse body: expected a JSON list of operations")
    if len(body) > MAX_TXN_OPS:
        raise HTTPError(
            413, f"Transaction contains too many operations ({len(body)} > {MAX_TXN_OPS})"
        )
    ops = [_op(op) for op in body]
    reply = await rpc(request, "Txn.Apply", {"Datacenter": datacenter(request), "Ops": ops})
    results = [
        {"KV": dir_entry_json(r["KV"])} if isinstance(r, dict) and r.get("KV") else r
        for r in (reply.get("Results") or [])
    ]
    errors = reply.get("Errors") or []
    body_out = {"Results": results or None, "Errors": errors or None}
    return json_response(request, body_out, status=409 if errors else 200)


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/txn", txn),
    ]
