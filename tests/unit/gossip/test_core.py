"""The Serf/memberlist core driven by hand: bad input is dropped and counted, never
raised; user events dedup; queries and keyring ops; coalescing."""

from __future__ import annotations

import dataclasses
import logging
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.gossip.config import Profile
from agent.gossip.keyring import Keyring, decode_key, encode_key, generate_key
from agent.gossip.messages import MessageType, compound, encode
from agent.gossip.serf import Serf
from agent.gossip.serf_types import UserEvent, UserEventError
from agent.sim.gossip_sim import GossipCluster


@pytest.fixture(autouse=True)
def _quiet_logs() -> object:
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def make(name: str = "a", profile: Profile | None = None) -> Serf:
    s = Serf(
        node_name=name,
        addr="10.0.0.1",
        port=8301,
        tags={"role": "node"},
        profile=profile or Profile.local(),
        rng=random.Random(1),
    )
    s.start(0.0)
    s.take_events()
    return s


def member_view(s: Serf) -> list[tuple[str, str]]:
    return sorted((m.name, m.status) for m in s.members())


BAD_PACKETS = [
    b"",
    b"\xc1",  # never-used msgpack byte
    b"\x92\x00",  # truncated array
    msgpack.packb({"not": "a list"}),
    msgpack.packb([[99, {}]]),  # unknown type
    msgpack.packb([[int(MessageType.ALIVE), {"Node": 5}]]),  # wrong field types
    msgpack.packb([[int(MessageType.ALIVE), {"Node": "x", "Addr": "1.2.3.4", "Port": 70000}]]),
    msgpack.packb([["ping", {}]]),
    msgpack.packb([[int(MessageType.USER), {"Data": b"\xff\xff"}]]),
    msgpack.packb([[int(MessageType.USER), {"Data": msgpack.packb([3, {"LTime": -1}])}]]),
    msgpack.packb([[int(MessageType.PUSH_PULL), {"Nodes": [[1, 2, 3]]}]]),
    b"\xdc\xff\xff" + b"\x90" * 10,  # array claiming 65535 items
]


@pytest.mark.parametrize("packet", BAD_PACKETS)
def test_bad_packets_are_dropped_and_counted(packet: bytes) -> None:
    s = make()
    before = member_view(s)
    s.receive_packet("10.0.0.9:8301", packet, 1.0)
    s.receive_stream("10.0.0.9:1234", packet, 1.0)
    s.receive_stream_reply("10.0.0.9:8301", packet, 1.0)
    assert member_view(s) == before
    dropped = sum(v for k, v in s.metrics.items() if k.startswith("drop."))
    assert dropped >= 1
    s.tick(2.0)  # still works


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    s = make()
    s.receive_packet("10.0.0.9:8301", data, 1.0)
    s.receive_stream("10.0.0.9:1234", data, 1.0)
    s.notify_msg(data)
    s.merge_remote_state(data, join=True)
    assert member_view(s) == [("a", "alive")]


def test_ping_for_another_node_is_ignored_and_ack_carries_coordinate() -> None:
    s = make()
    s.receive_packet(
        "10.0.0.9:8301", compound([encode(MessageType.PING, {"Seq": 1, "Node": "zz"})]), 1
    )
    assert s.take_outgoing() == [] and s.metrics["drop.unexpected_ping"] == 1
    s.receive_packet(
        "10.0.0.9:8301", compound([encode(MessageType.PING, {"Seq": 2, "Node": "a"})]), 1
    )
    (out,) = s.take_outgoing()
    assert out.dest == "10.0.0.9:8301" and not out.stream
    ack = msgpack.unpackb(out.data)[0]  # broadcasts may be piggybacked after it
    assert ack[0] == MessageType.ACK and ack[1]["Seq"] == 2
    assert "Vec" in msgpack.unpackb(ack[1]["Payload"])


def test_suspicion_about_self_is_refuted_with_higher_incarnation() -> None:
    s = make()
    inc = s.memberlist.incarnation
    msg = encode(MessageType.SUSPECT, {"Inc": inc + 5, "Node": "a", "From": "b"})
    s.receive_packet("10.0.0.9:8301", compound([msg]), 1.0)
    assert s.memberlist.incarnation > inc + 5
    assert s.memberlist.local().incarnation == s.memberlist.incarnation


