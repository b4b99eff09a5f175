"""Server RPC endpoints: Consul 0.7's KVS, Txn, Session, Catalog, Health, Status, Coordinate
and Operator methods, answered from the replicated StateStore and written through raft.

`Endpoints.handle(method, args)` is the one entry point. The agent's RPC server on 8300 and
`AgentAPI.rpc` both call it with a dict of Consul's request struct (PascalCase fields); the
reply is a dict (or a scalar where Consul's reply is one). Errors are `agent.api.RPCError`
with Consul's message.

Routing (Consul's `Server.forward`), in this order, for every method:

1. ``args["Datacenter"]`` set and not ours -> ``forward_dc(dc, method, args)``;
   a datacenter not in ``known_datacenters()`` -> RPCError("No path to datacenter").
2. A read with ``AllowStale`` -> answered locally on any server.
3. Not the leader -> ``forward_leader(method, args)``; no known leader ->
   RPCError("No cluster leader").
4. On the leader: writes go through ``raft.apply``; reads run locally. Default reads need
   a valid leader lease (else a ``verify_leader`` round); ``RequireConsistent`` always runs
   ``raft.verify_leader()`` first.

Status.*, Catalog.ListDatacenters and Coordinate.ListDatacenters are answered by any server
from its own view (no leader needed).

Leader-only duties: the agent registers ``Endpoints.on_leadership`` as a raft leadership
observer; on the leader it arms ``session_timers`` (SessionTimers: a session with a TTL is
destroyed through raft after TTL * 2 without a renewal) and ``tombstone_gc`` (TombstoneGC:
KV tombstones are reaped through raft after 15 min), and disarms both on losing leadership.

Constructor extras beyond docs/INTERNALS.md (all optional): ``wan_coordinates()`` for
Coordinate.ListDatacenters, ``server_name(address)`` for the Node column of
Operator.RaftGetConfiguration, ``apply_timeout`` for raft.apply. RaftLike additionally needs
``configuration()`` and ``remove_server(id)`` (RaftNode has both).

QueryOptions (on every read; all optional):
    Datacenter: str, MinQueryIndex: int, MaxQueryTime: float seconds (0 -> 300 s, capped at
    600 s, plus up to 1/16 random jitter, as Consul), AllowStale: bool, RequireConsistent: bool
QueryMeta (in every read reply):
    Index: int, KnownLeader: bool, LastContact: float seconds (0 on the leader)
A read with MinQueryIndex > 0 blocks until its result's Index > MinQueryIndex or the wait
ends, then returns the current result (a blocking query).

Shapes (records as Consul's structs; Value is bytes; LockDelay is nanoseconds as Consul's
time.Duration; TTL is a Go duration string like "15s"):

    DirEntry     {Key, Flags, Value, Session, LockIndex, CreateIndex, ModifyIndex}
    Node         {ID, Node, Address, TaggedAddresses: {str: str}, Meta: {str: str},
                  CreateIndex, ModifyIndex}
    NodeService  {ID, Service, Tags: [str], Address, Port, Meta: {str: str},
                  EnableTagOverride, CreateIndex, ModifyIndex}
    HealthCheck  {Node, CheckID, Name, Status ("passing"|"warning"|"critical"; a check
                  registered without Status is "critical", as Consul), Notes, Output,
                  ServiceID, ServiceName, CreateIndex, ModifyIndex}
    ServiceNode  {ID, Node, Address, TaggedAddresses, NodeMeta, ServiceID, ServiceName,
                  ServiceTags, ServiceAddress, ServicePort, ServiceMeta,
                  ServiceEnableTagOverride, CreateIndex, ModifyIndex}
    CheckServiceNode {Node: Node, Service: NodeService, Checks: [HealthCheck]}
    Session      {ID, Name, Node, Checks: [str], LockDelay: int ns, Behavior ("release"|
                  "delete"), TTL: str, CreateIndex, ModifyIndex}
    Coordinate   {Vec: [float], Error: float, Adjustment: float, Height: float}

Methods (request -> reply):

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
Txn.Apply      TxnRequest {Datacenter, Ops: [{KV: {Verb, DirEnt: DirEntry}}]}
               Verb: set | delete | delete-cas | delete-tree | cas | lock | unlock | get |
               get-tree | check-index | check-session   (at most 64 ops)
               -> TxnResponse {Results: [{KV: DirEntry}] | None, Errors: [{OpIndex, What}] | None}
               All or nothing: with any error, nothing is applied and Results is None.
               Result entries carry Value only for get / get-tree.
Session.Apply  SessionRequest {Datacenter, Op: "create" | "destroy", Session: Session}
               create: Node required; Checks default ["serfHealth"] (when absent), LockDelay
               default 15 s, Behavior default "release", TTL "" or within 10s..24h;
               -> str (the session's ID; the ID is generated by the server)
Session.Get    SessionSpecificRequest {Datacenter, Session, +QO} -> IndexedSessions
               {Sessions: [Session], +QueryMeta}   (empty list when not found)
Session.List   DCSpecificRequest {Datacenter, +QO} -> IndexedSessions
Session.NodeSessions  NodeSpecificRequest {Datacenter, Node, +QO} -> IndexedSessions
Session.Renew  SessionSpecificRequest {Datacenter, Session} -> IndexedSessions (empty list when
               the session does not exist; the leader resets its TTL timer)
Catalog.Register   RegisterRequest {Datacenter, ID, Node, Address, TaggedAddresses, NodeMeta,
                   Service: NodeService | None, Check: HealthCheck | None,
                   Checks: [HealthCheck] | None, SkipNodeUpdate: bool} -> None
Catalog.Deregister DeregisterRequest {Datacenter, Node, ServiceID, CheckID} -> None
                   (ServiceID: that service and its checks; CheckID: that check; neither: the
                   node with its services, checks, sessions and coordinate)
Catalog.ListDatacenters  {} -> [str]   (ours first, then the others sorted)
Catalog.ListNodes      DCSpecificRequest {Datacenter, NodeMetaFilters: {str: str}, +QO}
                       -> IndexedNodes {Nodes: [Node], +QueryMeta}  (sorted by Node)
Catalog.ListServices   DCSpecificRequest {+QO} -> IndexedServices
                       {Services: {name: [tag]}, +QueryMeta}
Catalog.ServiceNodes   ServiceSpecificRequest {Datacenter, ServiceName, ServiceTag,
                       TagFilter: bool, +QO} -> IndexedServiceNodes {ServiceNodes:
                       [ServiceNode], +QueryMeta}
Catalog.NodeServices   NodeSpecificRequest {Datacenter, Node, +QO} -> IndexedNodeServices
                       {NodeServices: {Node: Node, Services: {id: NodeService}} | None, +QM}
Health.ChecksInState   ChecksInStateRequest {Datacenter, State ("any"|"passing"|"warning"|
                       "critical"), +QO} -> IndexedHealthChecks {HealthChecks: [HealthCheck], +QM}
Health.NodeChecks      NodeSpecificRequest {Node, +QO} -> IndexedHealthChecks
Health.ServiceChecks   ServiceSpecificRequest {ServiceName, +QO} -> IndexedHealthChecks
Health.ServiceNodes    ServiceSpecificRequest {ServiceName, ServiceTag, TagFilter,
                       Passing: bool (senate: only nodes whose checks all pass), +QO}
                       -> IndexedCheckServiceNodes {Nodes: [CheckServiceNode], +QueryMeta}
Status.Leader          {} -> str  ("ip:port" of the leader, "" when none)
Status.Peers           {} -> [str]  (raft server addresses)
Coordinate.Update      CoordinateUpdateRequest {Datacenter, Node, Coord: Coordinate} -> None
                       (recorded; written with the next batch, see CoordinateBatcher)
Coordinate.ListDatacenters {} -> [{Datacenter, Coordinates: [{Node, Coord}]}]  (WAN)
Coordinate.ListNodes   DCSpecificRequest {+QO} -> IndexedCoordinates
                       {Coordinates: [{Node, Coord}], +QueryMeta}
Operator.RaftGetConfiguration DCSpecificRequest {+QO} -> RaftConfigurationResponse
                       {Servers: [{ID, Node, Address, Leader: bool, Voter: bool}], Index}
Operator.RaftRemovePeerByAddress RaftPeerByAddressRequest {Datacenter, Address} -> None
                       (unknown address -> 'address "x" was not found in the Raft configuration')
Operator.RaftTransferLeader {Datacenter, ID: optional server ID} -> {Success: bool}
                       (the leader hands leadership to ID, or to the most caught-up voter,
                       with TimeoutNow; as Consul 1.15's /v1/operator/raft/transfer-leader)
Snapshot.Save          {+QO} -> {Data: bytes (StateFSM.snapshot() format), Index: raft applied
                       index, Term, +QueryMeta}
Snapshot.Restore       {Datacenter, Data: bytes, Index, Term} -> None   (applied through the
                       raft log as senate's SnapshotRestore command: every server replaces its
                       state at the same index)

Session LockDelay on input follows Consul's FixupLockDelay: a float, or a number below 1000,
is seconds; a larger integer is nanoseconds. Stored and returned as integer nanoseconds.

Raft commands written by the endpoints (and by the agent's leader duties through
`agent.state.commands.encode_command`) are msgpack {"Type": MessageType, "Req": request}.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from agent.api import RPCError
from agent.codec import FrameError, packb, unpackb
from agent.durations import (
    SECOND,
    DurationError,
    format_duration,
    parse_duration,
)
from agent.state.commands import MessageType, encode_command
from agent.state.store import (
    DEFAULT_LOCK_DELAY_NS,
    HEALTH_ANY,
    HEALTH_STATES,
    MAX_KV_VALUE_SIZE,
    MAX_TXN_OPS,
    SESSION_DELETE,
    SESSION_RELEASE,
    StateError,
    StateStore,
)

log = logging.getLogger("consul")
#: Vivaldi's dimensionality, as every agent's (agent/gossip/coordinate.py, serf's default).
COORDINATE_DIMENSIONALITY = 8
session_log = logging.getLogger("consul.session")
coordinate_log = logging.getLogger("consul.coordinate")
operator_log = logging.getLogger("consul.operator")

#: Consul's blocking-query limits (consul/rpc.go): default and largest wait, and the jitter
#: fraction (up to wait/16 is added so that many waiters do not wake at once).
DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0
JITTER_FRACTION = 16
#: Session TTL bounds (config.SessionTTLMin, maxSessionTTL) and Consul's multiplier: a session
#: is destroyed after TTL * 2 without a renewal.
SESSION_TTL_MIN_NS = 10 * SECOND
SESSION_TTL_MAX_NS = 86400 * SECOND
SESSION_TTL_MULTIPLIER = 2

ERR_NO_LEADER = "No cluster leader"
ERR_NO_DC_PATH = "No path to datacenter"


class ServerLike(Protocol):
    """The raft ServerInfo fields the endpoints read."""

    id: str
    address: str
    suffrage: str


class RaftLike(Protocol):
    """What the endpoints need from raft; agent.raft.runner.RaftNode satisfies it."""

    async def apply(self, data: bytes, timeout: float = 10.0) -> Any: ...
    async def verify_leader(self) -> None: ...
    def lease_valid(self) -> bool: ...
    def is_leader(self) -> bool: ...
    def leader(self) -> Any: ...  # ServerInfo | None
    def last_contact(self) -> float | None: ...
    def configuration(self) -> list[Any]: ...  # list[ServerInfo]
    async def remove_server(self, id: str) -> None: ...
    async def transfer_leadership(self, to: str | None = None) -> None: ...


ForwardLeader = Callable[[str, dict[str, Any]], Awaitable[Any]]
ForwardDC = Callable[[str, str, dict[str, Any]], Awaitable[Any]]

#: Methods that change state: never answered by a follower, never stale.
_WRITES = frozenset(
    {
        "KVS.Apply",
        "Txn.Apply",
        "Session.Apply",
        "Session.Renew",
        "Catalog.Register",
        "Catalog.Deregister",
        "Coordinate.Update",
        "Operator.RaftRemovePeerByAddress",
        "Operator.RaftTransferLeader",
        "Snapshot.Restore",
    }
)
#: Methods every server answers from its own view, without a leader.
_LOCAL = frozenset(
    {"Status.Leader", "Status.Peers", "Catalog.ListDatacenters", "Coordinate.ListDatacenters"}
)


def _bool(v: Any) -> bool:
    return bool(v) and v not in ("false", "0")


def _str(args: dict[str, Any], name: str) -> str:
    v = args.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise RPCError(f"{name} must be a string")
    return v


def normalize_key(key: str) -> str:
    """KV keys as Consul stores them: without leading "/"."""
    return key.lstrip("/")


def lock_delay_ns(value: Any) -> int:
    """Consul's FixupLockDelay: seconds when a float or below 1000, else nanoseconds; a
    duration string ("15s") is parsed."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except DurationError as exc:
            raise RPCError(f"Invalid LockDelay '{value}': {exc}") from exc
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RPCError("LockDelay must be a duration")
    if isinstance(value, float) or value < 1000:
        return round(value * SECOND)
    return int(value)


