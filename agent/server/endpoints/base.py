"""What every server RPC method shares: the state it answers from, the raft it writes
through, the leader's timers it tells about writes, and Consul's blocking-query loop.

Requests and replies are dicts with Consul's struct field names (PascalCase). Errors are
`agent.api.RPCError` with Consul's message.

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

Raft commands written by the endpoints (and by the leader's duties, through
`agent.state.commands.encode_command`) are msgpack {"Type": MessageType, "Req": request}.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import random
from collections.abc import Awaitable, Callable, Iterable
from enum import Enum
from typing import Any, Protocol

from agent.acl.resolver import DISABLED, Access, static_access
from agent.errors import RPCError
from agent.raft.runner import NotLeaderError, ProposalRefused
from agent.schema import SchemaError, Struct, check
from agent.server.autopilot import DEFAULT_CONFIG as AUTOPILOT_DEFAULTS
from agent.server.leader import CoordinateBatcher, SessionTimers, TombstoneGC
from agent.state.commands import MessageType, encode_command
from agent.state.store import StateStore

#: Consul's blocking-query limits (consul/rpc.go): default and largest wait, and the jitter
#: fraction (up to wait/16 is added so that many waiters do not wake at once).
DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0
JITTER_FRACTION = 16


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


class Kind(Enum):
    """How a method is routed (see `Endpoints.handle`)."""

    READ = "read"  # on the leader; on any server with AllowStale
    WRITE = "write"  # on the leader, through raft; never stale
    LOCAL = "local"  # any server answers from its own view, without a leader


Handler = Callable[["Context", dict[str, Any]], Awaitable[Any]]
#: A resource module's table: "Resource.Method" -> (handler, kind).
Methods = dict[str, tuple[Handler, Kind]]


#: who the request being handled is (set by `Endpoints.handle` for each request; a task that
#: never had it set denies everything)
_ACCESS: contextvars.ContextVar[Access | None] = contextvars.ContextVar(
    "senate_rpc_access", default=None
)
_DENY_ALL = static_access("deny")

#: whether the request being handled has written through raft (set by `Endpoints.handle` per
#: request): until it has, a refused proposal leaves it without effect, so it may go again
_WROTE: contextvars.ContextVar[bool] = contextvars.ContextVar("senate_rpc_wrote", default=True)

#: Consul's structs.ErrNoLeader: the error agents wait out (rpc_hold_timeout) and retry
ERR_NO_LEADER = "No cluster leader"


def access() -> Access:
    """The ACL access of the request this task is handling."""
    return _ACCESS.get() or _DENY_ALL


def mark_filtered(reply: dict[str, Any], dropped: bool) -> dict[str, Any]:
    """QueryMeta.ResultsFilteredByACLs: set when the token's ACLs left something out."""
    if dropped:
        reply["ResultsFilteredByACLs"] = True
    return reply


def as_bool(v: Any) -> bool:
    return bool(v) and v not in ("false", "0")


#: how a request that does not fit its struct is refused (a 400 at the HTTP layer)
DECODE_FAILED = "Request decode failed: "


def checked(args: dict[str, Any], spec: Struct) -> None:
    """Refuse `args` unless it fits `spec` (agent/structs.py), before it reaches the log."""
    try:
        check(args, spec)
    except SchemaError as exc:
        raise RPCError(DECODE_FAILED + str(exc)) from None


def get_str(args: dict[str, Any], name: str) -> str:
    v = args.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise RPCError(f"{DECODE_FAILED}{name}: expected a string, got {v!r}")
    return v


def not_leader(exc: Exception) -> RPCError:
    """The RPCError for a raft failure, in Consul's words."""
    if isinstance(exc, NotLeaderError):
        return RPCError("node is not the leader")
    return RPCError(str(exc) or type(exc).__name__)