def test_user_event_size_limit_and_dedup() -> None:
    s = make()
    with pytest.raises(UserEventError, match="512"):
        s.user_event("big", b"x" * 600, coalesce=False)
    ev = s.user_event("deploy", b"1", coalesce=False)
    assert s.take_events() == [ev]
    body = {"LTime": ev.ltime, "Name": "deploy", "Payload": b"1", "CC": False}
    s.notify_msg(msgpack.packb([3, body]))  # the same event gossiped back: dropped
    assert s.take_events() == []
    body2 = dict(body, Payload=b"2")  # same time, other payload: a different event
    s.notify_msg(msgpack.packb([3, body2]))
    assert s.take_events() == [UserEvent(ev.ltime, "deploy", b"2", False)]


def test_old_events_beyond_the_buffer_are_dropped() -> None:
    s = make()
    s.event_clock.witness(10_000)
    s.notify_msg(msgpack.packb([3, {"LTime": 5, "Name": "old", "Payload": b"", "CC": False}]))
    assert s.take_events() == []


def test_coalescing_delivers_latest_event_per_name() -> None:
    profile = dataclasses.replace(
        Profile.local(), user_coalesce_period=1.0, user_quiescent_period=0.5
    )
    s = make(profile=profile)
    for i in range(3):
        s.user_event("deploy", str(i).encode(), coalesce=True)
    s.user_event("other", b"", coalesce=True)
    assert s.take_events() == []
    assert s.next_deadline() <= 0.5
    s.tick(0.5)
    got = sorted((e.name, e.payload) for e in s.take_events() if isinstance(e, UserEvent))
    assert got == [("deploy", b"2"), ("other", b"")]


def test_keyring_query_installs_on_every_member() -> None:
    c = GossipCluster(5)
    key = decode_key(generate_key())
    nodes = c.converged(5)
    for n in nodes:
        n.serf.keyring = Keyring([key])
    new = generate_key()
    qid, deadline = nodes[0].serf.query(
        "_serf_install-key", msgpack.packb({"Key": new}), timeout=2.0
    )
    pending = nodes[0].serf.pending_queries[qid]
    c._after(nodes[0])
    assert c.run_until(deadline, lambda: len(pending.responses) == 5)
    for n in nodes:
        assert n.serf.keyring is not None
        assert new in [encode_key(k) for k in n.serf.keyring.list_keys()]
    for data in pending.responses.values():
        assert msgpack.unpackb(data)["Result"] is True


def test_force_leave_turns_failed_into_left() -> None:
    c = GossipCluster(2)
    nodes = c.converged(5)
    c.crash(nodes[4])
    assert c.run_until(60, lambda: c.all_see("node4", "failed"))
    nodes[0].serf.force_leave("node4")
    c._after(nodes[0])
    # Gossip may miss a member at N=5 (2 transmits); push/pull carries left members too.
    deadline = c.clock.now + Profile.local().push_pull_interval + 5
    assert c.run_until(deadline, lambda: c.all_see("node4", "left"))


def test_force_leave_prune_forgets_the_member_everywhere() -> None:
    c = GossipCluster(3)
    nodes = c.converged(4)
    c.crash(nodes[3])
    assert c.run_until(60, lambda: c.all_see("node3", "failed"))
    nodes[0].serf.force_leave("node3", prune=True)
    c._after(nodes[0])
    live = nodes[:3]

    def forgotten() -> bool:
        return all("node3" not in {m.name for m in n.serf.members()} for n in live)

    deadline = c.clock.now + Profile.local().push_pull_interval + 5
    assert c.run_until(deadline, forgotten)


