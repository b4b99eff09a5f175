"""Txn.Apply: several KV operations applied atomically (Consul's txn_endpoint.go).

Txn.Apply      TxnRequest {Datacenter, Ops: [{KV: {Verb, DirEnt: DirEntry}}]}
               Verb: set | delete | delete-cas | delete-tree | cas | lock | unlock | get |
               get-tree | check-index | check-session   (at most 64 ops)
               -> TxnResponse {Results: [{KV: DirEntry}] | None, Errors: [{OpIndex, What}] | None}
               All or nothing: with any error, nothing is applied and Results is None.
               Result entries carry Value only for get / get-tree.
"""

from __future__ import annotations

from typing import Any

from agent.acl.resolver import Access
from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods, access
from agent.server.endpoints.kvs import normalize_key
from agent.state.commands import MessageType
from agent.state.store import MAX_KV_VALUE_SIZE, MAX_TXN_OPS

_KV_READS = ("get", "get-tree", "check-index", "check-session", "check-not-exists")


def _allowed(acc: Access, op: Any) -> bool:
    """vetTxnOp: what each operation of a transaction needs (Consul answers an operation
    the token may not do with a "Permission denied" error at its index)."""
    if not isinstance(op, dict):
        return True
    kv = op.get("KV")
    if isinstance(kv, dict) and isinstance(kv.get("DirEnt"), dict):
        verb = str(kv.get("Verb") or "")
        key = normalize_key(str(kv["DirEnt"].get("Key") or ""))
        if verb in _KV_READS:
            return acc.can("key", "read", key)
        return acc.can("key", "write-prefix" if verb == "delete-tree" else "write", key)
    for kind in ("Node", "Service", "Check"):
        body = op.get(kind)
        if not isinstance(body, dict):
            continue
        level = "read" if body.get("Verb") == "get" else "write"
        if kind == "Node":
            node = body.get("Node")
            return acc.can("node", level, str(node.get("Node") if isinstance(node, dict) else ""))
        if kind == "Service":
            svc = body.get("Service")
            name = str(svc.get("Service") if isinstance(svc, dict) else "")
            return acc.can("service", level, name)
        check = body.get("Check")
        check = check if isinstance(check, dict) else {}
        if check.get("ServiceName"):
            return acc.can("service", level, str(check["ServiceName"]))
        return acc.can("node", level, str(check.get("Node") or ""))
    return True


async def apply(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    ops = args.get("Ops")
    if not isinstance(ops, list):
        raise RPCError("Must provide Ops")
    if len(ops) > MAX_TXN_OPS:
        raise RPCError(f"Transaction contains too many operations ({len(ops)} > {MAX_TXN_OPS})")
    acc = access()
    denied = [
        {"OpIndex": i, "What": "Permission denied"}
        for i, op in enumerate(ops)
        if not acc.disabled and not _allowed(acc, op)
    ]
    if denied:
        return {"Results": None, "Errors": denied}
    clean: list[dict[str, Any]] = []
    for op in ops:
        kv = op.get("KV") if isinstance(op, dict) else None
        if not isinstance(kv, dict) or not isinstance(kv.get("DirEnt"), dict):
            clean.append(op if isinstance(op, dict) else {})
            continue
        dir_ent = dict(kv["DirEnt"])
        dir_ent["Key"] = normalize_key(str(dir_ent.get("Key") or ""))
        value = dir_ent.get("Value")
        if isinstance(value, str):
            value = dir_ent["Value"] = value.encode()
        if isinstance(value, bytes | bytearray) and len(value) > MAX_KV_VALUE_SIZE:
            raise RPCError(
                f'Value for key "{dir_ent["Key"]}" is too large '
                f"({len(value)} > {MAX_KV_VALUE_SIZE} bytes)"
            )
        clean.append({"KV": {"Verb": kv.get("Verb"), "DirEnt": dir_ent}})
    result = await ctx.raft_apply(MessageType.TXN, {"Ops": clean})
    return dict(result)


METHODS: Methods = {"Txn.Apply": (apply, Kind.WRITE)}
