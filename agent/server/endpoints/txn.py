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

from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods
from agent.server.endpoints.kvs import normalize_key
from agent.state.commands import MessageType
from agent.state.store import MAX_KV_VALUE_SIZE, MAX_TXN_OPS


async def apply(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    ops = args.get("Ops")
    if not isinstance(ops, list):
        raise RPCError("Must provide Ops")
    if len(ops) > MAX_TXN_OPS:
        raise RPCError(f"Transaction contains too many operations ({len(ops)} > {MAX_TXN_OPS})")
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