def test_replayed_old_alive_does_not_resurrect_a_dead_member() -> None:
    s = make()
    alive = encode(
        MessageType.ALIVE,
        {
            "Inc": 1,
            "Node": "b",
            "Addr": "10.0.0.2",
            "Port": 8301,
            "Meta": b"",
            "Vsn": [1, 5, 2, 2, 5, 4],
        },
    )
    s.receive_packet("10.0.0.2:8301", compound([alive]), 1.0)
    assert ("b", "alive") in member_view(s)
    dead = encode(MessageType.DEAD, {"Inc": 1, "Node": "b", "From": "c"})
    s.receive_packet("10.0.0.3:8301", compound([dead]), 2.0)
    assert ("b", "failed") in member_view(s)
    s.receive_packet("10.0.0.2:8301", compound([alive]), 3.0)  # replayed
    assert ("b", "failed") in member_view(s)
    newer = encode(
        MessageType.ALIVE,
        {
            "Inc": 2,
            "Node": "b",
            "Addr": "10.0.0.2",
            "Port": 8301,
            "Meta": b"",
            "Vsn": [1, 5, 2, 2, 5, 4],
        },
    )
    s.receive_packet("10.0.0.2:8301", compound([newer]), 4.0)
    assert ("b", "alive") in member_view(s)


def test_failed_member_is_reaped_after_reconnect_timeout() -> None:
    profile = dataclasses.replace(Profile.local(), reconnect_timeout=5.0)
    c = GossipCluster(4, profile=profile)
    nodes = c.converged(4)
    c.crash(nodes[3])
    assert c.run_until(60, lambda: c.status_of(nodes[0], "node3") == "failed")
    assert c.run_until(c.clock.now + 10, lambda: c.status_of(nodes[0], "node3") is None)
    assert "node0" in c.saw("member-reap", "node3")


def test_host_names_on_the_wire_are_refused() -> None:
    """Addresses in gossip must be IP literals: a name would make the agent do a lookup."""
    s = make()
    alive = encode(
        MessageType.ALIVE,
        {
            "Inc": 1,
            "Node": "b",
            "Addr": "evil.example",
            "Port": 8301,
            "Meta": b"",
            "Vsn": [1, 5, 2, 2, 5, 4],
        },
    )
    ping_req = encode(
        MessageType.INDIRECT_PING, {"Seq": 1, "Target": "x", "Addr": "evil.example:8301"}
    )
    s.receive_packet("10.0.0.2:8301", compound([alive, ping_req]), 1.0)
    assert member_view(s) == [("a", "alive")]
    assert s.metrics["drop.malformed"] == 2
    assert all("evil" not in o.dest for o in s.take_outgoing())


@pytest.mark.parametrize(
    "payload",
    [b"\x81\x80\x00", b"\xc1", msgpack.packb({"Vec": "x"}), msgpack.packb([1] * 3)],
)
def test_bad_ack_payloads_and_keyring_requests_are_counted(payload: bytes) -> None:
    """Coordinates in acks and keyring query payloads come from the network too."""
    s = make()
    node = s.memberlist.local()
    s.notify_ping_complete(node, 0.01, payload)
    assert s.metrics["drop.bad_coordinate"] == 1
    s.keyring = Keyring([decode_key(generate_key())])
    replies: list[bytes] = []
    s._internal_query("_serf_install-key", payload, replies.append)
    assert msgpack.unpackb(replies[0])["Result"] is False


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.dictionaries(
    st.sampled_from(["Seq", "Node", "Inc", "From", "Addr", "Port", "Meta", "Vsn", "Data",
                     "Nodes", "User", "Join", "Target", "Nack", "Payload", "LTime", "Name",
                     "ID", "Filters", "CC", "Timeout", "Events", "StatusLTimes"]),
    _values,
    max_size=8,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 12), _bodies)
def test_well_formed_msgpack_with_wrong_shapes_never_raises(kind: int, body: dict) -> None:  # type: ignore[type-arg]
    s = make()
    s.receive_packet("10.0.0.9:8301", compound([msgpack.packb([kind, body])]), 1.0)
    s.receive_stream("10.0.0.9:1234", msgpack.packb([kind, body]), 1.0)
    s.receive_stream_reply("10.0.0.9:8301", msgpack.packb([kind, body]), 1.0)
    s.notify_msg(msgpack.packb([kind % 6, body]))
    s.merge_remote_state(msgpack.packb(body), join=True)
    s.tick(2.0)
    assert s.local_member().status == "alive"


