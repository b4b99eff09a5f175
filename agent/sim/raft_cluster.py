"""A raft cluster on the simulator: `RaftCore`s on a `VirtualClock` and a faulty `SimNetwork`.

Each server has a simulated disk that holds only what a Ready wrote *and the write finished*:
a crash loses the Ready being written, exactly what an fsync that did not return loses. Clients
send puts and gets (ReadIndex or lease reads) to the leader and record a history for the
linearizability checker. After every event the safety properties of the Raft paper are checked
(§5.2 election safety, §5.3 log matching, §5.4 leader completeness and state machine safety),
plus "no acknowledged write is lost". A run is a pure function of its seed:

    .venv/bin/python -m agent.sim.raft_cluster --seed 123 [-v]

replays one seed exactly (-v prints every raft log line with its virtual time).
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack

from agent.raft.addresses import PeerAddresses
from agent.raft.config import RaftConfig
from agent.raft.core import RaftCore
from agent.raft.messages import (
    NONVOTER,
    VOTER,
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
from agent.sim.clock import VirtualClock
from agent.sim.network import Faults, SimNetwork
from agent.sim.raft_linearizability import Op, check_history

#: Fast timings for the simulator (virtual seconds); small snapshot threshold and chunks so
#: that compaction and InstallSnapshot happen in most runs.
SIM_CONFIG = RaftConfig(
    election_timeout=0.1,
    heartbeat_interval=0.01,
    leader_lease_timeout=0.05,
    transfer_timeout=0.1,
    max_append_entries=8,
    max_inflight=4,
    snapshot_threshold=40,
    trailing_logs=10,
    snapshot_chunk_size=48,
)


class SafetyViolation(AssertionError):
    pass


@dataclass
class Disk:
    """What survived the last completed write."""

    hard_state: HardState | None = None
    entries: dict[int, Entry] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    last_index: int = 0

    def write(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries.clear()
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state
        if rd.entries:
            first = rd.entries[0].index
            for i in range(first, self.last_index + 1):
                self.entries.pop(i, None)
            for e in rd.entries:
                self.entries[e.index] = e
        self.last_index = max(self.entries, default=0) if rd.snapshot else self.last_index
        if rd.entries:
            self.last_index = rd.entries[-1].index


@dataclass
class PendingWrite:
    op_id: int
    client: int
    key: str
    value: Any
    invoke: float
    index: int
    term: int


@dataclass
class PendingRead:
    op_id: int
    client: int
    key: str
    invoke: float
    index: int | None = None


class SimServer:
    def __init__(self, cluster: SimCluster, node_id: str) -> None:
        self.c = cluster
        #: the simulator's name for this server (its first address)
        self.id = node_id
        #: its raft ID and the other IDs that mean it (RaftState.identities): a node ID and
        #: its address under raft protocol 3, the address alone under 2
        self.raft_id = node_id
        self.aliases: tuple[str, ...] = ()
        #: where it listens now (a restart may move it)
        self.address = node_id
        self.addresses = PeerAddresses()
        self.config_seen = -1
        self.disk = Disk()
        self.core: RaftCore | None = None
        self.epoch = 0
        self.busy = False
        self.tick_event: Any = None
        self.tick_at = math.inf
        self.kv: dict[str, Any] = {}
        self.applied: dict[int, tuple[int, Any]] = {}  # index -> (term, key) since restart
        self.applied_index = 0
        self.writes: dict[int, PendingWrite] = {}
        self.reads: dict[int, PendingRead] = {}
        self.read_waits: list[PendingRead] = []
        self.was_leader = False

    # --- lifecycle

    def boot(self) -> None:
        d = self.disk
        self.epoch += 1
        self.core = RaftCore(
            self.raft_id,
            self.c.config,
            random.Random(self.c.rng.random()),
            now=self.c.clock.now,
            hard_state=d.hard_state,
            entries=[d.entries[i] for i in sorted(d.entries)],
            snapshot=d.snapshot,
            aliases=self.aliases,
        )
        self.addresses = PeerAddresses()
        self.config_seen = -1
        self.kv = dict(msgpack.unpackb(d.snapshot.data)) if d.snapshot else {}
        self.applied_index = d.snapshot.meta.index if d.snapshot else 0
        self.busy = False
        self.was_leader = False
        self.c.net.attach(self.address, self.receive)
        self.schedule_tick()

    def config_id(self, servers: tuple[ServerInfo, ...]) -> str:
        """The ID `servers` name this server by (its raft ID if none does)."""
        listed = {s.id for s in servers}
        return next((i for i in (self.raft_id, *self.aliases) if i in listed), self.raft_id)

    def send(self, m: Message) -> None:
        core = self.core
        if core is not None and core.config_index != self.config_seen:
            self.config_seen = core.config_index
            self.addresses.configuration(core.servers)
        self.c.net.send(self.address, self.addresses.resolve(m.to) or m.to, m)

    def crash(self) -> None:
        self.c.trace(f"CRASH {self.id}")
        self.c.events["crashes"] += 1
        self.core = None
        self.epoch += 1
        self.c.net.detach(self.address)
        if self.tick_event is not None:
            VirtualClock.cancel(self.tick_event)
        self.tick_event, self.tick_at = None, math.inf
        self.writes.clear()  # clients never hear back: their ops stay "unknown"
        self.reads.clear()
        self.read_waits.clear()

    # --- driving the core

    def receive(self, src: str, msg: Message) -> None:
        core = self.core
        if core is None:
            return
        self.addresses.announced(msg.frm, src)  # as the hello of its connection says
        core.tick(self.c.clock.now)
        core.step(msg)
        self.after_event()

    def on_tick(self, epoch: int) -> None:
        if epoch != self.epoch or self.core is None:
            return
        self.tick_event, self.tick_at = None, math.inf
        self.core.tick(self.c.clock.now)
        self.after_event()

    def schedule_tick(self) -> None:
        core = self.core
        if core is None:
            return
        at = max(core.next_deadline(), self.c.clock.now)
        if at < self.tick_at:
            if self.tick_event is not None:
                VirtualClock.cancel(self.tick_event)
            epoch = self.epoch
            self.tick_event = self.c.clock.call_at(at, lambda: self.on_tick(epoch))
            self.tick_at = at

    def after_event(self) -> None:
        self.c.check_leader(self)
        self.pump()
        self.schedule_tick()

    def pump(self) -> None:
        core = self.core
        if core is None or self.busy:
            return
        rd = core.ready()
        if rd.empty:
            return
        self.c.check_new_entries(self, rd)
        for m in rd.early_messages:  # the leader's appends overlap its own write
            self.send(m)
        self.busy = True
        epoch = self.epoch
        delay = self.c.rng.uniform(*self.c.disk_latency)
        self.c.clock.call_later(delay, lambda: self.write_done(rd, epoch))

    def write_done(self, rd: Ready, epoch: int) -> None:
        if epoch != self.epoch or self.core is None:
            return  # crashed while writing: this Ready never reached the disk
        core = self.core
        self.disk.write(rd)  # 1. persisted
        for m in rd.messages:  # 2. sent
            self.send(m)
        self.apply(rd)  # 3. applied
        core.advance(rd)
        self.busy = False
        self.maybe_snapshot()
        self.after_event()

    def apply(self, rd: Ready) -> None:
        core = self.core
        assert core is not None
        if rd.snapshot is not None:
            self.kv = dict(msgpack.unpackb(rd.snapshot.data))
            self.applied_index = rd.snapshot.meta.index
            self.c.check_snapshot(self, rd.snapshot)
            self.c.events["snapshots installed"] += 1
        for e in rd.committed:
            assert e.index == self.applied_index + 1, (
                f"{self.id} applies {e.index} after {self.applied_index}"
            )
            self.applied_index = e.index
            self.c.check_apply(self, e)
            if e.kind == EntryKind.COMMAND:
                key, value = msgpack.unpackb(e.data)
                self.kv[key] = value
            w = self.writes.pop(e.index, None)
            if w is not None and w.term == e.term:
                self.c.complete_write(w)
        for r in rd.reads:
            pr = self.reads.pop(r.request_id, None)
            if pr is not None and r.index is not None:
                pr.index = r.index
                self.read_waits.append(pr)
        self.finish_reads()

    def finish_reads(self) -> None:
        keep = []
        for pr in self.read_waits:
            assert pr.index is not None
            if self.applied_index >= pr.index:
                self.c.history.append(
                    Op(pr.client, "get", pr.key, self.kv.get(pr.key), pr.invoke, self.c.clock.now)
                )
            else:
                keep.append(pr)
        self.read_waits = keep

    def maybe_snapshot(self) -> None:
        core = self.core
        assert core is not None
        base = core.snap.index if core.snap else 0
        if self.applied_index - base >= self.c.config.snapshot_threshold:
            data = msgpack.packb(self.kv)
            core.compact(self.applied_index, data)
            assert core.snap is not None
            self.disk.snapshot = Snapshot(core.snap, data)
            for i in [i for i in self.disk.entries if i <= core.snap_index]:
                del self.disk.entries[i]


class SimCluster:
    def __init__(
        self,
        seed: int,
        size: int = 3,
        config: RaftConfig = SIM_CONFIG,
        faults: Faults | None = None,
        verbose: bool = False,
        membership: bool = True,
        node_ids: bool = False,
    ) -> None:
        self.seed = seed
        self.membership = membership
        self.fast_heal = True
        self.converged_after = math.inf  # virtual seconds from heal to liveness
        self.rng = random.Random(seed)
        self.clock = VirtualClock()
        self.net = SimNetwork(
            self.clock,
            random.Random(self.rng.random()),
            faults or Faults(min_delay=0.0005, max_delay=0.004),
        )
        self.config = config
        self.verbose = verbose
        self.disk_latency = (0.0001, 0.001)
        self.ids = [f"10.0.0.{i + 1}:8300" for i in range(size)]
        self.servers = {i: SimServer(self, i) for i in self.ids}
        if node_ids:  # raft protocol 3 from the start: raft IDs are node IDs
            for k, srv in enumerate(self.servers.values()):
                srv.raft_id, srv.aliases = f"node-{k + 1}", (srv.address,)
        # Checker state.
        self.leader_of_term: dict[int, str] = {}
        self.log_registry: dict[tuple[int, int], tuple[Any, int | None]] = {}
        self.committed: dict[int, tuple[int, Any]] = {}  # index -> (term, content)
        self.acked: dict[int, tuple[int, Any]] = {}
        self.history: list[Op] = []
        self.op_ids = 0
        self.unknown_writes: dict[int, PendingWrite] = {}
        self.events: Counter[str] = Counter()
        servers = tuple(ServerInfo(s.raft_id, s.address, VOTER) for s in self.servers.values())
        for s in self.servers.values():
            boot = Entry(1, 1, EntryKind.CONFIGURATION, servers=servers)
            s.disk.hard_state = HardState(1, None)
            s.disk.entries[1] = boot
            s.disk.last_index = 1
            s.boot()

    # --- tracing

    def trace(self, text: str) -> None:
        if self.verbose:
            print(f"{self.clock.now:10.6f} {text}")

    def fail(self, text: str) -> None:
        raise SafetyViolation(
            f"seed {self.seed}: {text} (at t={self.clock.now:.6f}); replay: "
            f".venv/bin/python -m agent.sim.raft_cluster --seed {self.seed} -v"
        )

    # --- checkers

    def check_leader(self, s: SimServer) -> None:
        core = s.core
        assert core is not None
        leading = core.role == Role.LEADER
        if leading and not s.was_leader:
            # §5.2 Election Safety: at most one leader per term.
            other = self.leader_of_term.setdefault(core.term, s.id)
            if other != s.id:
                self.fail(f"two leaders in term {core.term}: {other} and {s.id}")
            # §5.4.1 Leader Completeness: the new leader holds every committed entry.
            for index, (term, content) in self.committed.items():
                if index <= core.snap_index:
                    continue
                if core.term_at(index) != term or _content(core.entry(index)) != content:
                    self.fail(
                        f"leader {s.id} of term {core.term} lacks committed entry {index}/{term}"
                    )
            self.trace(f"{s.id} leads term {core.term}")
        s.was_leader = leading

    def check_new_entries(self, s: SimServer, rd: Ready) -> None:
        """§5.3 Log Matching: one (index, term) names one entry, with one predecessor term."""
        core = s.core
        assert core is not None
        for e in rd.entries:
            prev = core.term_at(e.index - 1)
            key = (e.index, e.term)
            content = _content(e)
            seen = self.log_registry.get(key)
            if seen is None:
                self.log_registry[key] = (content, prev)
            elif seen[0] != content or (
                prev is not None and seen[1] is not None and seen[1] != prev
            ):
                self.fail(f"log matching violated at index {e.index} term {e.term} on {s.id}")

    def check_apply(self, s: SimServer, e: Entry) -> None:
        """§5.4.3 State Machine Safety: no two servers apply different entries at an index."""
        content = _content(e)
        seen = self.committed.setdefault(e.index, (e.term, content))
        if seen != (e.term, content):
            self.fail(f"{s.id} applied {e.index}/{e.term}, another server {seen[0]} there")

    def check_snapshot(self, s: SimServer, snap: Snapshot) -> None:
        meta = snap.meta
        seen = self.committed.get(meta.index)
        if seen is not None and seen[0] != meta.term:
            self.fail(f"{s.id} installed a snapshot at {meta.index}/{meta.term} over {seen}")

    # --- clients

    def leader(self) -> SimServer | None:
        """The leader of the highest term, if any server believes it leads."""
        leaders = [
            (s.core.term, s) for s in self.servers.values() if s.core and s.core.role == Role.LEADER
        ]
        return max(leaders, key=lambda ts: ts[0])[1] if leaders else None

    def client_op(self, client: int, key: str) -> None:
        # Any server that believes it leads: a deposed leader must not serve stale data.
        leaders = [
            s for s in self.servers.values() if s.core is not None and s.core.role == Role.LEADER
        ]
        s = self.rng.choice(leaders) if leaders else None
        if s is None or s.core is None:
            return
        self.op_ids += 1
        now = self.clock.now
        r = self.rng.random()
        if r < 0.5:
            value = f"v{self.op_ids}"
            try:
                index, term = s.core.propose(msgpack.packb([key, value]))
            except NotLeader:
                return  # refused up front: never in any log
            w = PendingWrite(self.op_ids, client, key, value, now, index, term)
            s.writes[index] = w
            self.unknown_writes[self.op_ids] = w
        else:
            pr = PendingRead(self.op_ids, client, key, now)
            if r < 0.75:
                s.reads[self.op_ids] = pr
                s.core.read_index(self.op_ids)
            elif s.core.lease_valid(now):
                pr.index = s.core.commit_index
                s.read_waits.append(pr)
                s.finish_reads()
            else:
                return
        s.after_event()

    def complete_write(self, w: PendingWrite) -> None:
        self.unknown_writes.pop(w.op_id, None)
        self.acked[w.index] = (w.term, w.value)
        self.history.append(Op(w.client, "put", w.key, w.value, w.invoke, self.clock.now))

    # --- scenario

    def run(self, fault_time: float = 1.0, heal_time: float = 3.0) -> None:
        rng = self.rng
        ids = self.ids
        faults = self.net.faults
        faults.drop = rng.choice([0.0, 0.02, 0.1, 0.2])
        faults.duplicate = rng.choice([0.0, 0.05])
        # Some runs with slow links (delays near the lease and the election timeout) and
        # slow disks, where reordering and stale messages are common.
        faults.max_delay = rng.choice([0.004, 0.004, 0.02, 0.06])
        self.disk_latency = rng.choice([(0.0001, 0.001), (0.0001, 0.001), (0.001, 0.01)])
        self.schedule_clients(0.2, fault_time)
        # Faults: partitions, heals, crashes and restarts.
        t = 0.2
        while t < fault_time:
            kind = rng.random()
            if kind < 0.3:
                group = set(rng.sample(ids, rng.randrange(1, len(ids))))
                self.clock.call_at(t, lambda g=group: self._partition(g))  # type: ignore[misc]
            elif kind < 0.5:
                self.clock.call_at(t, self.net.heal)
            elif kind < 0.75:
                victim = rng.choice(ids)
                down = rng.uniform(0.01, 0.3)
                self.clock.call_at(t, lambda v=victim, d=down: self._crash(v, d))  # type: ignore[misc]
            elif kind < 0.8:
                self.clock.call_at(t, self._crash_leader)
            elif kind < 0.9 and self.membership:
                self.clock.call_at(t, self._membership)
            else:
                self.clock.call_at(t, self._transfer)
            t += rng.uniform(0.05, 0.25)
        self.heal_and_converge(fault_time, heal_time)

    def schedule_clients(self, start: float, end: float) -> None:
        """Client operations at random times from `start` to `end`."""
        rng = self.rng
        keys = ["a", "b", "c"]
        t = start
        while t < end:
            client, key = rng.randrange(5), rng.choice(keys)
            self.clock.call_at(t, lambda c=client, k=key: self.client_op(c, k))  # type: ignore[misc]
            t += rng.expovariate(1 / 0.004)

    def heal_and_converge(self, fault_time: float, heal_time: float) -> None:
        """Run to `fault_time`, then heal everything: liveness must follow within
        `heal_time`, and then the final safety checks hold."""
        faults = self.net.faults
        self.clock.run_until(fault_time)
        # Heal: every server back, no more loss; liveness must follow within heal_time.
        self.trace("HEAL")
        self.net.heal()
        faults.drop = faults.duplicate = 0.0
        # Liveness needs broadcast time << election timeout (§5.6): a healed network is fast.
        if self.fast_heal:
            faults.max_delay = 0.004
            self.disk_latency = (0.0001, 0.001)
        for s in self.servers.values():
            if s.core is None:
                s.boot()
        final: list[PendingWrite] = []

        def converged() -> bool:
            lead = self.leader()
            if lead is None or lead.core is None:
                return False
            if any(srv.suffrage != VOTER for srv in lead.core.servers) or len(
                lead.core.servers
            ) < len(self.ids):
                self._membership()  # bring every server back as a voter
                return False
            if not final:
                self.client_op(0, "final")
                final.extend(w for w in lead.writes.values() if w.key == "final")
                return False
            if final[0].op_id in self.unknown_writes:
                # The leader may have changed before it committed: propose again.
                if final[0].index not in lead.writes:
                    final.clear()
                return False
            # The leader must have committed in its own term: until then its commit index
            # can lag what earlier leaders committed (§5.4.2, §8).
            if lead.core.term_at(lead.core.commit_index) != lead.core.term:
                return False
            target = max(srv.core.commit_index for srv in self.servers.values() if srv.core)
            return lead.core.commit_index >= target and all(
                s.core is not None and s.applied_index >= target and s.core.commit_index >= target
                for s in self.servers.values()
            )

        deadline = fault_time + heal_time
        if not self.clock.run_until(deadline, converged):
            lead = self.leader()
            self.fail(
                "no liveness after heal: leader="
                + (lead.id if lead else "none")
                + " "
                + ", ".join(
                    f"{s.id}:{s.core.role.value}/t{s.core.term}/c{s.core.commit_index}/a{s.applied_index}"
                    for s in self.servers.values()
                    if s.core is not None
                )
            )
        self.converged_after = self.clock.now - fault_time
        self.final_checks()

    def _partition(self, group: set[str]) -> None:
        self.trace(f"PARTITION {sorted(group)}")
        others = set(self.ids) - group
        self.net.partition(
            {self.servers[i].address for i in group}, {self.servers[i].address for i in others}
        )

    def _crash(self, victim: str, down: float) -> None:
        s = self.servers[victim]
        if s.core is None:
            return
        s.crash()
        self.clock.call_later(down, lambda: self._restart(victim))

    def _restart(self, victim: str) -> None:
        s = self.servers[victim]
        if s.core is None:
            self.trace(f"RESTART {victim}")
            s.boot()

    def _crash_leader(self) -> None:
        lead = self.leader()
        if lead is not None:
            self._crash(lead.id, self.rng.uniform(0.01, 0.2))

    def _membership(self) -> None:
        """One server at a time (thesis §4.1): remove a follower, or re-add it as a non-voter,
        or promote a caught-up non-voter."""
        lead = self.leader()
        if lead is None or lead.core is None:
            return
        core = lead.core
        present = {srv.id: srv for srv in core.servers}
        missing = [
            srv for srv in self.servers.values() if srv.config_id(core.servers) not in present
        ]
        staged = [srv for srv in core.servers if srv.suffrage != VOTER]
        if missing:
            new = (*core.servers, ServerInfo(missing[0].raft_id, missing[0].address, NONVOTER))
        elif staged:
            pr = core.progress.get(staged[0].id)
            if pr is None or pr.match < core.commit_index:
                return  # not caught up yet
            new = tuple(
                ServerInfo(srv.id, srv.address, VOTER) if srv is staged[0] else srv
                for srv in core.servers
            )
        else:
            victim = self.servers[self.rng.choice([i for i in self.ids if i != lead.id])]
            gone = victim.config_id(core.servers)
            new = tuple(srv for srv in core.servers if srv.id != gone)
        try:
            core.propose_config(new)
        except (NotLeader, ConfigChangeInProgress):
            return
        self.trace(f"CONFIG {[(srv.id, srv.suffrage) for srv in new]}")
        self.events["config changes"] += 1
        lead.after_event()

    def _transfer(self) -> None:
        lead = self.leader()
        if lead is None or lead.core is None:
            return
        try:
            to = lead.core.transfer_leadership()
        except NotLeader:
            return
        self.trace(f"TRANSFER {lead.id} -> {to}")
        self.events["transfers"] += 1
        lead.after_event()

    def final_checks(self) -> None:
        # No acknowledged write lost: every server applied it, with the same term.
        for s in self.servers.values():
            core = s.core
            assert core is not None
            for index, (term, _) in self.acked.items():
                if index <= core.snap_index:
                    continue
                if core.term_at(index) != term:
                    self.fail(f"acknowledged entry {index}/{term} lost on {s.id}")
        states = {s.id: s.kv for s in self.servers.values()}
        first = next(iter(states.values()))
        for sid, kv in states.items():
            if kv != first:
                self.fail(f"state machines differ after convergence: {sid}")
        # Writes whose outcome the client never learned may or may not have happened.
        ops = list(self.history)
        for w in self.unknown_writes.values():
            ops.append(Op(w.client, "put", w.key, w.value, w.invoke))
        inconclusive: list[str] = []
        violation = check_history(ops, inconclusive)
        if violation is not None:
            self.fail(str(violation))
        self.events["linearizability checks"] += 1
        self.events["linearizability inconclusive"] += len(inconclusive)


def _content(e: Entry) -> Any:
    return (int(e.kind), e.data, e.servers)


def run_seed(seed: int, verbose: bool = False) -> SimCluster:
    rng = random.Random(seed)
    size = 5 if rng.random() < 0.2 else 3
    cluster = SimCluster(seed, size=size, verbose=verbose)
    cluster.run()
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay one raft simulation seed.")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("-v", "--verbose", action="store_true", help="trace every event")
    args = parser.parse_args(argv)
    if args.verbose:
        handler = logging.StreamHandler(sys.stdout)
        logging.getLogger("raft").addHandler(handler)
        logging.getLogger("raft").setLevel(logging.DEBUG)
    try:
        c = run_seed(args.seed, args.verbose)
    except SafetyViolation as exc:
        print(exc)
        return 1
    print(
        f"seed {args.seed}: ok; {len(c.history)} ops, {len(c.acked)} acked writes, "
        f"terms {max(c.leader_of_term, default=0)}, t={c.clock.now:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