class SessionTimers:
    """Leader-only session TTL expiry, as Consul's session_ttl.go.

    On gaining leadership the agent calls `start()` (arms a timer of TTL*2 for every session
    with a TTL); on losing it `stop()`. Session.Apply and Session.Renew reset timers. When a
    timer fires the session is destroyed through raft (a Session destroy command)."""

    def __init__(
        self,
        *,
        state: StateStore,
        apply: Callable[[bytes], Awaitable[Any]],
        multiplier: float = SESSION_TTL_MULTIPLIER,
    ) -> None:
        self._state = state
        self._apply = apply
        self._multiplier = multiplier
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.active = False

    def start(self) -> None:
        self.active = True
        for sess in self._state.session_list()[1]:
            if sess["TTL"]:
                self.reset(sess["ID"], sess["TTL"])

    def stop(self) -> None:
        self.active = False
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()

    def pending(self) -> list[str]:
        """IDs of sessions with an armed timer."""
        return sorted(self._timers)

    def reset(self, session_id: str, ttl: str | None = None) -> None:
        if not self.active:
            return
        if ttl is None:
            sess = self._state.session_get(session_id)[1]
            if sess is None:
                self.clear(session_id)
                return
            ttl = sess["TTL"]
        if not ttl:
            return
        try:
            seconds = parse_duration(ttl) / SECOND
        except DurationError:
            return
        if seconds <= 0:
            return
        self.clear(session_id)
        loop = asyncio.get_running_loop()
        self._timers[session_id] = loop.call_later(
            seconds * self._multiplier, self._expire, session_id
        )

    def clear(self, session_id: str) -> None:
        handle = self._timers.pop(session_id, None)
        if handle is not None:
            handle.cancel()

    def _expire(self, session_id: str) -> None:
        self._timers.pop(session_id, None)
        task = asyncio.get_running_loop().create_task(self._invalidate(session_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _invalidate(self, session_id: str) -> None:
        data = encode_command(MessageType.SESSION, {"Op": "destroy", "Session": {"ID": session_id}})
        # Consul's invalidateSession: a few attempts, then give up (the next leader re-arms).
        for attempt in range(6):
            if not self.active:
                return
            try:
                await self._apply(data)
                log.debug("session: session %s TTL expired", session_id)
                return
            except Exception as exc:  # raft errors are many; retry them all
                session_log.error("Invalidation failed: %s", exc)
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))