def test_packets_stay_under_the_udp_limit_with_many_broadcasts() -> None:
    """memberlist: compound messages are filled up to UDPBufferSize (1400) and no more."""
    s = make()
    nodes = [
        [f"node-with-a-longish-name-{i}", f"10.1.{i // 250}.{i % 250 + 1}", 8301,
         b"\xff\x82\xa4role\xa4node\xa2dc\xa3dc1", 1, 0, [1, 5, 2, 2, 5, 4]]
        for i in range(200)
    ]  # fmt: skip
    pp = encode(MessageType.PUSH_PULL, {"Join": False, "Nodes": nodes, "User": b""})
    s.receive_stream("10.1.0.1:5000", pp, 1.0)
    s.take_outgoing()
    sizes: list[int] = []
    now = 1.0
    for _ in range(20):
        now += 0.2
        s.tick(now)
        sizes += [len(o.data) for o in s.take_outgoing() if not o.stream]
    assert sizes and max(sizes) <= Profile.local().udp_buffer_size
    assert max(sizes) > 1000  # and they are filled, not sent one message at a time


def _alive(name: str, ip: str) -> bytes:
    body = {
        "Inc": 1,
        "Node": name,
        "Addr": ip,
        "Port": 8301,
        "Meta": b"",
        "Vsn": [1, 5, 2, 2, 5, 4],
    }
    return encode(MessageType.ALIVE, body)


PEERS = {"b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.4"}


def probing() -> tuple[Serf, dict[str, str], float]:
    """A member "a" that knows b, c and d, ticked until its first probe is under way;
    returns it, the peers' addresses and the time."""
    s = make()
    s.receive_packet("10.0.0.2:8301", compound([_alive(n, ip) for n, ip in PEERS.items()]), 0.1)
    now = 0.1
    while s.memberlist.probe is None:
        now = s.memberlist.next_deadline()
        s.tick(now)
    return s, PEERS, now


def test_refused_tcp_ping_fails_the_probe_without_waiting_for_the_interval() -> None:
    """A refused TCP fallback (nothing listens on the member's port) makes the probe fail at
    once, after the direct ping timed out; a refusal from another address, or before the
    direct ping timed out, changes nothing."""
    s, peers, now = probing()
    ml = s.memberlist
    probe = ml.probe
    assert probe is not None
    target = f"{peers[probe.target]}:8301"
    s.stream_refused(target, now)  # direct ping not timed out yet: too early to tell
    assert ml.probe is probe
    s.take_outgoing()
    s.tick(probe.timeout_at)
    assert probe.indirect
    tcp = [o for o in s.take_outgoing() if o.stream]
    assert [o.dest for o in tcp] == [target]
    other = next(f"{ip}:8301" for n, ip in peers.items() if n != probe.target)
    s.stream_refused(other, probe.timeout_at + 0.001)
    assert ml.probe is probe
    assert (probe.target, "alive") in member_view(s)
    s.stream_refused(target, probe.timeout_at + 0.002)
    assert ml.probe is None
    assert probe.timeout_at + 0.002 < probe.deadline
    assert ml.node_map[probe.target].state.name == "SUSPECT"
    assert ml.metrics["probe.refused"] == 1
    assert ml.awareness.score == 0


def test_icmp_unreachable_for_the_ping_moves_the_indirect_phase_up_but_does_not_fail() -> None:
    """Port unreachable for the direct ping: the TCP ping and ping-reqs go out at once rather
    than after probe_timeout; the member is not suspected until the TCP ping is refused too."""
    s, peers, now = probing()
    ml = s.memberlist
    probe = ml.probe
    assert probe is not None and not probe.indirect
    target = f"{peers[probe.target]}:8301"
    other = next(f"{ip}:8301" for n, ip in peers.items() if n != probe.target)
    s.take_outgoing()
    s.packet_refused(other, now + 0.001)  # not the probe's target: nothing
    assert not probe.indirect and s.take_outgoing() == []
    s.packet_refused(target, now + 0.002)
    assert probe.indirect and ml.probe is probe
    out = s.take_outgoing()
    assert [o.dest for o in out if o.stream] == [target]
    assert [o for o in out if not o.stream]  # ping-reqs
    assert (probe.target, "alive") in member_view(s)
    s.stream_refused(target, now + 0.003)
    assert ml.node_map[probe.target].state.name == "SUSPECT"
    assert ml.metrics["probe.unreachable"] == 1 and ml.metrics["probe.refused"] == 1


