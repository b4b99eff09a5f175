"""The asyncio shell around `RaftCore`: storage, TCP transport, timers, the FSM, and futures.

Everything the core asks for happens in `_drain`, in the order that makes it safe:

    ready = core.ready()
    persist(ready)       # 1. snapshot file, then log entries + term/vote, fsynced
    send(ready)          # 2. only now: votes and acks are durable
    apply(ready)         # 3. committed entries to the FSM, results to waiting proposers
    core.advance(ready)

Messages from peers are stepped into the core as they arrive; the loop wakes, drains, and
sleeps until the core's next deadline. Everything proposed while one Ready is being written
goes into the next one (group commit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from agent.metrics import metrics
from agent.mux import PortMux
from agent.raft.addresses import PeerAddresses
from agent.raft.config import RaftConfig
from agent.raft.core import RaftCore
from agent.raft.log_store import LMDBLogStore, LogStore, MemoryLogStore, RaftStoreError
from agent.raft.messages import (
    NONVOTER,
    VOTER,
    AppendResponse,
    ConfigChangeInProgress,
    Entry,
    EntryKind,
    HardState,
    Message,
    NotLeader,
    Ready,
    Role,
    ServerInfo,
    Snapshot,
)
from agent.raft.snapshots import SnapshotStore
from agent.raft.transport import RaftTransport

__all__ = [
    "FSM",
    "NotLeaderError",
    "ProposalRefused",
    "RaftConfig",
    "RaftNode",
    "RaftStoreError",
    "ServerInfo",
]

log = logging.getLogger("raft")


class FSM(Protocol):
    def apply(self, index: int, term: int, data: bytes) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class NotLeaderError(Exception):
    """This server is not the leader; `leader` is the leader's address if known."""

    def __init__(self, leader: str | None, message: str = "node is not the leader") -> None:
        super().__init__(message)
        self.leader = leader


class ProposalRefused(NotLeaderError):
    """`apply` refused the proposal before appending it (this server is not the leader, or it is
    handing leadership over): nothing of it was written, so it may be sent again to the leader.
    (A proposal that fails after it was appended - leadership lost while committing - raises
    NotLeaderError: it may or may not be committed by the next leader.)"""


def format_configuration(servers: tuple[ServerInfo, ...] | list[ServerInfo]) -> str:
    """As hashicorp/raft prints a configuration: [{Suffrage:Voter ID:.. Address:..}]."""
    return (
        "["
        + " ".join(f"{{Suffrage:{s.suffrage} ID:{s.id} Address:{s.address}}}" for s in servers)
        + "]"
    )


def _is_address(raft_id: str) -> bool:
    host, sep, port = raft_id.rpartition(":")
    return bool(sep and host and port.isdigit())


#: hashicorp/raft's counter of each role a server enters
_STATE_KEYS = {
    Role.LEADER: "raft.state.leader",
    Role.CANDIDATE: "raft.state.candidate",
    Role.FOLLOWER: "raft.state.follower",
}


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("timed out waiting for raft to commit"))


def _go_duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3f}µs".replace(".000", "")
    if seconds < 1:
        return f"{seconds * 1e3:.6g}ms"
    return f"{seconds:.9g}s"


