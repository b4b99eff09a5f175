"""KVS.*: the key/value store (Consul's kvs_endpoint.go).

KVS.Apply      KeyRequest {Datacenter, Op, DirEnt: DirEntry}
               Op: "set" | "cas" | "delete" | "delete-cas" | "delete-tree" | "lock" | "unlock"
               -> bool   (False when a cas/delete-cas index is stale, a lock is held by another
               session or in its lock-delay, an unlock is by the wrong session; True otherwise).
               Key: leading "/" stripped; "" only for delete-tree ("Must provide key").
               Value over 524288 bytes -> "Value exceeds 524288 byte limit".
               lock with an unknown session -> `invalid session "<id>"` (Consul 0.7 wording).
KVS.Get        KeyRequest {Datacenter, Key, +QueryOptions}
               -> IndexedDirEntries {Entries: [DirEntry] | None, +QueryMeta}
               (Index: the entry's ModifyIndex, else the kvs/tombstone index, at least 1)
KVS.List       KeyRequest {Datacenter, Key (a prefix), +QueryOptions}
               -> IndexedDirEntries {Entries: [DirEntry] | None, +QueryMeta}
KVS.ListKeys   KeyListRequest {Datacenter, Prefix, Seperator (sic, Consul's spelling), +QO}
               -> IndexedKeyList {Keys: [str], +QueryMeta}  (keys up to and including the
               first separator after the prefix, deduplicated, sorted)
"""

from __future__ import annotations

import logging
from typing import Any

from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods, access, get_str, mark_filtered
from agent.state.commands import MessageType
from agent.state.store import MAX_KV_VALUE_SIZE

log = logging.getLogger("consul")


def normalize_key(key: str) -> str:
    """KV keys as Consul stores them: without leading "/"."""
    return key.lstrip("/")


async def apply(ctx: Context, args: dict[str, Any]) -> bool:
    op = get_str(args, "Op")
    dir_ent = args.get("DirEnt")
    if not isinstance(dir_ent, dict):
        raise RPCError("Must provide DirEnt")
    dir_ent = dict(dir_ent)
    dir_ent["Key"] = normalize_key(get_str(dir_ent, "Key"))
    if not dir_ent["Key"] and op != "delete-tree":
        raise RPCError("Must provide key")
    if op not in ("set", "cas", "delete", "delete-cas", "delete-tree", "lock", "unlock"):
        raise RPCError(f"Invalid KVS operation '{op}'")
    access().need("key", "write-prefix" if op == "delete-tree" else "write", dir_ent["Key"])
    value = dir_ent.get("Value")
    if isinstance(value, str):
        value = dir_ent["Value"] = value.encode()
    if value is not None and not isinstance(value, bytes | bytearray):
        raise RPCError("Value must be bytes")
    if value is not None and len(value) > MAX_KV_VALUE_SIZE:
        raise RPCError(f"Value exceeds {MAX_KV_VALUE_SIZE} byte limit")
    if op == "lock":
        # Lock-delay is wall-clock per server, so it is enforced before raft (Consul).
        expires = ctx.state.kvs_lock_delay(dir_ent["Key"])
        if expires > ctx.state.now():
            log.warning(
                "consul.kvs: Rejecting lock of %s due to lock-delay until %.3f",
                dir_ent["Key"],
                expires,
            )
            return False
    result = await ctx.raft_apply(MessageType.KVS, {"Op": op, "DirEnt": dir_ent})
    return bool(result)


async def get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    key = normalize_key(get_str(args, "Key"))
    access().need("key", "read", key)

    def run() -> dict[str, Any]:
        idx, ent = ctx.state.kvs_get(key)
        if ent is None:
            return {"Index": idx, "Entries": None}
        return {"Index": ent["ModifyIndex"], "Entries": [ent]}

    return await ctx.blocking(args, ["kvs", "tombstones"], run, prefix=key)


async def list_entries(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    prefix = normalize_key(get_str(args, "Key"))
    acc = access()
    acc.need("key", "list", prefix)

    def run() -> dict[str, Any]:
        idx, ents = ctx.state.kvs_list(prefix)
        ents, dropped = acc.filter(ents or [], "key", lambda e: str(e["Key"]))
        return mark_filtered({"Index": idx, "Entries": ents or None}, dropped)

    return await ctx.blocking(args, ["kvs", "tombstones"], run, prefix=prefix)


async def list_keys(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    prefix = normalize_key(get_str(args, "Prefix"))
    sep = get_str(args, "Seperator") or get_str(args, "Separator")
    acc = access()
    acc.need("key", "list", prefix)

    def run() -> dict[str, Any]:
        idx, keys = ctx.state.kvs_list_keys(prefix, sep)
        keys, dropped = acc.filter(keys or [], "key", str)
        return mark_filtered({"Index": idx, "Keys": keys}, dropped)

    return await ctx.blocking(args, ["kvs", "tombstones"], run, prefix=prefix)


METHODS: Methods = {
    "KVS.Apply": (apply, Kind.WRITE),
    "KVS.Get": (get, Kind.READ),
    "KVS.List": (list_entries, Kind.READ),
    "KVS.ListKeys": (list_keys, Kind.READ),
}
