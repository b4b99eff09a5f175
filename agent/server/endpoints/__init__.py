"""Server RPC endpoints: Consul's KVS, Txn, Session, Catalog, Health, Status, Coordinate,
Operator and Snapshot methods, answered from the replicated StateStore and written through
raft. One module per resource, each with its methods' request and reply shapes; what they
share (query options, blocking queries, raft writes) is in `base`.

`Endpoints.handle(method, args)` is the one entry point. The server's RPC listener on 8300 and
`Server.rpc` both call it with a dict of Consul's request struct (PascalCase fields); the
reply is a dict (or a scalar where Consul's reply is one).

Routing (Consul's `Server.forward`), in this order, for every method:

1. ``args["Datacenter"]`` set and not ours -> ``forward_dc(dc, method, args)``;
   a datacenter not in ``known_datacenters()`` -> RPCError("No path to datacenter").
2. LOCAL methods (Status.*, Catalog.ListDatacenters, Coordinate.ListDatacenters,
   Internal.EventFire) are answered
   by any server from its own view.
3. A READ with ``AllowStale`` -> answered locally on any server.
4. Not the leader -> ``forward_leader(method, args)``; no known leader ->
   RPCError("No cluster leader").
5. On the leader: writes go through ``raft.apply``; reads run locally. Default reads need
   a valid leader lease (else a ``verify_leader`` round); ``RequireConsistent`` always runs
   ``raft.verify_leader()`` first.

`on_leadership` arms the leader's timers that the methods feed (session TTLs, tombstone GC,
coordinate batches) on gaining leadership and disarms them on losing it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agent.errors import RPCError
from agent.server.endpoints import (
    catalog,
    config_entry,
    coordinate,
    health,
    internal,
    kvs,
    operator,
    session,
    snapshot,
    status,
    txn,
)
from agent.server.endpoints.base import Context, Handler, Kind, RaftLike, as_bool
from agent.state.store import StateStore

ERR_NO_LEADER = "No cluster leader"
ERR_NO_DC_PATH = "No path to datacenter"

RESOURCES = (
    kvs,
    txn,
    session,
    catalog,
    health,
    status,
    coordinate,
    operator,
    snapshot,
    internal,
    config_entry,
)

ForwardLeader = Callable[[str, dict[str, Any]], Awaitable[Any]]
ForwardDC = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class Endpoints(Context):
    """The server RPC methods of every resource module, routed as Consul's Server.forward."""

    def __init__(
        self,
        *,
        datacenter: str,
        state: StateStore,
        raft: RaftLike,
        forward_leader: ForwardLeader,
        forward_dc: ForwardDC,
        known_datacenters: Callable[[], list[str]],
        wan_coordinates: Callable[[], list[dict[str, Any]]] | None = None,
        server_name: Callable[[str], str | None] | None = None,
        user_event: Callable[[str, bytes], None] | None = None,
        apply_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            datacenter=datacenter,
            state=state,
            raft=raft,
            known_datacenters=known_datacenters,
            wan_coordinates=wan_coordinates,
            server_name=server_name,
            user_event=user_event,
            apply_timeout=apply_timeout,
        )
        self._forward_leader = forward_leader
        self._forward_dc = forward_dc
        self._methods: dict[str, tuple[Handler, Kind]] = {}
        for resource in RESOURCES:
            self._methods.update(resource.METHODS)

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def on_leadership(self, is_leader: bool) -> None:
        """On the leader, arms session TTL timers, the tombstone GC and the coordinate
        batcher; on losing leadership, disarms them. Needs a running event loop."""
        if is_leader:
            self.session_timers.start()
            self.tombstone_gc.start()
            self.coordinates.start()
        else:
            self.session_timers.stop()
            self.tombstone_gc.stop()
            self.coordinates.stop()

    async def handle(self, method: str, args: dict[str, Any]) -> Any:
        entry = self._methods.get(method)
        if entry is None:
            raise RPCError(f"rpc: can't find method {method}")
        handler, kind = entry
        if not isinstance(args, dict):
            raise RPCError(f"rpc: {method} takes a map of arguments")
        dc = args.get("Datacenter") or ""
        if not isinstance(dc, str):
            raise RPCError("Datacenter must be a string")
        if dc and dc != self.datacenter:
            if dc not in self.known_datacenters():
                raise RPCError(ERR_NO_DC_PATH)
            return await self._forward_dc(dc, method, args)
        if kind is Kind.LOCAL:
            return await handler(self, args)
        if kind is Kind.READ and as_bool(args.get("AllowStale")):
            return await handler(self, args)
        if not self.raft.is_leader():
            if self.raft.leader() is None:
                raise RPCError(ERR_NO_LEADER)
            return await self._forward_leader(method, args)
        return await handler(self, args)