class _LeaderTask:
    """A background loop (`_run`) that runs only while this server leads: `start` on gaining
    leadership (idempotent), `stop` on losing it."""

    _task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.active:
            self._reset()
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._reset()

    def _reset(self) -> None:
        """What the loop keeps is dropped on start and stop."""

    async def _run(self) -> None:
        raise NotImplementedError


class TombstoneGC(_LeaderTask):
    """Leader-only reaping of KV tombstones, as Consul's TombstoneGC: a tombstone is kept for
    at least `ttl` seconds (Consul's TombstoneTTL, 15 min) so that blocking queries and
    lagging readers see deletes, then forgotten through a raft Tombstone reap command. Checked
    every `granularity` seconds."""

    def __init__(
        self,
        *,
        state: StateStore,
        apply: Callable[[bytes], Awaitable[Any]],
        ttl: float = 900.0,
        granularity: float = 30.0,
    ) -> None:
        self._state = state
        self._apply = apply
        self.ttl = ttl
        self.granularity = granularity
        self._hints: list[tuple[float, int]] = []

    def _reset(self) -> None:
        self._hints.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.hint(loop.time())
            await self.reap_due(loop.time())
            await asyncio.sleep(self.granularity)

    def hint(self, now: float) -> None:
        """Note the current tombstone index; it may be reaped once `ttl` has passed."""
        idx = self._state.table_index("tombstones")
        if idx and (not self._hints or self._hints[-1][1] < idx):
            self._hints.append((now, idx))

    async def reap_due(self, now: float) -> None:
        due = [idx for at, idx in self._hints if at <= now - self.ttl]
        if not due:
            return
        reap_index = max(due)
        try:
            await self._apply(
                encode_command(MessageType.TOMBSTONE, {"Op": "reap", "ReapIndex": reap_index})
            )
        except Exception as exc:  # retried on the next tick
            log.error("Failed to reap tombstones up to %d: %s", reap_index, exc)
            return
        self._hints = [(at, idx) for at, idx in self._hints if idx > reap_index]


