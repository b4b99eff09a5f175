"""Raft on the deterministic simulator: the paper's safety properties under random faults,
liveness after the faults stop, and one scenario per mechanism.

Section numbers are of Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm (Extended Version)"; "thesis" is Ongaro's dissertation.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator

import msgpack
import pytest

from agent.raft.messages import (
    NONVOTER,
    VOTER,
    AppendEntries,
    EntryKind,
    InstallSnapshot,
    NotLeader,
    ReadState,
    Ready,
    Role,
    ServerInfo,
    TimeoutNow,
)
from agent.sim.raft_cluster import SafetyViolation, SimCluster, SimServer, run_seed


@pytest.fixture(autouse=True)
def _quiet_raft() -> Iterator[None]:
    logger = logging.getLogger("raft")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def test_random_faults_keep_safety_and_liveness(seeds: range) -> None:
    """§5.2 election safety, §5.3 log matching, §5.4 leader completeness and state machine
    safety after every event; no acknowledged write lost across crashes (§5.1 persistence);
    linearizable client histories (thesis §6.3); liveness once the network heals."""
    failures = []
    acked = terms = 0
    events: Counter[str] = Counter()
    for seed in seeds:
        try:
            c = run_seed(seed)
        except SafetyViolation as exc:
            failures.append(str(exc).splitlines()[0] if len(failures) > 3 else str(exc))
            continue
        acked += len(c.acked)
        terms += max(c.leader_of_term, default=0)
        events.update(c.events)
    assert not failures, f"{len(failures)} of {len(seeds)} seeds failed:\n" + "\n".join(failures)
    if len(seeds) >= 50:
        # The faults really happened: many elections, writes, and compactions.
        assert terms > 2 * len(seeds)
        assert acked > 20 * len(seeds)
        for what in ("crashes", "snapshots installed", "config changes", "transfers"):
            assert events[what] > len(seeds) // 10, f"too few {what}: {events}"
        # The linearizability search finished (within its budget) for nearly every history.
        assert events["linearizability checks"] == len(seeds)
        assert events["linearizability inconclusive"] <= len(seeds) // 100, events


def _cluster(seed: int = 1, size: int = 3) -> SimCluster:
    return SimCluster(seed, size=size)


def _run_until(c: SimCluster, cond: Callable[[], bool], within: float) -> None:
    assert c.clock.run_until(c.clock.now + within, cond), "condition not reached in time"


def _leader(c: SimCluster) -> SimServer:
    _run_until(c, lambda: c.leader() is not None, 2.0)
    lead = c.leader()
    assert lead is not None and lead.core is not None
    return lead


def _write(c: SimCluster, key: str, value: str, within: float = 1.0) -> int:
    lead = _leader(c)
    assert lead.core is not None
    index, _ = lead.core.propose(msgpack.packb([key, value]))
    lead.after_event()
    _run_until(c, lambda: all(s.applied_index >= index for s in c.servers.values()), within)
    return index


def test_5_2_one_leader_is_elected_without_faults() -> None:
    c = _cluster()
    lead = _leader(c)
    assert c.clock.now < 2 * c.config.election_timeout + 0.05
    assert sum(1 for s in c.servers.values() if s.core and s.core.role == Role.LEADER) == 1
    assert lead.core is not None and lead.core.term == 2


def test_thesis_9_6_rejoining_partitioned_server_does_not_depose_leader() -> None:
    """Pre-vote: a server cut off for many election timeouts comes back at its old term."""
    c = _cluster()
    lead = _leader(c)
    assert lead.core is not None
    term = lead.core.term
    _write(c, "a", "1")  # everyone has heard from the leader
    loner = next(s for s in c.servers.values() if s is not lead)
    c.net.partition({loner.id}, {s for s in c.ids if s != loner.id})
    c.clock.run_until(c.clock.now + 10 * c.config.election_timeout)
    assert loner.core is not None and loner.core.term == term  # never bumped its term
    c.net.heal()
    c.clock.run_until(c.clock.now + 5 * c.config.election_timeout)
    assert lead.core.role == Role.LEADER and lead.core.term == term


def test_thesis_6_2_leader_without_quorum_steps_down_within_lease() -> None:
    """Check-quorum: an isolated leader steps down; the majority elects a new one."""
    c = _cluster()
    lead = _leader(c)
    assert lead.core is not None
    c.net.partition({lead.id}, {s for s in c.ids if s != lead.id})
    cut = c.clock.now
    _run_until(c, lambda: lead.core is not None and lead.core.role != Role.LEADER, 1.0)
    assert c.clock.now - cut <= c.config.leader_lease_timeout + c.config.heartbeat_interval
    _run_until(c, lambda: c.leader() not in (None, lead), 1.0)


def test_5_4_2_new_leader_commits_a_noop_of_its_own_term() -> None:
    """§5.4.2 / §8: a new leader appends a no-op of its term; committing it commits the rest."""
    c = _cluster()
    _write(c, "a", "1")
    lead = _leader(c)
    assert lead.core is not None
    c.net.partition({lead.id}, {s for s in c.ids if s != lead.id})
    _run_until(c, lambda: c.leader() not in (None, lead), 2.0)
    new = c.leader()
    assert new is not None and new.core is not None
    noop = new.core.entry(new.core.last_index)
    assert noop.kind == EntryKind.NOOP and noop.term == new.core.term
    _run_until(c, lambda: new.core is not None and new.core.commit_index >= noop.index, 1.0)
    assert new.kv == {"a": "1"}  # the earlier term's write is committed and applied with it


def test_5_3_pipelining_and_group_commit_batch_proposals() -> None:
    """Proposals queued during one disk write go into one Ready and one AppendEntries each."""
    c = _cluster()
    lead = _leader(c)
    _write(c, "warm", "up")
    core = lead.core
    assert core is not None
    for i in range(6):
        core.propose(msgpack.packb(["k", f"v{i}"]))
    rd = core.ready()
    assert len(rd.entries) == 6
    appends = [m for m in rd.early_messages if isinstance(m, AppendEntries) and m.entries]
    assert len(appends) == 2 and all(len(m.entries) == 6 for m in appends)
    # Pipelining: more AppendEntries go out before the first is acknowledged.
    for i in range(20):
        core.propose(msgpack.packb(["k", f"w{i}"]))
    rd2 = core.ready()
    per_peer = [m for m in rd2.early_messages if isinstance(m, AppendEntries) and m.entries]
    assert len(per_peer) >= 4  # 20 entries, 8 per message, to 2 followers, in flight together


def test_5_3_deposed_leaders_uncommitted_entries_are_replaced() -> None:
    """A leader cut off from the quorum keeps appending; when it rejoins, the new leader's
    log overwrites those uncommitted entries (§5.3), and nothing committed is lost."""
    c = _cluster()
    lead = _leader(c)
    _write(c, "a", "1")
    assert lead.core is not None
    c.net.partition({lead.id}, {s for s in c.ids if s != lead.id})
    for i in range(40):
        try:
            lead.core.propose(msgpack.packb(["x", f"lost{i}"]))
        except NotLeader:
            break
        lead.after_event()
    _run_until(c, lambda: c.leader() not in (None, lead), 2.0)
    _write_quorum(c, "b", "2")
    c.net.heal()
    new = c.leader()
    assert new is not None and new.core is not None
    _run_until(c, lambda: lead.applied_index >= new.core.commit_index, 2.0)  # type: ignore[union-attr]
    assert lead.kv == {"a": "1", "b": "2"}
    assert lead.core is not None and lead.core.last_index == new.core.last_index


def test_7_lagging_follower_gets_a_snapshot_in_chunks() -> None:
    c = _cluster()
    lead = _leader(c)
    victim = next(s for s in c.servers.values() if s is not lead)
    victim.crash()
    for i in range(120):  # past snapshot_threshold (40) + trailing_logs (10)
        _write_quorum(c, f"k{i % 7}", f"v{i}")
    assert lead.core is not None and lead.core.snap is not None
    chunks = []
    victim.boot()
    original = victim.receive

    def spy(src: str, msg: object) -> None:
        if isinstance(msg, InstallSnapshot):
            chunks.append(msg.offset)
        original(src, msg)  # type: ignore[arg-type]

    c.net.attach(victim.id, spy)
    _run_until(c, lambda: victim.kv == lead.kv and victim.applied_index >= 121, 3.0)
    assert len(set(chunks)) > 1  # the snapshot came in several chunks
    assert victim.disk.snapshot is not None  # and was persisted before it was used


def _write_quorum(c: SimCluster, key: str, value: str) -> None:
    lead = _leader(c)
    assert lead.core is not None
    index, _ = lead.core.propose(msgpack.packb([key, value]))
    lead.after_event()
    _run_until(c, lambda: lead.applied_index >= index, 1.0)


def test_thesis_3_10_leadership_transfer_with_timeout_now() -> None:
    c = _cluster()
    lead = _leader(c)
    _write(c, "a", "1")
    assert lead.core is not None
    target = next(s for s in c.ids if s != lead.id)
    sent = []
    original = c.net.send

    def spy(src: str, dst: str, msg: object) -> None:
        if isinstance(msg, TimeoutNow):
            sent.append(dst)
        original(src, dst, msg)

    c.net.send = spy  # type: ignore[method-assign]
    lead.core.transfer_leadership(target)
    lead.after_event()
    _run_until(c, lambda: c.leader() is not None and c.leader().id == target, 1.0)  # type: ignore[union-attr]
    assert sent == [target]
    assert _write(c, "b", "2") > 0


def test_thesis_4_1_membership_add_nonvoter_promote_and_remove() -> None:
    c = _cluster(size=4)
    # Four voters bootstrapped; the fourth is removed, re-added as a non-voter, then promoted.
    lead = _leader(c)
    assert lead.core is not None
    fourth = c.ids[3]
    three = tuple(ServerInfo(i, i, VOTER) for i in c.ids[:3])
    assert lead.core.servers[:3] == three
    without = three
    _change(c, without)
    assert c.leader() is not None
    _change(c, (*three, ServerInfo(fourth, fourth, NONVOTER)))
    _write(c, "k", "v")
    lead = _leader(c)
    assert lead.core is not None and lead.core.progress[fourth].match == lead.core.last_index
    _change(c, (*three, ServerInfo(fourth, fourth, VOTER)))
    assert c.servers[fourth].core is not None and c.servers[fourth].core.is_voter()
    # Removing the leader itself: it steps down once the change commits (thesis §4.2.2).
    lead = _leader(c)
    rest = tuple(s for s in lead.core.servers if s.id != lead.id)  # type: ignore[union-attr]
    _change(c, rest)
    _run_until(c, lambda: c.leader() is not None and c.leader() is not lead, 2.0)


def _change(c: SimCluster, servers: tuple[ServerInfo, ...]) -> None:
    lead = _leader(c)
    assert lead.core is not None
    _run_until(
        c, lambda: lead.core is not None and lead.core.commit_index >= lead.core.last_index, 1.0
    )
    index, _ = lead.core.propose_config(servers)
    lead.after_event()
    _run_until(c, lambda: lead.core is not None and lead.core.commit_index >= index, 1.0)


def test_thesis_6_4_read_index_fails_when_leadership_is_lost() -> None:
    c = _cluster()
    lead = _leader(c)
    _write(c, "a", "1")
    assert lead.core is not None
    answered: list[ReadState] = []
    apply = lead.apply

    def spy(rd: Ready) -> None:
        answered.extend(rd.reads)
        apply(rd)

    lead.apply = spy  # type: ignore[method-assign]
    # A read confirmed by a quorum round is answered with the commit index.
    lead.core.read_index(1)
    lead.after_event()
    _run_until(c, lambda: bool(answered), 0.5)
    assert answered == [ReadState(1, lead.core.commit_index)]
    # Cut off from the quorum, the leader cannot confirm: the read fails, it never guesses.
    c.net.partition({lead.id}, {s for s in c.ids if s != lead.id})
    lead.core.read_index(2)
    lead.after_event()
    _run_until(c, lambda: lead.core is not None and lead.core.role != Role.LEADER, 1.0)
    _run_until(c, lambda: len(answered) == 2, 0.5)
    assert answered[1] == ReadState(2, None)


def test_crash_loses_only_the_unfinished_write() -> None:
    """§5.1: what a server acknowledged was on disk; a crash mid-write loses only that Ready."""
    c = _cluster()
    lead = _leader(c)
    _write(c, "a", "1")
    follower = next(s for s in c.servers.values() if s is not lead)
    persisted = dict(follower.disk.entries)
    follower.crash()
    follower.boot()
    assert follower.core is not None
    assert follower.core.last_index == max(persisted)
    _run_until(c, lambda: follower.kv.get("a") == "1", 1.0)


def test_a_seed_replays_exactly_whatever_the_hash_seed() -> None:
    """The one-line replay command a failure prints reproduces the run event for event."""
    c = _cluster(seed=11)
    with pytest.raises(SafetyViolation) as info:
        c.fail("example")
    cmd = str(info.value).split("replay: ", 1)[1]
    assert cmd == ".venv/bin/python -m agent.sim.raft_cluster --seed 11 -v"
    outputs = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-m", "agent.sim.raft_cluster", "--seed", "11", "-v"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=True,
        ).stdout
        assert "seed 11: ok" in out
        outputs.add(out)
    assert len(outputs) == 1


def test_append_entries_are_capped_in_bytes() -> None:
    c = _cluster()
    lead = _leader(c)
    _write(c, "warm", "up")
    core = lead.core
    assert core is not None
    big = "x" * (400 * 1024)
    for _ in range(5):
        core.propose(msgpack.packb(["k", big]))
    rd = core.ready()
    appends = [m for m in rd.early_messages if isinstance(m, AppendEntries) and m.entries]
    assert appends and all(len(m.entries) <= 3 for m in appends)
    assert all(sum(len(e.data) for e in m.entries) <= 1024 * 1024 + 500 * 1024 for m in appends)
