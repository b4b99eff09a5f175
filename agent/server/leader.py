"""What the leader does for the datacenter while it leads (Consul's leader.go, with its log
lines). `Server` starts every one of them on gaining leadership and stops them on losing it.

- `LeaderDuties`: while this server leads, reconcile LAN gossip membership into the catalog (a
  `serfHealth` check passing for alive members, critical for failed ones; left and reaped nodes
  deregistered), add joining servers to raft, remove servers that left, and remove servers that
  stayed failed past a grace period when quorum survives without them (autopilot's dead-server
  cleanup).
- `SessionTimers`: a session with a TTL is destroyed through raft after TTL * 2 without a
  renewal (session_ttl.go).
- `TombstoneGC`: KV tombstones are reaped through raft after 15 minutes (tombstone_gc.go).
- `CoordinateBatcher`: the nodes' newest coordinates go to raft in batches every 5 s
  (coordinate_endpoint.go's batchUpdate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.durations import SECOND, DurationError, parse_duration
from agent.errors import RPCError
from agent.metadata import (
    TAG_BUILD,
    TAG_DC,
    TAG_ID,
    TAG_RAFT_VSN,
    MemberLike,
    ServerParts,
    min_raft_protocol,
    server_member,
    server_parts,
)
from agent.metrics import metrics
from agent.server.autopilot import DEFAULT_CONFIG as AUTOPILOT_DEFAULTS
from agent.server.autopilot import Autopilot, ServerView, to_promote, to_remove
from agent.state.commands import MessageType, encode_command
from agent.state.store import StateStore
from agent.tasks import cancel_and_wait

log = logging.getLogger("consul")
session_log = logging.getLogger("consul.session")
coordinate_log = logging.getLogger("consul.coordinate")

SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"
SERF_CHECK_ALIVE_OUTPUT = "Agent alive and reachable"
SERF_CHECK_FAILED_OUTPUT = "Agent not live or unreachable"
#: Consul's ReconcileInterval.
RECONCILE_INTERVAL = 60.0
#: The service every server has in the catalog (structs.ConsulServiceID / ConsulServiceName).
CONSUL_SERVICE_ID = "consul"
#: the version in a member's build tag ("1.2.3:rev"), as Consul's metadata.Build reads it
_VERSION_FORMAT = re.compile(r"\d+\.\d+\.\d+")


def consul_service_meta(m: MemberLike) -> dict[str, str]:
    """The Meta of a server's `consul` service, from its gossip member, as Consul 1.x's
    handleAliveMember writes it (the serf_protocol_* are the member's memberlist protocol)."""
    tags = m.tags
    build = _VERSION_FORMAT.search(tags.get(TAG_BUILD, ""))
    return {
        "non_voter": str(tags.get("nonvoter") == "1").lower(),
        "read_replica": str(tags.get("read_replica") == "1").lower(),
        "raft_version": tags.get(TAG_RAFT_VSN) or "0",
        "serf_protocol_current": str(getattr(m, "protocol_cur", 0)),
        "serf_protocol_min": str(getattr(m, "protocol_min", 0)),
        "serf_protocol_max": str(getattr(m, "protocol_max", 0)),
        "version": build.group(0) if build else "",
    }


#: Consul's session TTL multiplier: a session is destroyed after TTL * 2 without a renewal.
SESSION_TTL_MULTIPLIER = 2


class RaftOps(Protocol):
    def is_leader(self) -> bool: ...
    def configuration(self) -> list[Any]: ...
    async def add_voter(self, id: str, address: str) -> None: ...
    async def remove_server(self, id: str) -> None: ...
    async def replace_server(self, old_id: str, new_id: str, address: str) -> None: ...


@dataclass
class _Tracked:
    """What the leader last wrote to the catalog for a member (to skip no-op writes)."""

    status: str
    address: str
    #: a server's tags as its `consul` service Meta shows them (a new build re-registers it)
    tags: tuple[tuple[str, str], ...] = ()


@dataclass
class LeaderDuties:
    """Runs while this server is the raft leader; `notify()` on every LAN membership change."""

    node_name: str
    datacenter: str
    raft: RaftOps
    #: the endpoints' handle (writes go through raft because we are the leader)
    handle: Callable[[str, dict[str, Any]], Awaitable[Any]]
    lan_members: Callable[[], Sequence[MemberLike]]
    dead_server_grace: float = 300.0
    reconcile_interval: float = RECONCILE_INTERVAL
    #: autopilot's configuration now (the stored one, else the agent's defaults)
    autopilot_config: Callable[[], dict[str, Any]] = field(default=lambda: dict(AUTOPILOT_DEFAULTS))
    #: how often autopilot looks at the servers' health (Consul: ServerHealthInterval 2s)
    autopilot_interval: float = 1.0
    autopilot: Autopilot = field(
        default_factory=lambda: Autopilot(clock=time.monotonic, wall=time.time)
    )
    #: the latest health autopilot computed (None until it has, or when not leading)
    health: dict[str, Any] | None = None
    _autopilot_task: asyncio.Task[None] | None = None
    _unknown_since: dict[str, float] = field(default_factory=dict)
    _tracked: dict[str, _Tracked] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._tracked.clear()
            self._wake.set()
            self._task = asyncio.create_task(self._loop())
        if self._autopilot_task is None or self._autopilot_task.done():
            self._autopilot_task = asyncio.create_task(self._autopilot_loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        ap, self._autopilot_task = self._autopilot_task, None
        await cancel_and_wait(ap)
        self.health = None

    # ---- autopilot ----------------------------------------------------------------------

    async def _autopilot_loop(self) -> None:
        while self.raft.is_leader():
            try:
                await self.autopilot_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autopilot: pass failed")
            await asyncio.sleep(self.autopilot_interval)
        self.health = None

    def _raft_position(self) -> tuple[int, int]:
        """The leader's term and last log index (what followers' health is judged against)."""
        term = int(getattr(self.raft, "term", 0) or 0)
        return term, int(getattr(self.raft, "last_log_index", 0) or 0)

    def server_views(self) -> list[ServerView]:
        """The raft configuration's servers as gossip and replication show them now."""
        members = [
            m
            for m in self.lan_members()
            if (p := server_parts(m)) is not None and p.datacenter == self.datacenter
        ]
        stats_of = getattr(self.raft, "follower_stats", None)
        stats: dict[str, tuple[float | None, int]] = stats_of() if stats_of else {}
        leader_of = getattr(self.raft, "leader", None)
        leader = leader_of() if callable(leader_of) else None
        term, last_index = self._raft_position()
        views = []
        for s in self.raft.configuration():
            m = server_member(members, s.address, s.id)
            status = m.status if m is not None else "none"
            if status == "leaving":
                status = "alive"
            is_leader = leader is not None and leader.id == s.id
            contact, match = (0.0, last_index) if is_leader else stats.get(s.id, (None, 0))
            tags = m.tags if m is not None else {}
            build = tags.get("build", "")
            views.append(
                ServerView(
                    id=s.id,
                    name=m.name if m is not None else s.address,
                    address=s.address,
                    serf_status=status,
                    version=build.split(":", 1)[0],
                    voter=s.suffrage == "Voter",
                    leader=is_leader,
                    last_contact=contact,
                    last_term=term if contact is not None else 0,
                    last_index=match,
                    read_replica=tags.get("read_replica") == "1" or tags.get("nonvoter") == "1",
                )
            )
        return views

    async def autopilot_pass(self) -> None:
        """One pass: compute health, promote stable non-voters, remove dead servers."""
        config = self.autopilot_config()
        views = self.server_views()
        term, last_index = self._raft_position()
        self.health = self.autopilot.observe(views, config, term, last_index)
        metrics.gauge("autopilot.healthy", 1.0 if self.health["Healthy"] else 0.0)
        metrics.gauge("autopilot.failure_tolerance", float(self.health["FailureTolerance"]))
        promote = getattr(self.raft, "promote", None)
        for raft_id in to_promote(self.health, config):
            if promote is None or not self.raft.is_leader():
                break
            log.info("Promoting server: id=%s", raft_id)
            try:
                await promote(raft_id)
            except Exception as exc:
                log.error("failed to promote server %s: %s", raft_id, exc)
        now = time.monotonic()
        present = {v.id for v in views if v.serf_status == "none"}
        for rid in list(self._unknown_since):
            if rid not in present:
                self._unknown_since.pop(rid)
        for rid in present:
            self._unknown_since.setdefault(rid, now)
        stale = [r for r, t in self._unknown_since.items() if now - t >= self.dead_server_grace]
        for raft_id in to_remove(views, config, stale=stale):
            if not self.raft.is_leader():
                break
            name = next((v.name for v in views if v.id == raft_id), raft_id)
            log.info("Attempting removal of failed server node: id=%s name=%s", raft_id, name)
            try:
                await self.raft.remove_server(raft_id)
            except Exception as exc:
                log.error("failed to remove dead server %s: %s", raft_id, exc)

    async def _loop(self) -> None:
        while self.raft.is_leader():
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except RPCError as exc:
                log.error("failed to reconcile: %s", exc)
                await asyncio.sleep(1.0)
                self._wake.set()
            except Exception:
                log.exception("failed to reconcile")
                await asyncio.sleep(1.0)
                self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.reconcile_interval)
            # Coalesce bursts of membership events (a cluster starting) into one pass.
            await asyncio.sleep(0.05)

    async def reconcile(self) -> None:
        members = self.lan_members()
        known = {m.name for m in members}
        for m in members:
            if not self.raft.is_leader():
                return
            await self._reconcile_member(m)
        await self._reap_catalog(known)

    async def _reconcile_member(self, m: MemberLike) -> None:
        parts = server_parts(m)
        if m.tags.get(TAG_DC, self.datacenter) != self.datacenter:
            return
        status = m.status
        tracked = self._tracked.get(m.name)
        if status in ("alive", "failed"):
            tags = tuple(sorted(m.tags.items())) if parts is not None else ()
            if tracked != _Tracked(status, m.addr, tags):
                if await self._catalog_needs_update(m, status):
                    await self._register(m, status, parts)
                    if status == "alive":
                        log.info("member '%s' joined, marking health alive", m.name)
                    else:
                        log.info("member '%s' failed, marking health critical", m.name)
                self._tracked[m.name] = _Tracked(status, m.addr, tags)
            if status == "alive" and parts is not None and parts.datacenter == self.datacenter:
                await self._join_server(parts)
        elif status in ("left", "reap"):
            if tracked is None or tracked.status != "left":
                await self._deregister(m.name)
                self._tracked[m.name] = _Tracked("left", m.addr)
            if parts is not None and parts.datacenter == self.datacenter:
                await self._remove_server(parts, "left")

    async def _catalog_needs_update(self, m: MemberLike, status: str) -> bool:
        want = "passing" if status == "alive" else "critical"
        try:
            reply = await self.handle("Health.NodeChecks", {"Node": m.name, "AllowStale": True})
            node_reply = await self.handle(
                "Catalog.NodeServices", {"Node": m.name, "AllowStale": True}
            )
        except RPCError:
            return True
        checks = (reply or {}).get("HealthChecks") or []
        serf = [c for c in checks if c.get("CheckID") == SERF_CHECK_ID]
        ns = (node_reply or {}).get("NodeServices") or {}
        node = ns.get("Node") or {}
        if node.get("Address") != m.addr:
            return True
        parts = server_parts(m)
        if parts is not None and status == "alive":
            # As Consul's handleAliveMember: the consul service must be there with this Meta.
            registered = (ns.get("Services") or {}).get(CONSUL_SERVICE_ID)
            if registered is None or (registered.get("Meta") or {}) != consul_service_meta(m):
                return True
        return not serf or serf[0].get("Status") != want

    async def _register(self, m: MemberLike, status: str, parts: ServerParts | None) -> None:
        req: dict[str, Any] = {
            "Datacenter": self.datacenter,
            "Node": m.name,
            "ID": m.tags.get(TAG_ID, ""),
            "Address": m.addr,
            "Check": {
                "Node": m.name,
                "CheckID": SERF_CHECK_ID,
                "Name": SERF_CHECK_NAME,
                "Status": "passing" if status == "alive" else "critical",
                "Output": SERF_CHECK_ALIVE_OUTPUT
                if status == "alive"
                else SERF_CHECK_FAILED_OUTPUT,
                "Notes": "",
                "ServiceID": "",
                "ServiceName": "",
            },
        }
        if parts is not None and status == "alive":
            # Every server's `consul` service, ours too, is the leader's to register (Consul
            # 1.x): it is in the catalog only, never in an agent's /v1/agent/services.
            req["Service"] = {
                "ID": CONSUL_SERVICE_ID,
                "Service": CONSUL_SERVICE_ID,
                "Tags": [],
                "Address": "",
                "Port": parts.port,
                "Weights": {"Passing": 1, "Warning": 1},
                "Meta": consul_service_meta(m),
            }
        await self.handle("Catalog.Register", req)

    async def _deregister(self, node: str) -> None:
        if node == self.node_name:
            return
        log.info("member '%s' left, deregistering", node)
        await self.handle("Catalog.Deregister", {"Datacenter": self.datacenter, "Node": node})

    async def _reap_catalog(self, known: set[str]) -> None:
        """Nodes that gossip has forgotten (reaped while we were not leader) are deregistered.

        As Consul's reconcileReaped, only nodes carrying a serfHealth check are ours to reap:
        nodes registered directly through the catalog API (external services) are left alone.
        """
        try:
            reply = await self.handle("Health.ChecksInState", {"State": "any", "AllowStale": True})
        except RPCError:
            return
        reaped = {
            str(check.get("Node", ""))
            for check in (reply or {}).get("HealthChecks") or []
            if check.get("CheckID") == SERF_CHECK_ID
        }
        for name in sorted(reaped - known - {"", self.node_name}):
            log.info("member '%s' reaped, deregistering", name)
            await self.handle("Catalog.Deregister", {"Datacenter": self.datacenter, "Node": name})

    async def _join_server(self, parts: ServerParts) -> None:
        """An alive server of our datacenter: in raft under the ID it should have, at its
        address (Consul's joinConsulServer, with raft protocol 3's IDs):

        - known ID at a new address (restarted elsewhere with its data dir): the entry's
          address is updated in place, one configuration change, suffrage kept;
        - its protocol-2 entry (ID = address) once every server speaks protocol 3: rewritten
          to its node ID in place (the upgrade; one change per server, quorum unchanged);
        - another ID at its address (a server gone, the address reused): removed first;
        - not there: added as a non-voter, which autopilot promotes.
        """
        servers = list(self.raft.configuration())
        min_vsn = min_raft_protocol(self.lan_members(), self.datacenter)
        want = parts.raft_id if min_vsn >= 2 else parts.address
        same_id = next((s for s in servers if s.id == want), None)
        if same_id is not None:
            if same_id.address != parts.address:
                log.info(
                    "Updating address of server %s (ID: %s) from %s to %s",
                    parts.name,
                    want,
                    same_id.address,
                    parts.address,
                )
                await self._replace(want, want, parts.address)
            return
        at_address = next((s for s in servers if s.address == parts.address), None)
        if at_address is not None and at_address.id == parts.address:
            if min_vsn >= 3 and want != at_address.id:
                log.info(
                    "Upgrading server %s to raft protocol 3: ID %s -> %s",
                    parts.name,
                    at_address.id,
                    want,
                )
                await self._replace(at_address.id, want, parts.address)
            return
        if at_address is not None:
            log.info("removing server with duplicate address: %s", at_address.address)
            try:
                await self.raft.remove_server(at_address.id)
            except Exception as exc:
                log.error("error removing server with duplicate address %s: %s", parts.address, exc)
                return
        # Servers of a cluster that is still waiting for bootstrap_expect must not be added
        # one by one; they are in the initial configuration once bootstrapped.
        log.info(
            "Adding server %s (Addr: tcp/%s) (DC: %s) to raft",
            parts.name,
            parts.address,
            parts.datacenter,
        )
        # As Consul 1.x: a new server joins as a non-voter; autopilot promotes it once it has
        # been healthy for ServerStabilizationTime (a read replica never).
        add_nonvoter = getattr(self.raft, "add_nonvoter", None)
        try:
            if add_nonvoter is not None:
                await add_nonvoter(want, parts.address)
            else:
                await self.raft.add_voter(want, parts.address)
        except Exception as exc:
            log.error("failed to add raft peer: %s", exc)

    async def _replace(self, old_id: str, new_id: str, address: str) -> None:
        try:
            await self.raft.replace_server(old_id, new_id, address)
        except Exception as exc:
            log.error("failed to update raft peer %s: %s", old_id, exc)

    async def _remove_server(self, parts: ServerParts, why: str) -> None:
        """A server that left: out of raft, found by its node ID or its address."""
        for s in list(self.raft.configuration()):
            if s.id not in (parts.node_id, parts.address) and s.address != parts.address:
                continue
            log.info('removing server by ID: "%s"', s.id)
            try:
                await self.raft.remove_server(s.id)
            except Exception as exc:
                log.error("failed to remove raft peer '%s': %s", s.id, exc)
            return


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