def test_killed_members_are_detected_sooner_when_their_host_refuses() -> None:
    """On the simulator at N=10 (LAN profile): a member whose process died on a live host
    (UDP unreachable, TCP refused) is seen failed by all sooner than one whose host went
    silent, over the same seeds; the silent case still takes memberlist's time."""
    logging.disable(logging.WARNING)

    def detect(seed: int, refuse: bool) -> float:
        c = GossipCluster(seed, profile=Profile.lan())
        nodes = [c.add_node(f"n{i}") for i in range(10)]
        for x in nodes[1:]:
            c.join(x, nodes[0])
        assert c.run_until(30, c.fully_converged)
        c.run_for(3 + seed * 0.37)
        victim, others = nodes[5], nodes[:5] + nodes[6:]
        c.crash(victim, refuse=refuse)
        t0 = c.clock.now
        assert c.run_until(t0 + 60, lambda: c.all_see(victim.name, "failed", others))
        return c.clock.now - t0

    seeds = range(12)
    refused = sorted(detect(s, True) for s in seeds)
    silent = sorted(detect(s, False) for s in seeds)
    med_refused, med_silent = refused[len(refused) // 2], silent[len(silent) // 2]
    assert med_refused < med_silent - 0.3, (refused, silent)
    assert 4.5 < med_silent < 8.0, silent


def test_name_conflict_the_impostor_loses_the_vote_and_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second node claiming a member's name: the members warn, the impostor asks them
    (`_serf_conflict`) which address they know for its name, finds itself in the minority
    and shuts down; the original keeps its name and address everywhere."""
    logging.disable(logging.NOTSET)
    caplog.set_level(logging.INFO)
    c = GossipCluster(7, profile=Profile.local())
    nodes = c.converged(5)
    original = nodes[2]
    impostor = c.add_node(original.name)
    assert impostor.addr != original.addr
    c.join(impostor, nodes[0])
    c.run_for(10.0)
    assert impostor.serf.state == "shutdown" and not impostor.up
    assert "minority in name conflict resolution, quiting [0 / 4]" in caplog.text
    assert f"Name conflict for '{original.name}' both" in caplog.text
    assert original.serf.state == "alive"
    for n in nodes:
        m = next(m for m in n.serf.members() if m.name == original.name)
        assert (f"{m.addr}:{m.port}", m.status) == (original.addr, "alive"), n.name


def test_conflict_query_answers_and_bad_answers() -> None:
    s = make()
    alive = _alive("b", "10.0.0.2")
    s.receive_packet("10.0.0.2:8301", compound([alive]), 0.1)
    replies: list[bytes] = []
    s._internal_query("_serf_conflict", b"b", replies.append)
    s._internal_query("_serf_conflict", b"nobody", replies.append)
    s._internal_query("_serf_conflict", b"a", replies.append)  # about us: no answer
    assert [msgpack.unpackb(r) for r in replies] == [{"Addr": "10.0.0.2", "Port": 8301}, None]
    # The claimant counts answers; garbage is dropped, not counted.
    me = {"Addr": "10.0.0.1", "Port": 8301}
    answers = {"b": msgpack.packb(me), "c": b"\xc1", "d": msgpack.packb(None)}
    s._resolve_conflict({**answers, "e": msgpack.packb(me)})
    assert s.state == "alive" and s.shutdown_reason is None  # 2 of 3 answers: majority
    s._resolve_conflict({"b": msgpack.packb(None), "d": msgpack.packb(None)})
    assert s.state == "shutdown" and s.shutdown_reason == "name conflict"
