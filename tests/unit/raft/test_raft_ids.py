"""Raft protocol 3's server IDs in the sans-IO core and the address book: a server answers to
its node ID and to its protocol-2 ID (its address); an entry rewritten from one to the other
keeps the server's vote and the leader's knowledge of its log; the most recent word on where a
server is wins (agent/raft/addresses.py)."""

from __future__ import annotations

import random

from agent.raft.addresses import PeerAddresses
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

CFG = RaftConfig.dev()
A1, A2, A3 = "10.0.0.1:8300", "10.0.0.2:8300", "10.0.0.3:8300"
OLD = tuple(ServerInfo(a, a, VOTER) for a in (A1, A2, A3))


def _core(node_id: str, aliases: tuple[str, ...], servers: tuple[ServerInfo, ...]) -> RaftCore:
    boot = Entry(1, 1, EntryKind.CONFIGURATION, servers=servers)
    return RaftCore(
        node_id,
        CFG,
        random.Random(1),
        hard_state=HardState(1, None),
        entries=[boot],
        aliases=aliases,
    )


def test_a_protocol_3_server_in_a_protocol_2_configuration_is_its_address() -> None:
    core = _core("node-2", (A2,), OLD)
    assert core.id == A2 and core.is_voter()
    core.step(RequestVote(2, A1, A2, 1, 1))
    (reply,) = core.ready().messages
    assert isinstance(reply, VoteResponse) and reply.granted and reply.frm == A2


def test_a_follower_answers_under_the_id_it_was_addressed_by() -> None:
    """Thesis §4.1 one change at a time: the leader renamed A2 -> node-2 in an entry the
    follower does not hold yet; it answers as node-2, so the leader's progress counts it."""
    core = _core("node-2", (A2,), OLD)
    core.step(AppendEntries(2, A1, "node-2", 1, 1, (), 1))
    (reply,) = core.ready().messages
    assert isinstance(reply, AppendResponse) and reply.success and reply.frm == "node-2"
    renamed = (OLD[0], ServerInfo("node-2", A2, VOTER), OLD[2])
    entry = Entry(2, 2, EntryKind.CONFIGURATION, servers=renamed)
    core.step(AppendEntries(2, A1, "node-2", 1, 1, (entry,), 2))
    assert core.id == "node-2" and core.is_voter()


def test_a_leader_renamed_keeps_leading_and_the_renamed_follower_keeps_its_progress() -> None:
    core = _core("node-1", (A1,), OLD)
    core.tick(core.next_deadline())
    for v in (A2, A3):
        core.step(VoteResponse(core.term + 1, v, A1, True, pre_vote=True))
    for v in (A2, A3):
        core.step(VoteResponse(core.term, v, A1, True))
    assert core.role == Role.LEADER and core.id == A1

    def acked_by_a2() -> None:
        core.advance(core.ready())
        core.step(AppendResponse(core.term, A2, core.id, True, core.last_index))
        assert core.commit_index == core.last_index

    acked_by_a2()
    core.propose_config((ServerInfo("node-1", A1, VOTER), OLD[1], OLD[2]))
    assert core.id == "node-1" and core.leader_id == "node-1" and core.role == Role.LEADER
    assert set(core.progress) == {A2, A3}
    acked_by_a2()
    match = core.progress[A2].match
    core.propose_config((ServerInfo("node-1", A1, VOTER), ServerInfo("node-2", A2, VOTER), OLD[2]))
    assert set(core.progress) == {"node-2", A3}
    assert core.progress["node-2"].match == match  # same server, same log


def test_the_most_recent_word_on_an_address_wins() -> None:
    book = PeerAddresses()
    book.configuration([ServerInfo("n2", A2, VOTER)])
    assert book.resolve("n2") == A2 and book.resolve("n9") is None
    book.announced("n2", "10.0.0.9:8300")  # restarted elsewhere: its hello says so
    assert book.resolve("n2") == "10.0.0.9:8300"
    book.announced("n5", "10.0.0.5:8300")  # not in the configuration yet: answerable
    assert book.resolve("n5") == "10.0.0.5:8300"
    book.configuration([ServerInfo("n2", "10.0.0.9:8300", VOTER)])  # the leader caught up
    assert book.resolve("n2") == "10.0.0.9:8300"
    book.configuration([ServerInfo("n2", "10.0.0.7:8300", VOTER)])  # a newer move
    assert book.resolve("n2") == "10.0.0.7:8300"
    book.announced(A3, A3)  # a protocol-2 ID is its address: nothing to learn
    assert book.resolve(A3) is None
    assert book.addresses() == {"10.0.0.7:8300", "10.0.0.5:8300"}