class CoordinateBatcher(_LeaderTask):
    """Consul's coordinate batching: Coordinate.Update only keeps each node's newest
    coordinate; on the leader, every `period` (coordinate_update_period, 5 s) the pending ones
    go to raft in batches of `batch_size` (128), at most `max_batches` (5) per period, and the
    rest is discarded with Consul's warning. A coordinate is a hint that the next update
    replaces, so thousands of agents cost a few raft writes per period, not one each."""

    def __init__(
        self,
        apply: Callable[[bytes], Awaitable[Any]],
        period: float = 5.0,
        batch_size: int = 128,
        max_batches: int = 5,
    ) -> None:
        self._apply = apply
        self.period = period
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.pending: dict[str, dict[str, Any]] = {}

    def _reset(self) -> None:
        # leadership gained or lost: what was pending is dropped (the nodes send again)
        self.pending.clear()

    def update(self, node: str, coord: dict[str, Any]) -> None:
        self.pending[node] = coord

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.flush()
            except Exception as exc:
                coordinate_log.warning("Batch update failed: %s", exc)

    async def flush(self) -> None:
        """Write what is pending now, in batches (raises on the first failed batch)."""
        pending, self.pending = self.pending, {}
        limit = self.batch_size * self.max_batches
        if len(pending) > limit:
            coordinate_log.warning("Discarded %d coordinate updates", len(pending) - limit)
        updates = [{"Node": n, "Coord": c} for n, c in list(pending.items())[:limit]]
        for start in range(0, len(updates), self.batch_size):
            batch = updates[start : start + self.batch_size]
            result = await self._apply(
                encode_command(MessageType.COORDINATE_BATCH_UPDATE, {"Updates": batch})
            )
            if isinstance(result, BaseException):
                raise result


