"""Snapshot.*: the whole state saved and restored (Consul's snapshot_endpoint.go).

Snapshot.Save          {+QO} -> {Data: bytes (StateFSM.snapshot() format), Index: raft applied
                       index, Term, +QueryMeta}
Snapshot.Restore       {Datacenter, Data: bytes, Index, Term} -> None   (applied through the
                       raft log as senate's SnapshotRestore command: every server replaces its
                       state at the same index)
"""

from __future__ import annotations

from typing import Any

from agent.codec import FrameError, packb, unpackb
from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods, access, as_bool
from agent.state.commands import MessageType
from agent.state.store import StateError, StateStore


def _need_snapshot() -> None:
    """Saving or restoring a snapshot needs `acl = "write"` (Consul's Snapshot check)."""
    acc = access()
    if not acc.disabled and not acc.can("acl", "write"):
        acc.need("acl", "write")


async def save(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _need_snapshot()
    if as_bool(args.get("RequireConsistent")):
        await ctx.verify_leader()
    reply: dict[str, Any] = {
        "Data": packb(ctx.state.snapshot_tables()),
        "Index": int(getattr(ctx.raft, "applied_index", 0) or ctx.state.max_index()),
        "Term": int(getattr(ctx.raft, "term", 0) or 0),
    }
    reply.update(ctx.query_meta())
    return reply


async def restore(ctx: Context, args: dict[str, Any]) -> None:
    _need_snapshot()
    data = args.get("Data")
    if not isinstance(data, bytes | bytearray):
        raise RPCError("Must provide snapshot Data")
    try:
        snap = unpackb(bytes(data))
        StateStore().restore_tables(snap)  # validate before it reaches the log
    except (FrameError, StateError) as exc:
        raise RPCError(f"failed to restore snapshot: {exc}") from exc
    await ctx.raft_apply(MessageType.SNAPSHOT_RESTORE, {"Data": bytes(data)})
    if ctx.session_timers.active:  # the restored sessions get fresh TTL timers
        ctx.session_timers.stop()
        ctx.session_timers.start()


METHODS: Methods = {
    "Snapshot.Save": (save, Kind.READ),
    "Snapshot.Restore": (restore, Kind.WRITE),
}