class RaftNode:
    def __init__(
        self,
        *,
        node_id: str,
        address: str,
        data_dir: Path | None,
        fsm: FSM,
        mux: PortMux,
        config: RaftConfig,
        aliases: tuple[str, ...] = (),
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        #: this server's raft ID (its node ID under raft protocol 3, its address under 2) and
        #: the other IDs a configuration may name it by (see RaftState.identities)
        self.node_id = node_id
        self.aliases = aliases
        self.address = address
        self._addresses = PeerAddresses()
        self.data_dir = data_dir
        self.fsm = fsm
        self.mux = mux
        self.config = config
        self._log_store: LogStore | None = None
        self._snapshots: SnapshotStore | None = None
        self._core: RaftCore | None = None
        self._transport: RaftTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._pending: dict[int, tuple[int, asyncio.Future[Any]]] = {}
        self._reads: dict[int, asyncio.Future[int | None]] = {}
        self._read_ids = itertools.count(1)
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._observers: list[Callable[[bool], None]] = []
        self._leader_observers: list[Callable[[ServerInfo | None], None]] = []
        self._was_leader = False
        self._role: Role | None = None
        self._last_contact: dict[str, float] = {}
        self._last_leader_id: str | None = None
        self._stopped = False
        #: told why when raft cannot go on (its store failed): the agent exits on it
        self._on_fatal = on_fatal
        #: why raft stopped on its own ("" while it runs)
        self.failure = ""
        self.fsm_pending = 0
        #: Last index applied to the FSM (the core's applied_index is what it handed out).
        self._fsm_applied = 0
        self._pruned_for = -1  # configuration index the transport's peers were pruned for
        # One thread for the disk: writes stay in order, the event loop stays responsive.
        self._disk: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raft-disk")
            if data_dir is not None
            else None
        )

    # ------------------------------------------------------------------ lifecycle

    def _stores(self) -> tuple[LogStore, SnapshotStore]:
        if self._log_store is None or self._snapshots is None:
            if self.data_dir is None:
                self._log_store = MemoryLogStore()
                self._snapshots = SnapshotStore(None)
            else:
                raft_dir = self.data_dir / "raft"
                self._log_store = LMDBLogStore(raft_dir)
                self._snapshots = SnapshotStore(raft_dir / "snapshots")
        return self._log_store, self._snapshots

    def has_existing_state(self) -> bool:
        store, snaps = self._stores()
        return store.has_state() or snaps.latest() is not None

    async def bootstrap(self, servers: list[ServerInfo]) -> bool:
        """Write the initial configuration at index 1, once. May be called before or after
        start(); before start() gives Consul's exact log sequence."""
        if self.has_existing_state():
            return False
        store, _ = self._stores()
        entry = Entry(1, 1, EntryKind.CONFIGURATION, servers=tuple(servers))
        store.save(HardState(1, None), [entry], reset=False)
        if self._core is not None:
            log.info("Initial configuration (index=1): %s", format_configuration(servers))
            self._core = self._new_core()
            self._fsm_applied = self._core.applied_index
            self._core.log_state()
            self._kick()
        return True

    def _new_core(self) -> RaftCore:
        store, snaps = self._stores()
        hs, entries = store.load()
        snap = snaps.latest()
        rng = random.Random()
        return RaftCore(
            self.node_id,
            self.config,
            rng,
            now=asyncio.get_running_loop().time(),
            hard_state=hs,
            entries=entries,
            snapshot=snap,
            aliases=self.aliases,
        )

    async def start(self) -> None:
        """Load log and snapshot (RaftStoreError if corrupt), register on the mux, run."""
        _store, snaps = self._stores()
        snap = snaps.latest()
        if snap is not None:
            self.fsm.restore(snap.data)
        self._core = self._new_core()
        core = self._core
        self._fsm_applied = core.applied_index
        log.info(
            "Initial configuration (index=%d): %s",
            core.config_index,
            format_configuration(core.servers),
        )
        core.log_state()
        self._transport = RaftTransport(
            self.node_id,
            self.address,
            self.mux,
            self._on_message,
            self._addresses.resolve,
            self._addresses.announced,
        )
        self._transport.start()
        self._task = asyncio.create_task(self._run(), name=f"raft-{self.node_id}")
        self._kick()

    async def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._transport is not None:
            await self._transport.close()
        self._fail_all(NotLeaderError(None, "raft is shutdown"))
        if self._disk is not None:
            self._disk.shutdown(wait=True)
        if self._log_store is not None:
            self._log_store.close()
        self._log_store = None

    # ------------------------------------------------------------------ the loop

    @property
    def core(self) -> RaftCore:
        assert self._core is not None, "RaftNode.start() was not called"
        return self._core

    def _on_message(self, m: Message) -> None:
        if self._stopped or self._core is None:
            return
        now = asyncio.get_running_loop().time()
        if type(m) is AppendResponse and m.sent_at:  # the round trip of the leader's append
            peer = (("peer_id", m.frm),)
            metrics.sample("raft.replication.appendEntries.rpc", (now - m.sent_at) * 1000, peer)
            last = self._last_contact.get(m.frm)
            if last is not None:  # how long the leader went without hearing from it
                metrics.sample("raft.leader.lastContact", (now - last) * 1000)
            self._last_contact[m.frm] = now
        self._core.tick(now)
        self._core.step(m)
        self._kick()

    def _kick(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopped:
            await self._wake.wait()
            self._wake.clear()
            core = self.core
            now = loop.time()
            if now >= core.next_deadline():
                core.tick(now)
            try:
                await self._drain()
            except Exception as exc:
                # A write that failed (disk full, I/O error) leaves the log in an unknown
                # state: stop taking part rather than answer from it, close the transport so
                # no peer counts on this server (a leader's followers elect another one at
                # their next timeout), and tell the agent, which exits non-zero for its
                # supervisor: a server that cannot write its log must not look healthy.
                self.failure = f"raft store failed: {exc}"
                log.exception("raft: failed to persist or apply; shutting down raft")
                self._stopped = True
                self._fail_all(NotLeaderError(None, "No cluster leader"))
                if self._transport is not None:
                    await self._transport.close()
                if self._on_fatal is not None:
                    self._on_fatal(self.failure)
                return
            self._notify_leadership()
            self._track_configuration()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(core.next_deadline(), self._wake.set)

    async def _drain(self) -> None:
        core = self.core
        transport = self._transport
        assert transport is not None
        rd = core.ready()
        while not rd.empty:
            self._track_configuration()  # a message of this Ready may go to a new entry
            for m in rd.early_messages:  # the leader's appends overlap its own write
                transport.send(m)
            if self._disk is not None and (len(rd.entries) > 4 or rd.snapshot):
                # 1. durable first. A large write goes to the disk thread: the loop keeps
                # stepping messages and queueing proposals into the core meanwhile, and they
                # all go into the next Ready. A small one (a vote, a few entries) is written
                # inline: a 0.1 ms fsync costs less than the hop to a thread and back.
                await asyncio.get_running_loop().run_in_executor(self._disk, self._persist, rd)
            elif rd.entries and self.core.role == Role.LEADER:
                start = time.perf_counter()
                self._persist(rd)
                metrics.measure_since("raft.leader.dispatchLog", start)
            else:
                self._persist(rd)
            for m in rd.messages:  # 2. then visible to others
                transport.send(m)
            self._apply(rd)  # 3. then applied
            core.advance(rd)
            self._maybe_snapshot()
            rd = core.ready()

    def _track_configuration(self) -> None:
        core = self.core
        if core.config_index != self._pruned_for and self._transport is not None:
            self._pruned_for = core.config_index
            self._addresses.configuration(core.servers)
            self._transport.prune(self._addresses.addresses())

    def _persist(self, rd: Ready) -> None:
        store, snaps = self._stores()
        if rd.snapshot is not None:
            snaps.save(rd.snapshot)
        if rd.hard_state is not None or rd.entries or rd.snapshot is not None:
            store.save(rd.hard_state, rd.entries, reset=rd.snapshot is not None)

    def _apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.fsm.restore(rd.snapshot.data)
            self._fsm_applied = rd.snapshot.meta.index
            for index in [i for i in self._pending if i <= rd.snapshot.meta.index]:
                _, fut = self._pending.pop(index)
                if not fut.done():
                    fut.set_exception(NotLeaderError(None, "leadership lost while committing log"))
        for e in rd.committed:
            result: Any = None
            if e.kind == EntryKind.COMMAND:
                try:
                    start = time.perf_counter()
                    result = self.fsm.apply(e.index, e.term, e.data)
                    metrics.measure_since("raft.fsm.apply", start)
                except Exception as exc:  # the FSM's bug must not stop consensus
                    log.exception("FSM apply failed at index %d", e.index)
                    result = exc
            self._fsm_applied = e.index
            waiter = self._pending.pop(e.index, None)
            if waiter is not None:
                term, fut = waiter
                if not fut.done():
                    if term == e.term:
                        fut.set_result(result)
                    else:
                        fut.set_exception(
                            NotLeaderError(self.core.leader_address(), "leadership lost")
                        )
        for r in rd.reads:
            rfut = self._reads.pop(r.request_id, None)
            if rfut is not None and not rfut.done():
                rfut.set_result(r.index)
        if self._applied_waiters:
            applied = self._fsm_applied
            keep = []
            for index, wfut in self._applied_waiters:
                if index <= applied:
                    if not wfut.done():
                        wfut.set_result(None)
                else:
                    keep.append((index, wfut))
            self._applied_waiters = keep

    def _maybe_snapshot(self, force: bool = False) -> None:
        core = self.core
        base = core.snap.index if core.snap is not None else 0
        if core.applied_index <= base:
            return
        if not force and core.applied_index - base < self.config.snapshot_threshold:
            return
        self._take_snapshot()

    def _take_snapshot(self) -> None:
        core = self.core
        start = time.perf_counter()
        try:
            data = self.fsm.snapshot()
        except Exception:  # the log keeps growing, consensus goes on; retried later
            log.exception("failed to take snapshot")
            return
        core.compact(core.applied_index, data)
        assert core.snap is not None
        store, snaps = self._stores()
        persist = time.perf_counter()
        snaps.save(Snapshot(core.snap, data))
        store.compact(core.snap_index)
        metrics.measure_since("raft.snapshot.persist", persist)
        metrics.measure_since("raft.snapshot.takeSnapshot", start)

    def _notify_leadership(self) -> None:
        leader_id = self._core.leader_id if self._core is not None else None
        if leader_id != self._last_leader_id:
            self._last_leader_id = leader_id
            info = self.leader()
            for leader_cb in list(self._leader_observers):
                try:
                    leader_cb(info)
                except Exception:
                    log.exception("leader observer failed")
        role = self._core.role if self._core is not None else None
        if role != self._role:
            self._role = role
            if role in _STATE_KEYS:
                metrics.incr(_STATE_KEYS[role])
        leader = role == Role.LEADER
        if leader != self._was_leader:
            self._was_leader = leader
            if not leader:
                self._fail_all(NotLeaderError(self.core.leader_address(), "leadership lost"))
            for cb in list(self._observers):
                try:
                    cb(leader)
                except Exception:
                    log.exception("leadership observer failed")

    def _fail_all(self, exc: Exception) -> None:
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        for rfut in self._reads.values():
            if not rfut.done():
                rfut.set_result(None)
        self._reads.clear()

    # ------------------------------------------------------------------ public API

    def _not_leader(self, err: NotLeader) -> NotLeaderError:
        return NotLeaderError(err.leader, str(err))

    async def apply(self, data: bytes, timeout: float = 10.0) -> Any:
        if self._stopped:
            raise NotLeaderError(None, "raft is shutdown")
        start = time.perf_counter()
        try:
            index, term = self.core.propose(data)
        except NotLeader as err:
            raise ProposalRefused(err.leader, str(err)) from None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[index] = (term, fut)
        self._kick()
        # Cheaper than asyncio.wait_for (no task per call): this is the write hot path.
        timer = loop.call_later(timeout, _expire, fut)
        metrics.incr("raft.apply")
        try:
            result = await fut
            metrics.measure_since("raft.commitTime", start)
            return result
        finally:
            timer.cancel()

    async def verify_leader(self, timeout: float = 5.0) -> None:
        """ReadIndex: confirm leadership with a quorum round, then wait to apply up to it."""
        if self._stopped or self.core.role != Role.LEADER:
            raise NotLeaderError(self._core.leader_address() if self._core else None)
        rid = next(self._read_ids)
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._reads[rid] = fut
        self.core.read_index(rid)
        self._kick()
        index = await asyncio.wait_for(fut, timeout)
        if index is None:
            raise NotLeaderError(self.core.leader_address(), "leadership lost")
        await self._wait_applied(index, timeout)

    async def _wait_applied(self, index: int, timeout: float) -> None:
        if self._fsm_applied >= index:
            return
        wfut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, wfut))
        await asyncio.wait_for(wfut, timeout)

    def lease_valid(self) -> bool:
        if self._core is None or self._stopped:
            return False
        now = asyncio.get_running_loop().time()
        if now >= self._core.next_deadline():
            self._core.tick(now)  # e.g. check-quorum may step down right now
            self._kick()
        # A new leader may have committed entries it has not applied yet: the lease covers
        # local reads only once the FSM has caught up with the commit index.
        return self._core.lease_valid(now) and self._fsm_applied >= self._core.commit_index

    def is_leader(self) -> bool:
        return self._core is not None and not self._stopped and self._core.role == Role.LEADER

    def leader(self) -> ServerInfo | None:
        if self._core is None or self._core.leader_id is None:
            return None
        lid = self._core.leader_id
        for s in self._core.servers:
            if s.id == lid:
                return ServerInfo(lid, self._addresses.resolve(lid) or s.address, s.suffrage)
        # not (yet) in our configuration: where it said it is; a protocol-2 ID is an address
        address = self._addresses.resolve(lid) or (lid if _is_address(lid) else "")
        return ServerInfo(lid, address, VOTER)

    @property
    def state(self) -> str:
        if self._stopped:
            return "Shutdown"
        if self._core is None:
            return "Follower"
        role = self._core.role
        return "Candidate" if role == Role.PRE_CANDIDATE else role.value

    @property
    def term(self) -> int:
        return self.core.term

    @property
    def commit_index(self) -> int:
        return self.core.commit_index

    @property
    def applied_index(self) -> int:
        return self._fsm_applied

    @property
    def last_log_index(self) -> int:
        return self.core.last_index

    def configuration(self) -> list[ServerInfo]:
        return list(self.core.servers)

    def last_contact(self) -> float | None:
        core = self.core
        if core.role == Role.LEADER:
            return 0.0
        if core.last_leader_contact is None:
            return None
        return max(0.0, asyncio.get_running_loop().time() - core.last_leader_contact)

    async def _change_configuration(self, servers: tuple[ServerInfo, ...], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                index, term = self.core.propose_config(servers)
                break
            except NotLeader as err:
                raise self._not_leader(err) from None
            except ConfigChangeInProgress:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(self.config.heartbeat_interval)
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[index] = (term, fut)
        self._kick()
        await asyncio.wait_for(fut, max(0.01, deadline - loop.time()))

    async def add_voter(self, id: str, address: str, timeout: float = 30.0) -> None:
        """Add as a non-voter, wait until it has caught up, then promote it (thesis §4.2.1)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        servers = [s for s in self.core.servers if s.id != id]
        current = next((s for s in self.core.servers if s.id == id), None)
        if current is not None and current.suffrage == VOTER and current.address == address:
            return
        if current is None or current.address != address:
            staged = (*servers, ServerInfo(id, address, NONVOTER))
            await self._change_configuration(staged, timeout)
        while True:
            core = self.core
            if core.role != Role.LEADER:
                raise NotLeaderError(core.leader_address(), "leadership lost")
            pr = core.progress.get(id)
            if pr is not None and pr.match >= core.commit_index:
                break
            if loop.time() > deadline:
                raise TimeoutError(f"server {id} did not catch up")
            await asyncio.sleep(self.config.heartbeat_interval)
        promoted = tuple(
            ServerInfo(s.id, s.address, VOTER) if s.id == id else s for s in self.core.servers
        )
        await self._change_configuration(promoted, max(0.01, deadline - loop.time()))

    async def add_nonvoter(self, id: str, address: str, timeout: float = 30.0) -> None:
        """Add a server that replicates and never votes (a new server before autopilot
        promotes it, or a read replica); a server already there keeps its suffrage unless
        its address changed."""
        current = next((s for s in self.core.servers if s.id == id), None)
        if current is not None and current.address == address:
            return
        suffrage = current.suffrage if current is not None else NONVOTER
        servers = tuple(s for s in self.core.servers if s.id != id)
        await self._change_configuration((*servers, ServerInfo(id, address, suffrage)), timeout)

    async def promote(self, id: str, timeout: float = 30.0) -> None:
        """Make a non-voter a voter (autopilot, once it has been healthy long enough)."""
        current = next((s for s in self.core.servers if s.id == id), None)
        if current is None or current.suffrage == VOTER:
            return
        promoted = tuple(
            ServerInfo(s.id, s.address, VOTER) if s.id == id else s for s in self.core.servers
        )
        await self._change_configuration(promoted, timeout)

    async def replace_server(
        self, old_id: str, new_id: str, address: str, timeout: float = 30.0
    ) -> None:
        """Rewrite one entry in place, suffrage and position kept: a server's new address, or
        its protocol-2 ID (its address) rewritten to its node ID. One configuration change;
        the voters are the same servers before and after, so quorum is never at stake (the
        server answers to both IDs: RaftState.identities)."""
        servers = self.core.servers
        current = next((s for s in servers if s.id == old_id), None)
        if current is None or (current.id, current.address) == (new_id, address):
            return
        if old_id != new_id and any(s.id == new_id for s in servers):
            raise ValueError(f"server ID {new_id} is already in the configuration")
        updated = tuple(
            ServerInfo(new_id, address, s.suffrage) if s.id == old_id else s for s in servers
        )
        await self._change_configuration(updated, timeout)

    def follower_stats(self) -> dict[str, tuple[float | None, int]]:
        """On the leader, per server id: (seconds since it last acknowledged us, or None,
        its match index) - what autopilot judges a follower's health by."""
        core = self.core
        if core.role != Role.LEADER:
            return {}
        now = asyncio.get_running_loop().time()
        out: dict[str, tuple[float | None, int]] = {}
        for sid, pr in core.progress.items():
            contact = None if pr.acked_sent_at < 0 else max(0.0, now - pr.acked_sent_at)
            out[sid] = (contact, pr.match)
        return out

    async def remove_server(self, id: str, timeout: float = 30.0) -> None:
        servers = tuple(s for s in self.core.servers if s.id != id)
        if len(servers) == len(self.core.servers):
            return
        await self._change_configuration(servers, timeout)

    async def transfer_leadership(self, to: str | None = None) -> None:
        try:
            self.core.transfer_leadership(to)
        except NotLeader as err:
            raise self._not_leader(err) from None
        self._kick()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.transfer_timeout * 2
        while self.core.role == Role.LEADER:
            if loop.time() > deadline:
                raise TimeoutError("leadership transfer timed out")
            await asyncio.sleep(self.config.heartbeat_interval / 2)

    def add_leadership_observer(self, cb: Callable[[bool], None]) -> None:
        """`cb(is_leader)` whenever this node gains or loses leadership."""
        self._observers.append(cb)

    def add_leader_observer(self, cb: Callable[[ServerInfo | None], None]) -> None:
        """`cb(leader)` whenever the known leader changes (None: no leader known)."""
        self._leader_observers.append(cb)

    async def snapshot_now(self) -> None:
        self._maybe_snapshot(force=True)

    def stats(self) -> dict[str, str]:
        core = self.core
        contact = self.last_contact()
        if core.role == Role.LEADER:
            last_contact = "0"
        elif contact is None:
            last_contact = "never"
        else:
            last_contact = _go_duration(contact)
        return {
            "applied_index": str(self._fsm_applied),
            "commit_index": str(core.commit_index),
            "fsm_pending": str(self.fsm_pending),
            "last_contact": last_contact,
            "last_log_index": str(core.last_index),
            "last_log_term": str(core.last_term),
            "last_snapshot_index": str(core.snap.index if core.snap else 0),
            "last_snapshot_term": str(core.snap.term if core.snap else 0),
            "latest_configuration": format_configuration(core.servers),
            "latest_configuration_index": str(core.config_index),
            "num_peers": str(sum(1 for s in core.servers if s.suffrage == VOTER) - 1)
            if core.is_voter()
            else str(sum(1 for s in core.servers if s.suffrage == VOTER)),
            "protocol_version": "1",
            "protocol_version_max": "3",
            "protocol_version_min": "0",
            "snapshot_version": "1",
            "snapshot_version_max": "1",
            "snapshot_version_min": "0",
            "state": self.state,
            "term": str(core.term),
        }