class Endpoints:
    """The server RPC methods of module docstring, routed as Consul's Server.forward."""

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
        apply_timeout: float = 10.0,
    ) -> None:
        self.datacenter = datacenter
        self.state = state
        self.raft = raft
        self._forward_leader = forward_leader
        self._forward_dc = forward_dc
        self._known_datacenters = known_datacenters
        self._wan_coordinates = wan_coordinates
        self._server_name = server_name
        self._apply_timeout = apply_timeout
        self.session_timers = SessionTimers(state=state, apply=self._apply_bytes)
        self.tombstone_gc = TombstoneGC(state=state, apply=self._apply_bytes)
        self.coordinates = CoordinateBatcher(self._apply_bytes)
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "KVS.Apply": self._kvs_apply,
            "KVS.Get": self._kvs_get,
            "KVS.List": self._kvs_list,
            "KVS.ListKeys": self._kvs_list_keys,
            "Txn.Apply": self._txn_apply,
            "Session.Apply": self._session_apply,
            "Session.Get": self._session_get,
            "Session.List": self._session_list,
            "Session.NodeSessions": self._node_sessions,
            "Session.Renew": self._session_renew,
            "Catalog.Register": self._catalog_register,
            "Catalog.Deregister": self._catalog_deregister,
            "Catalog.ListDatacenters": self._list_datacenters,
            "Catalog.ListNodes": self._list_nodes,
            "Catalog.ListServices": self._list_services,
            "Catalog.ServiceNodes": self._catalog_service_nodes,
            "Catalog.NodeServices": self._node_services,
            "Health.ChecksInState": self._checks_in_state,
            "Health.NodeChecks": self._node_checks,
            "Health.ServiceChecks": self._service_checks,
            "Health.ServiceNodes": self._health_service_nodes,
            "Status.Leader": self._status_leader,
            "Status.Peers": self._status_peers,
            "Coordinate.Update": self._coordinate_update,
            "Coordinate.ListDatacenters": self._coordinate_datacenters,
            "Coordinate.ListNodes": self._coordinate_nodes,
            "Operator.RaftGetConfiguration": self._raft_configuration,
            "Operator.RaftRemovePeerByAddress": self._raft_remove_peer,
            "Operator.RaftTransferLeader": self._raft_transfer_leader,
            "Snapshot.Save": self._snapshot_save,
            "Snapshot.Restore": self._snapshot_restore,
        }

    def methods(self) -> list[str]:
        return sorted(self._handlers)

    def on_leadership(self, is_leader: bool) -> None:
        """Leadership observer: on the leader, arms session TTL timers and the tombstone GC;
        on losing leadership, disarms both. Needs a running event loop."""
        if is_leader:
            self.session_timers.start()
            self.tombstone_gc.start()
            self.coordinates.start()
        else:
            self.session_timers.stop()
            self.tombstone_gc.stop()
            self.coordinates.stop()

    # ------------------------------------------------------------------------- routing

    async def handle(self, method: str, args: dict[str, Any]) -> Any:
        handler = self._handlers.get(method)
        if handler is None:
            raise RPCError(f"rpc: can't find method {method}")
        if not isinstance(args, dict):
            raise RPCError(f"rpc: {method} takes a map of arguments")
        dc = args.get("Datacenter") or ""
        if not isinstance(dc, str):
            raise RPCError("Datacenter must be a string")
        if dc and dc != self.datacenter:
            if dc not in self._known_datacenters():
                raise RPCError(ERR_NO_DC_PATH)
            return await self._forward_dc(dc, method, args)
        if method in _LOCAL:
            return await handler(args)
        if method not in _WRITES and _bool(args.get("AllowStale")):
            return await handler(args)
        if not self.raft.is_leader():
            if self.raft.leader() is None:
                raise RPCError(ERR_NO_LEADER)
            return await self._forward_leader(method, args)
        return await handler(args)

    async def _apply_bytes(self, data: bytes) -> Any:
        return await self.raft.apply(data, self._apply_timeout)

    async def _raft_apply(self, msg_type: MessageType, req: dict[str, Any]) -> Any:
        try:
            result = await self.raft.apply(encode_command(msg_type, req), self._apply_timeout)
        except RPCError:
            raise
        except TimeoutError as exc:
            raise RPCError("timed out enqueuing operation") from exc
        except Exception as exc:
            if type(exc).__name__ == "NotLeaderError":
                raise RPCError("node is not the leader") from exc
            raise RPCError(str(exc) or type(exc).__name__) from exc
        if isinstance(result, BaseException):
            raise RPCError(str(result))
        return result

    # ---------------------------------------------------------------------------- reads

    def _query_meta(self) -> dict[str, Any]:
        if self.raft.is_leader():
            return {"KnownLeader": True, "LastContact": 0.0}
        contact = self.raft.last_contact()
        return {
            "KnownLeader": self.raft.leader() is not None,
            "LastContact": float(contact) if contact is not None else 0.0,
        }

    async def _verify_leader(self) -> None:
        try:
            await self.raft.verify_leader()
        except TimeoutError as exc:
            raise RPCError("timed out verifying leadership") from exc
        except Exception as exc:
            if type(exc).__name__ == "NotLeaderError":
                raise RPCError("node is not the leader") from exc
            raise RPCError(str(exc) or type(exc).__name__) from exc

    async def _blocking(
        self,
        args: dict[str, Any],
        tables: Iterable[str],
        run: Callable[[], dict[str, Any]],
        prefix: str | None = None,
    ) -> dict[str, Any]:
        """Consul's blockingRPC: run the query; while its Index is not past MinQueryIndex,
        wait for a change to `tables` (or the wait to end) and run it again."""
        try:
            min_index = int(args.get("MinQueryIndex") or 0)
            wait = float(args.get("MaxQueryTime") or 0)
        except (TypeError, ValueError, OverflowError) as exc:
            raise RPCError("MinQueryIndex and MaxQueryTime must be numbers") from exc
        if not math.isfinite(wait):
            wait = 0.0
        stale = _bool(args.get("AllowStale"))
        consistent = _bool(args.get("RequireConsistent"))
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        watch = None
        deadline = 0.0
        if min_index > 0:
            if wait > MAX_QUERY_TIME:
                wait = MAX_QUERY_TIME
            elif wait <= 0:
                wait = DEFAULT_QUERY_TIME
            wait += random.uniform(0, wait / JITTER_FRACTION)
            deadline = loop.time() + wait
            watch = self.state.watch(tables, changed.set, prefix=prefix)
        try:
            while True:
                changed.clear()
                meta = self._query_meta()
                if consistent or (
                    not stale and self.raft.is_leader() and not self.raft.lease_valid()
                ):
                    await self._verify_leader()
                reply = run()
                reply["Index"] = max(int(reply.get("Index") or 0), 1)
                reply.update(meta)
                if min_index <= 0 or reply["Index"] > min_index:
                    return reply
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return reply
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    return reply
        finally:
            if watch is not None:
                watch.cancel()

    # ------------------------------------------------------------------------------- KV

    async def _kvs_apply(self, args: dict[str, Any]) -> bool:
        op = _str(args, "Op")
        dir_ent = args.get("DirEnt")
        if not isinstance(dir_ent, dict):
            raise RPCError("Must provide DirEnt")
        dir_ent = dict(dir_ent)
        dir_ent["Key"] = normalize_key(_str(dir_ent, "Key"))
        if not dir_ent["Key"] and op != "delete-tree":
            raise RPCError("Must provide key")
        if op not in ("set", "cas", "delete", "delete-cas", "delete-tree", "lock", "unlock"):
            raise RPCError(f"Invalid KVS operation '{op}'")
        value = dir_ent.get("Value")
        if isinstance(value, str):
            value = dir_ent["Value"] = value.encode()
        if value is not None and not isinstance(value, bytes | bytearray):
            raise RPCError("Value must be bytes")
        if value is not None and len(value) > MAX_KV_VALUE_SIZE:
            raise RPCError(f"Value exceeds {MAX_KV_VALUE_SIZE} byte limit")
        if op == "lock":
            # Lock-delay is wall-clock per server, so it is enforced before raft (Consul).
            expires = self.state.kvs_lock_delay(dir_ent["Key"])
            if expires > self.state.now():
                log.warning(
                    "consul.kvs: Rejecting lock of %s due to lock-delay until %.3f",
                    dir_ent["Key"],
                    expires,
                )
                return False
        result = await self._raft_apply(MessageType.KVS, {"Op": op, "DirEnt": dir_ent})
        return bool(result)

    async def _kvs_get(self, args: dict[str, Any]) -> dict[str, Any]:
        key = normalize_key(_str(args, "Key"))

        def run() -> dict[str, Any]:
            idx, ent = self.state.kvs_get(key)
            if ent is None:
                return {"Index": idx, "Entries": None}
            return {"Index": ent["ModifyIndex"], "Entries": [ent]}

        return await self._blocking(args, ["kvs", "tombstones"], run, prefix=key)

    async def _kvs_list(self, args: dict[str, Any]) -> dict[str, Any]:
        prefix = normalize_key(_str(args, "Key"))

        def run() -> dict[str, Any]:
            idx, ents = self.state.kvs_list(prefix)
            return {"Index": idx, "Entries": ents or None}

        return await self._blocking(args, ["kvs", "tombstones"], run, prefix=prefix)

    async def _kvs_list_keys(self, args: dict[str, Any]) -> dict[str, Any]:
        prefix = normalize_key(_str(args, "Prefix"))
        sep = _str(args, "Seperator") or _str(args, "Separator")

        def run() -> dict[str, Any]:
            idx, keys = self.state.kvs_list_keys(prefix, sep)
            return {"Index": idx, "Keys": keys}

        return await self._blocking(args, ["kvs", "tombstones"], run, prefix=prefix)

    async def _txn_apply(self, args: dict[str, Any]) -> dict[str, Any]:
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
        result = await self._raft_apply(MessageType.TXN, {"Ops": clean})
        return dict(result)

    # ------------------------------------------------------------------------- sessions

    async def _session_apply(self, args: dict[str, Any]) -> str:
        op = _str(args, "Op")
        raw = args.get("Session")
        sess: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        if op == "destroy":
            if not sess.get("ID"):
                raise RPCError("Must provide ID")
            await self._raft_apply(MessageType.SESSION, {"Op": "destroy", "Session": sess})
            self.session_timers.clear(str(sess["ID"]))
            return str(sess["ID"])
        if op != "create":
            raise RPCError(f"Invalid Session operation '{op}'")
        if not sess.get("Node"):
            raise RPCError("Must provide Node")
        behavior = sess.get("Behavior") or SESSION_RELEASE
        if behavior not in (SESSION_RELEASE, SESSION_DELETE):
            raise RPCError(f"Invalid Behavior setting '{behavior}'")
        sess["Behavior"] = behavior
        ttl = sess.get("TTL") or ""
        if not isinstance(ttl, str):
            raise RPCError('Session TTL must be a duration string such as "15s"')
        if ttl:
            try:
                ttl_ns = parse_duration(ttl)
            except DurationError as exc:
                raise RPCError(f"Session TTL '{ttl}' invalid: {exc}") from exc
            if ttl_ns != 0 and not SESSION_TTL_MIN_NS <= ttl_ns <= SESSION_TTL_MAX_NS:
                raise RPCError(
                    f"Invalid Session TTL '{ttl_ns}', must be between "
                    f"[{format_duration(SESSION_TTL_MIN_NS)}="
                    f"{format_duration(SESSION_TTL_MAX_NS)}]"
                )
        sess["TTL"] = ttl
        if "Checks" not in sess or sess["Checks"] is None:
            sess["Checks"] = ["serfHealth"]
        if "LockDelay" not in sess or sess["LockDelay"] is None:
            sess["LockDelay"] = DEFAULT_LOCK_DELAY_NS
        sess["LockDelay"] = lock_delay_ns(sess["LockDelay"])
        while True:
            sid = str(uuid.uuid4())
            if self.state.session_get(sid)[1] is None:
                break
        sess["ID"] = sid
        result = await self._raft_apply(MessageType.SESSION, {"Op": "create", "Session": sess})
        if ttl:
            self.session_timers.reset(sid, ttl)
        return str(result)

    async def _session_get(self, args: dict[str, Any]) -> dict[str, Any]:
        sid = _str(args, "Session")

        def run() -> dict[str, Any]:
            idx, sess = self.state.session_get(sid)
            return {"Index": idx, "Sessions": [sess] if sess else []}

        return await self._blocking(args, ["sessions"], run)

    async def _session_list(self, args: dict[str, Any]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            idx, sessions = self.state.session_list()
            return {"Index": idx, "Sessions": sessions}

        return await self._blocking(args, ["sessions"], run)

    async def _node_sessions(self, args: dict[str, Any]) -> dict[str, Any]:
        node = _str(args, "Node")

        def run() -> dict[str, Any]:
            idx, sessions = self.state.node_sessions(node)
            return {"Index": idx, "Sessions": sessions}

        return await self._blocking(args, ["sessions"], run)

    async def _session_renew(self, args: dict[str, Any]) -> dict[str, Any]:
        sid = _str(args, "Session")
        idx, sess = self.state.session_get(sid)
        if sess is not None:
            self.session_timers.reset(sid, sess["TTL"])
        reply: dict[str, Any] = {"Index": max(idx, 1), "Sessions": [sess] if sess else []}
        reply.update(self._query_meta())
        return reply

    # -------------------------------------------------------------------------- catalog

    async def _catalog_register(self, args: dict[str, Any]) -> None:
        node = _str(args, "Node")
        address = _str(args, "Address")
        if not node or not address:
            raise RPCError("Must provide node and address")
        req = {k: v for k, v in args.items() if k not in _QUERY_FIELDS}
        service = req.get("Service")
        if service is not None:
            if not isinstance(service, dict):
                raise RPCError("Service must be a map")
            service = dict(service)
            if not service.get("ID") and service.get("Service"):
                service["ID"] = service["Service"]
            if service.get("ID") and not service.get("Service"):
                raise RPCError("Must provide service name with ID")
            req["Service"] = service
        checks = list(req.get("Checks") or [])
        if isinstance(req.get("Check"), dict):
            checks.append(req["Check"])
        req["Check"] = None
        fixed = []
        for check in checks:
            if not isinstance(check, dict):
                raise RPCError("Checks must be maps")
            check = dict(check)
            if not check.get("CheckID") and check.get("Name"):
                check["CheckID"] = check["Name"]
            if not check.get("Node"):
                check["Node"] = node
            status = check.get("Status") or ""
            if status and status not in (*HEALTH_STATES, "unknown"):
                raise RPCError(f"Invalid check status '{status}'")
            fixed.append(check)
        req["Checks"] = fixed
        await self._raft_apply(MessageType.REGISTER, req)

    async def _catalog_deregister(self, args: dict[str, Any]) -> None:
        if not _str(args, "Node"):
            raise RPCError("Must provide node")
        req = {
            "Node": args["Node"],
            "ServiceID": _str(args, "ServiceID"),
            "CheckID": _str(args, "CheckID"),
        }
        await self._raft_apply(MessageType.DEREGISTER, req)

    async def _list_datacenters(self, args: dict[str, Any]) -> list[str]:
        others = sorted(set(self._known_datacenters()) - {self.datacenter})
        return [self.datacenter, *others]

    async def _list_nodes(self, args: dict[str, Any]) -> dict[str, Any]:
        meta = args.get("NodeMetaFilters") or None
        if meta is not None and not isinstance(meta, dict):
            raise RPCError("NodeMetaFilters must be a map")

        def run() -> dict[str, Any]:
            idx, nodes = self.state.nodes(meta)
            return {"Index": idx, "Nodes": nodes}

        return await self._blocking(args, ["nodes"], run)

    async def _list_services(self, args: dict[str, Any]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            idx, services = self.state.services()
            return {"Index": idx, "Services": services}

        return await self._blocking(args, ["services"], run)

    def _service_args(self, args: dict[str, Any]) -> tuple[str, str | None]:
        name = _str(args, "ServiceName")
        if not name:
            raise RPCError("Must provide service name")
        tag = _str(args, "ServiceTag") if _bool(args.get("TagFilter")) else None
        return name, tag

    async def _catalog_service_nodes(self, args: dict[str, Any]) -> dict[str, Any]:
        name, tag = self._service_args(args)

        def run() -> dict[str, Any]:
            idx, nodes = self.state.service_nodes(name, tag)
            return {"Index": idx, "ServiceNodes": nodes}

        return await self._blocking(args, ["nodes", "services"], run)

    async def _node_services(self, args: dict[str, Any]) -> dict[str, Any]:
        node = _str(args, "Node")
        if not node:
            raise RPCError("Must provide node")

        def run() -> dict[str, Any]:
            idx, services = self.state.node_services(node)
            return {"Index": idx, "NodeServices": services}

        return await self._blocking(args, ["nodes", "services"], run)

    # --------------------------------------------------------------------------- health

    async def _checks_in_state(self, args: dict[str, Any]) -> dict[str, Any]:
        state = _str(args, "State")
        if state not in (HEALTH_ANY, "unknown", *HEALTH_STATES):
            raise RPCError(f"Invalid check state '{state}'")

        def run() -> dict[str, Any]:
            idx, checks = self.state.checks_in_state(state)
            return {"Index": idx, "HealthChecks": checks}

        return await self._blocking(args, ["checks"], run)

    async def _node_checks(self, args: dict[str, Any]) -> dict[str, Any]:
        node = _str(args, "Node")
        if not node:
            raise RPCError("Must provide node")

        def run() -> dict[str, Any]:
            idx, checks = self.state.node_checks(node)
            return {"Index": idx, "HealthChecks": checks}

        return await self._blocking(args, ["checks"], run)

    async def _service_checks(self, args: dict[str, Any]) -> dict[str, Any]:
        name = _str(args, "ServiceName")
        if not name:
            raise RPCError("Must provide service name")

        def run() -> dict[str, Any]:
            idx, checks = self.state.service_checks(name)
            return {"Index": idx, "HealthChecks": checks}

        return await self._blocking(args, ["checks"], run)

    async def _health_service_nodes(self, args: dict[str, Any]) -> dict[str, Any]:
        name, tag = self._service_args(args)
        passing = _bool(args.get("Passing"))

        def run() -> dict[str, Any]:
            idx, nodes = self.state.check_service_nodes(name, tag, passing)
            return {"Index": idx, "Nodes": nodes}

        return await self._blocking(args, ["nodes", "services", "checks"], run)

    # ------------------------------------------------------------------ status, operator

    async def _status_leader(self, args: dict[str, Any]) -> str:
        leader = self.raft.leader()
        return str(leader.address) if leader is not None else ""

    async def _status_peers(self, args: dict[str, Any]) -> list[str]:
        return [str(s.address) for s in self.raft.configuration()]

    async def _raft_configuration(self, args: dict[str, Any]) -> dict[str, Any]:
        if _bool(args.get("RequireConsistent")):
            await self._verify_leader()
        leader = self.raft.leader()
        leader_addr = leader.address if leader is not None else None
        servers = []
        for s in self.raft.configuration():
            name = self._server_name(s.address) if self._server_name else None
            servers.append(
                {
                    "ID": s.id,
                    "Node": name or "(unknown)",
                    "Address": s.address,
                    "Leader": s.address == leader_addr,
                    "Voter": s.suffrage == "Voter",
                }
            )
        index = int(getattr(self.raft, "commit_index", 0) or 0)
        return {"Servers": servers, "Index": index}

    async def _raft_remove_peer(self, args: dict[str, Any]) -> None:
        address = _str(args, "Address")
        for s in self.raft.configuration():
            if s.address == address:
                try:
                    await self.raft.remove_server(s.id)
                except Exception as exc:
                    raise RPCError(str(exc) or type(exc).__name__) from exc
                operator_log.warning("Removed Raft peer %s", address)
                return
        raise RPCError(f'address "{address}" was not found in the Raft configuration')

    async def _raft_transfer_leader(self, args: dict[str, Any]) -> dict[str, Any]:
        target = _str(args, "ID") or None
        voters = [s for s in self.raft.configuration() if s.suffrage == "Voter"]
        if target is not None and not any(s.id == target for s in voters):
            raise RPCError(f'cannot find peer with ID "{target}" among the voters')
        if len(voters) < 2:
            raise RPCError("cannot transfer leadership: no other voter in the configuration")
        try:
            await self.raft.transfer_leadership(target)
        except Exception as exc:
            raise RPCError(f"failed to transfer leadership: {exc or type(exc).__name__}") from exc
        operator_log.info("leadership transferred (requested target: %s)", target or "any")
        return {"Success": True}

    # ------------------------------------------------------------------------- snapshots

    async def _snapshot_save(self, args: dict[str, Any]) -> dict[str, Any]:
        if _bool(args.get("RequireConsistent")):
            await self._verify_leader()
        reply: dict[str, Any] = {
            "Data": packb(self.state.snapshot_tables()),
            "Index": int(getattr(self.raft, "applied_index", 0) or self.state.max_index()),
            "Term": int(getattr(self.raft, "term", 0) or 0),
        }
        reply.update(self._query_meta())
        return reply

    async def _snapshot_restore(self, args: dict[str, Any]) -> None:
        data = args.get("Data")
        if not isinstance(data, bytes | bytearray):
            raise RPCError("Must provide snapshot Data")
        try:
            snap = unpackb(bytes(data))
            StateStore().restore_tables(snap)  # validate before it reaches the log
        except (FrameError, StateError) as exc:
            raise RPCError(f"failed to restore snapshot: {exc}") from exc
        await self._raft_apply(MessageType.SNAPSHOT_RESTORE, {"Data": bytes(data)})
        if self.session_timers.active:  # the restored sessions get fresh TTL timers
            self.session_timers.stop()
            self.session_timers.start()

    # ----------------------------------------------------------------------- coordinates

    async def _coordinate_update(self, args: dict[str, Any]) -> None:
        node = _str(args, "Node")
        coord = args.get("Coord")
        if not node:
            raise RPCError("Must provide node")
        if not isinstance(coord, dict) or not isinstance(coord.get("Vec"), list):
            raise RPCError("rejected bad coordinate: missing Vec")
        if len(coord["Vec"]) != COORDINATE_DIMENSIONALITY:
            # Consul's IsCompatibleWith: distances need vectors of the servers' own size
            raise RPCError(f"rejected bad coordinate: {coord!r}")
        numbers = [*coord["Vec"], *(coord.get(f, 0.0) for f in ("Error", "Adjustment", "Height"))]
        if not all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in numbers
        ):
            raise RPCError(f"rejected bad coordinate: {coord!r}")
        coord = {
            "Vec": [float(x) for x in coord["Vec"]],
            "Error": float(coord.get("Error", 0.0)),
            "Adjustment": float(coord.get("Adjustment", 0.0)),
            "Height": float(coord.get("Height", 0.0)),
        }
        self.coordinates.update(node, coord)  # written with the next batch (CoordinateBatcher)

    async def _coordinate_datacenters(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        if self._wan_coordinates is not None:
            return self._wan_coordinates()
        return []

    async def _coordinate_nodes(self, args: dict[str, Any]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            idx, coords = self.state.coordinates()
            return {"Index": idx, "Coordinates": coords}

        return await self._blocking(args, ["coordinates"], run)


_QUERY_FIELDS = frozenset(
    {"MinQueryIndex", "MaxQueryTime", "AllowStale", "RequireConsistent", "Token", "Datacenter"}
)
