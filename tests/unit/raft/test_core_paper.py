"""The sans-IO core driven by hand, message by message, against the paper's figures."""

from __future__ import annotations

import random

from agent.raft.config import RaftConfig
from agent.raft.core import RaftCore
from agent.raft.messages import (
    VOTER,
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    RequestVote,
    Role,
    ServerInfo,
    VoteResponse,
)

IDS = ["s1", "s2", "s3", "s4", "s5"]
SERVERS = tuple(ServerInfo(i, i, VOTER) for i in IDS)
CFG = RaftConfig.dev()


def _elect(core: RaftCore, voters: list[str]) -> None:
    """Run core's pre-vote and election with grants from `voters`."""
    core.tick(core.next_deadline())
    assert core.role == Role.PRE_CANDIDATE
    for v in voters:
        core.step(VoteResponse(core.term + 1, v, core.id, True, pre_vote=True))
    assert core.role == Role.CANDIDATE
    for v in voters:
        core.step(VoteResponse(core.term, v, core.id, True))
    assert core.role == Role.LEADER


def test_figure_8_old_term_entry_is_not_committed_by_counting() -> None:
    """§5.4.2, Figure 8 (c): s1 leads term 4 holding (index 2, term 2), now on a majority.
    It must not commit index 2 until its own term-4 entry is on a majority too."""
    log = [
        Entry(1, 1, EntryKind.CONFIGURATION, servers=SERVERS),
        Entry(2, 2, EntryKind.COMMAND, b"x"),
    ]
    s1 = RaftCore("s1", CFG, random.Random(1), hard_state=HardState(3, None), entries=log)
    _elect(s1, ["s2", "s3"])
    assert s1.term == 4
    rd = s1.ready()
    s1.advance(rd)  # the no-op (3, 4) is on s1's disk
    assert s1.entry(3).kind == EntryKind.NOOP and s1.entry(3).term == 4
    for peer in ("s2", "s3"):
        s1.step(AppendResponse(4, peer, "s1", True, 2))
    assert s1.commit_index == 0  # (2, 2) is on s1, s2, s3 — and still not committed
    for peer in ("s2", "s3"):
        s1.step(AppendResponse(4, peer, "s1", True, 3))
    assert s1.commit_index == 3  # the term-4 entry commits, and 2 with it
    assert [e.index for e in s1.ready().committed] == [1, 2, 3]


def test_5_4_1_vote_denied_to_a_less_up_to_date_log() -> None:
    log = [Entry(1, 1, EntryKind.CONFIGURATION, servers=SERVERS), Entry(2, 3, EntryKind.NOOP)]
    s2 = RaftCore("s2", CFG, random.Random(2), hard_state=HardState(3, None), entries=log)
    s2.step(RequestVote(4, "s5", "s2", last_index=5, last_term=2))  # longer but older term
    rd = s2.ready()
    assert rd.messages == [VoteResponse(4, "s2", "s5", False)]
    s2.step(RequestVote(4, "s4", "s2", last_index=2, last_term=3))
    rd = s2.ready()
    assert rd.messages == [VoteResponse(4, "s2", "s4", True)]
    assert rd.hard_state == HardState(4, "s4")  # persisted with the grant (§5.1)
    s2.step(RequestVote(4, "s3", "s2", last_index=2, last_term=3))
    assert s2.ready().messages == [VoteResponse(4, "s2", "s3", False)]  # one vote per term


def test_5_3_follower_truncates_conflicting_suffix_and_hints_conflict_term() -> None:
    log = [
        Entry(1, 1, EntryKind.CONFIGURATION, servers=SERVERS),
        Entry(2, 2, EntryKind.COMMAND, b"a"),
        Entry(3, 2, EntryKind.COMMAND, b"b"),
        Entry(4, 2, EntryKind.COMMAND, b"c"),
    ]
    f = RaftCore("s2", CFG, random.Random(3), hard_state=HardState(2, None), entries=log)
    f.step(AppendEntries(3, "s1", "s2", 4, 3, (), 0))
    (resp,) = f.ready().messages
    assert isinstance(resp, AppendResponse) and not resp.success
    assert (resp.conflict_term, resp.conflict_index) == (2, 2)  # skip all of term 2 at once
    new = (Entry(2, 3, EntryKind.NOOP), Entry(3, 3, EntryKind.COMMAND, b"z"))
    f.step(AppendEntries(3, "s1", "s2", 1, 1, new, 3))
    rd = f.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(2, 3), (3, 3)]
    assert f.last_index == 3 and f.commit_index == 3
    assert rd.messages == [AppendResponse(3, "s2", "s1", True, 3)]


def test_thesis_6_2_follower_in_lease_ignores_a_disruptive_candidate() -> None:
    log = [Entry(1, 1, EntryKind.CONFIGURATION, servers=SERVERS)]
    f = RaftCore("s2", CFG, random.Random(4), hard_state=HardState(1, None), entries=log)
    f.step(AppendEntries(2, "s1", "s2", 1, 1, (), 0))
    f.advance(f.ready())
    f.step(RequestVote(7, "s5", "s2", last_index=9, last_term=6))
    rd = f.ready()
    assert f.term == 2 and rd.messages == [] and rd.hard_state is None


def test_5_3_fast_backtracking_needs_few_round_trips() -> None:
    """A follower holding 50 entries of a term the leader never had catches up in a couple of
    round trips, not 50: rejections carry the conflicting term and its first index (§5.3)."""
    cfg = Entry(1, 1, EntryKind.CONFIGURATION, servers=SERVERS[:3])
    common = [cfg] + [Entry(i, 1, EntryKind.COMMAND, b"c") for i in range(2, 11)]
    leader_log = common + [Entry(i, 3, EntryKind.COMMAND, b"L") for i in range(11, 61)]
    stale_log = common + [Entry(i, 2, EntryKind.COMMAND, b"F") for i in range(11, 61)]
    leader = RaftCore(
        "s1", CFG, random.Random(5), hard_state=HardState(3, None), entries=leader_log
    )
    follower = RaftCore(
        "s2", CFG, random.Random(6), hard_state=HardState(2, None), entries=stale_log
    )
    _elect(leader, ["s3"])
    rounds = 0
    while follower.last_index != leader.last_index or follower.term_at(60) != 3:
        rounds += 1
        assert rounds < 40, "no convergence"
        rd = leader.ready()
        leader.advance(rd)
        for m in rd.early_messages + rd.messages:
            if m.to == "s2":
                follower.step(m)
        frd = follower.ready()
        follower.advance(frd)
        for m in frd.messages:
            leader.step(m)
    assert rounds <= 4
    assert [follower.term_at(i) for i in (10, 11, 60, 61)] == [1, 3, 3, 4]