class Context:
    """The server-side state every method handler is given."""

    def __init__(
        self,
        *,
        datacenter: str,
        state: StateStore,
        raft: RaftLike,
        known_datacenters: Callable[[], list[str]],
        wan_coordinates: Callable[[], list[dict[str, Any]]] | None = None,
        server_name: Callable[[str, str], str | None] | None = None,
        server_tags: Callable[[str, str], dict[str, str] | None] | None = None,
        user_event: Callable[[str, bytes], None] | None = None,
        apply_timeout: float = 10.0,
        acl_enabled: bool = False,
        primary_datacenter: str = "",
        data_dir: str = "",
        forward_dc: Callable[[str, str, dict[str, Any]], Awaitable[Any]] | None = None,
        datacenters_by_distance: Callable[[], list[str]] | None = None,
    ) -> None:
        self.datacenter = datacenter
        #: call a method in another datacenter (dc, method, args), as Consul's forwardDC
        self.forward_dc = forward_dc
        #: every known datacenter, nearest first by the servers' WAN coordinates (ours too)
        self.datacenters_by_distance = datacenters_by_distance
        #: ACLs on (acl.enabled): the ACL.* methods work and every method enforces
        self.acl_enabled = acl_enabled
        self.primary_datacenter = primary_datacenter or datacenter
        self.data_dir = data_dir
        #: the gossip tags of the LAN server member whose raft address is the argument (its
        #: node ID and raft_vsn, for the raft configuration an operator sees)
        self.server_tags = server_tags
        #: broadcast a serf user event into this datacenter's LAN pool (Internal.EventFire)
        self.user_event = user_event
        self.state = state
        self.raft = raft
        self.known_datacenters = known_datacenters
        self.wan_coordinates = wan_coordinates
        self.server_name = server_name
        self.apply_timeout = apply_timeout
        self.session_timers = SessionTimers(state=state, apply=self.apply_bytes)
        self.tombstone_gc = TombstoneGC(state=state, apply=self.apply_bytes)
        self.coordinates = CoordinateBatcher(self.apply_bytes)
        #: autopilot's configuration until an operator sets one (the agent's `autopilot`
        #: block over Consul's defaults), and the leader's latest server health
        self.autopilot_defaults: dict[str, Any] = dict(AUTOPILOT_DEFAULTS)
        self.autopilot_health: Callable[[], dict[str, Any] | None] | None = None

    async def resolve_access(self, secret: str) -> Access:
        """The access a request carrying `secret` has; the Endpoints resolve tokens."""
        return static_access("deny") if self.acl_enabled else DISABLED

    def _reset_file(self) -> str:
        return os.path.join(self.data_dir, "acl-bootstrap-reset") if self.data_dir else ""

    def bootstrap_reset_index(self) -> int:
        """The index an operator wrote into <data_dir>/acl-bootstrap-reset to allow one more
        bootstrap (Consul's reset procedure); 0 when there is none."""
        path = self._reset_file()
        if not path:
            return 0
        try:
            with open(path, encoding="ascii") as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def bootstrap_reset_done(self) -> None:
        path = self._reset_file()
        if path:
            with contextlib.suppress(OSError):
                os.remove(path)

    async def apply_bytes(self, data: bytes) -> Any:
        return await self.raft.apply(data, self.apply_timeout)

    async def raft_apply(self, msg_type: MessageType, req: dict[str, Any]) -> Any:
        try:
            result = await self.raft.apply(encode_command(msg_type, req), self.apply_timeout)
        except RPCError:
            raise
        except TimeoutError as exc:
            raise RPCError("timed out enqueuing operation") from exc
        except ProposalRefused as exc:
            if not _WROTE.get():
                # Nothing of this request is written (leadership moved, or is being handed
                # over, since it was routed here): the agent sends it again, to the leader.
                raise RPCError(ERR_NO_LEADER) from exc
            raise not_leader(exc) from exc
        except Exception as exc:
            raise not_leader(exc) from exc
        _WROTE.set(True)
        if isinstance(result, BaseException):
            raise RPCError(str(result))
        return result

    def query_meta(self) -> dict[str, Any]:
        if self.raft.is_leader():
            return {"KnownLeader": True, "LastContact": 0.0}
        contact = self.raft.last_contact()
        return {
            "KnownLeader": self.raft.leader() is not None,
            "LastContact": float(contact) if contact is not None else 0.0,
        }

    async def verify_leader(self) -> None:
        try:
            await self.raft.verify_leader()
        except TimeoutError as exc:
            raise RPCError("timed out verifying leadership") from exc
        except Exception as exc:
            raise not_leader(exc) from exc

    async def query(
        self,
        args: dict[str, Any],
        tables: Iterable[str],
        field: str,
        fetch: Callable[[], tuple[int, Any]],
        prefix: str | None = None,
        acl: Callable[[Any], tuple[Any, bool]] | None = None,
    ) -> dict[str, Any]:
        """A blocking read whose reply is {"Index": index, field: value} from `fetch()`
        (a StateStore read returning (index, value)); `acl` filters the value for the
        request's token (returning what is left and whether anything was dropped)."""

        def run() -> dict[str, Any]:
            idx, value = fetch()
            if acl is not None and not access().disabled:
                value, dropped = acl(value)
                return mark_filtered({"Index": idx, field: value}, dropped)
            return {"Index": idx, field: value}

        return await self.blocking(args, tables, run, prefix)

    async def blocking(
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
        stale = as_bool(args.get("AllowStale"))
        consistent = as_bool(args.get("RequireConsistent"))
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
                meta = self.query_meta()
                if consistent or (
                    not stale and self.raft.is_leader() and not self.raft.lease_valid()
                ):
                    await self.verify_leader()
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
