"""The small pure parts of the gossip layer: keyring, suspicion timer, Vivaldi, broadcast
queue, Lamport clock, tags, snapshot file and profiles."""

from __future__ import annotations

import math
import random

import pytest

from agent.gossip import snapshot
from agent.gossip.broadcast import TransmitLimitedQueue
from agent.gossip.config import Profile
from agent.gossip.coordinate import Coordinate, CoordinateClient, CoordinateError
from agent.gossip.keyring import (
    DecryptError,
    Keyring,
    KeyringError,
    decode_key,
    generate_key,
)
from agent.gossip.serf_types import LamportClock, decode_tags, encode_tags
from agent.gossip.suspicion import Suspicion, remaining_suspicion_time


def test_keyring_roundtrip_rotation_and_wrong_key() -> None:
    k1, k2 = decode_key(generate_key()), decode_key(generate_key(32))
    ring = Keyring([k1])
    sealed = ring.encrypt(b"ping")
    assert sealed != b"ping" and ring.decrypt(sealed) == b"ping"
    with pytest.raises(DecryptError, match="No installed keys"):
        Keyring([k2]).decrypt(sealed)
    ring.install(k2)
    ring.use(k2)
    assert ring.primary == k2
    assert Keyring([k2]).decrypt(ring.encrypt(b"x")) == b"x"
    assert ring.decrypt(sealed) == b"ping"  # the old key still opens old traffic
    ring.remove(k1)
    with pytest.raises(KeyringError, match="primary"):
        ring.remove(k2)
    with pytest.raises(DecryptError):
        ring.decrypt(sealed[:10])
    tampered = bytearray(ring.encrypt(b"payload"))
    tampered[-1] ^= 1
    with pytest.raises(DecryptError):
        ring.decrypt(bytes(tampered))


@pytest.mark.parametrize("bad", ["", "not base64!", "YWJj"])
def test_decode_key_rejects_bad_keys(bad: str) -> None:
    with pytest.raises(KeyringError):
        decode_key(bad)


def test_suspicion_shrinks_with_confirmations() -> None:
    """Lifeguard §IV-B: the timeout starts at max and reaches min after k confirmations."""
    s = Suspicion(accuser="a", k=3, min_timeout=2.0, max_timeout=12.0, start=100.0)
    assert s.deadline == 112.0
    assert not s.confirm("a")  # the accuser does not confirm itself
    assert s.confirm("b")
    first = s.deadline
    assert 102.0 < first < 112.0
    assert not s.confirm("b")
    assert s.confirm("c") and s.deadline < first
    assert s.confirm("d") and s.deadline == pytest.approx(102.0)
    assert not s.confirm("e")  # k reached
    assert not s.expired(101.9) and s.expired(102.0)
    assert Suspicion(accuser="a", k=0, min_timeout=2, max_timeout=12, start=0).deadline == 2
    assert remaining_suspicion_time(0, 3, 1.0, 2.0, 12.0) == pytest.approx(11.0)


def test_profiles_match_memberlist_defaults() -> None:
    lan, wan, local = Profile.lan(), Profile.wan(), Profile.local()
    assert (lan.probe_interval, lan.probe_timeout, lan.gossip_interval) == (1.0, 0.5, 0.2)
    assert (wan.probe_interval, wan.probe_timeout, wan.suspicion_mult) == (5.0, 3.0, 6)
    assert (local.probe_timeout, local.gossip_interval, local.indirect_checks) == (0.2, 0.1, 1)
    assert lan.reconnect_timeout == 72 * 3600
    # ANCHORS: suspicion minimum 4 s for N <= 10 and 5.9 s for N = 30 on LAN.
    assert lan.suspicion_timeout(10) == 4.0
    assert lan.suspicion_timeout(30) == pytest.approx(4 * math.log10(30))
    assert lan.retransmit_limit(10) == 8
    assert lan.push_pull_scale(32) == 30.0 and lan.push_pull_scale(100) == 90.0
    with pytest.raises(ValueError, match="unknown gossip profile"):
        Profile.named("fast")


def test_vivaldi_converges_to_measured_rtt() -> None:
    """Serf's Vivaldi: after repeated samples two nodes estimate their RTT closely."""
    rng = random.Random(1)
    a, b = CoordinateClient(rng=rng), CoordinateClient(rng=rng)
    rtt = 0.010
    for _ in range(200):
        a.update("b", b.coord, rtt)
        b.update("a", a.coord, rtt)
    assert a.coord.distance_to(b.coord) == pytest.approx(rtt, rel=0.1)
    assert a.coord.error < 1.5
    with pytest.raises(CoordinateError):
        a.update("b", b.coord, -1.0)
    with pytest.raises(CoordinateError):
        a.update("b", Coordinate((0.0,) * 3, 1.0, 0.0, 0.0), rtt)
    with pytest.raises(CoordinateError):
        Coordinate.from_wire({"Vec": [float("nan")] * 8, "Error": 1, "Adjustment": 0, "Height": 0})
    wire = a.coord.to_wire()
    assert Coordinate.from_wire(wire) == a.coord


def test_broadcast_queue_limits_and_invalidates() -> None:
    q = TransmitLimitedQueue(lambda: 2)
    q.queue(b"alive-a-1", "a")
    q.queue(b"alive-a-2", "a")  # replaces the older one about the same node
    q.queue(b"event", None)
    assert len(q) == 2
    assert sorted(q.get_broadcasts(0, 100)) == [b"alive-a-2", b"event"]
    assert sorted(q.get_broadcasts(0, 100)) == [b"alive-a-2", b"event"]
    assert q.get_broadcasts(0, 100) == [] and len(q) == 0
    q.queue(b"x" * 60)
    q.queue(b"y" * 60)
    assert len(q.get_broadcasts(5, 100)) == 1  # size limit respected


def test_lamport_clock() -> None:
    c = LamportClock()
    assert c.increment() == 1
    c.witness(10)
    assert c.time() == 11
    c.witness(3)
    assert c.time() == 11


def test_tags_roundtrip_and_limit() -> None:
    tags = {"role": "consul", "dc": "dc1", "port": "8300"}
    assert decode_tags(encode_tags(tags)) == tags
    with pytest.raises(ValueError, match="exceeds limit"):
        encode_tags({"big": "x" * 600})


def test_snapshot_roundtrip_and_bad_lines() -> None:
    state = snapshot.SnapshotState(alive={"n1": "127.0.0.2:8301"}, clock=5, event_clock=3)
    parsed = snapshot.parse(snapshot.render(state) + "garbage line\nclock: x\n")
    assert parsed.alive == {"n1": "127.0.0.2:8301"}
    assert (parsed.clock, parsed.event_clock, parsed.bad_lines) == (5, 3, 2)
    assert snapshot.parse("alive: a 1.2.3.4:8301\nnot-alive: a\n").alive == {}
    left = snapshot.parse("alive: a 1.2.3.4:8301\nleave\n")
    assert left.left and left.alive == {}
    kept = snapshot.parse("alive: a 1.2.3.4:8301\nleave\n", rejoin_after_leave=True)
    assert kept.left and kept.alive == {"a": "1.2.3.4:8301"}
