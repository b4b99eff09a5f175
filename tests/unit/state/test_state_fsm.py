"""StateFSM: commands in, results out; garbage never raises; snapshot/restore round trips."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from agent.codec import packb
from agent.state.commands import MessageType, encode_command
from agent.state.fsm import FSMError, StateFSM
from agent.state.store import StateStore


def cmd(t: MessageType, **req: object) -> bytes:
    return encode_command(t, dict(req))


def populate(fsm: StateFSM) -> None:
    apply = fsm.apply
    assert (
        apply(
            1,
            1,
            cmd(
                MessageType.REGISTER,
                Node="n1",
                Address="10.0.0.1",
                Service={"ID": "web", "Service": "web", "Tags": ["a"], "Port": 80},
                Checks=[{"CheckID": "serfHealth", "Status": "passing"}],
            ),
        )
        is None
    )
    assert (
        apply(
            2,
            1,
            cmd(
                MessageType.SESSION,
                Op="create",
                Session={
                    "ID": "s1",
                    "Node": "n1",
                    "Checks": ["serfHealth"],
                    "LockDelay": 1,
                    "TTL": "10s",
                },
            ),
        )
        == "s1"
    )
    assert apply(3, 1, cmd(MessageType.KVS, Op="set", DirEnt={"Key": "a", "Value": b"1"})) is True
    assert (
        apply(
            4,
            1,
            cmd(MessageType.KVS, Op="lock", DirEnt={"Key": "b", "Value": b"2", "Session": "s1"}),
        )
        is True
    )
    assert apply(5, 1, cmd(MessageType.KVS, Op="delete", DirEnt={"Key": "a"})) is True
    assert (
        apply(
            6,
            1,
            cmd(
                MessageType.COORDINATE_BATCH_UPDATE,
                Updates=[{"Node": "n1", "Coord": {"Vec": [0.5], "Error": 1.0}}],
            ),
        )
        is None
    )
    assert apply(7, 1, cmd(MessageType.AUTOPILOT, Config={"CleanupDeadServers": True})) is True


def test_results_of_commands() -> None:
    fsm = StateFSM()
    populate(fsm)
    st = fsm.state
    assert st.kvs_get("b")[1]["Session"] == "s1"  # type: ignore[index]
    assert (
        fsm.apply(8, 1, cmd(MessageType.KVS, Op="cas", DirEnt={"Key": "b", "ModifyIndex": 1}))
        is False
    )
    res = fsm.apply(
        9, 1, cmd(MessageType.TXN, Ops=[{"KV": {"Verb": "get", "DirEnt": {"Key": "b"}}}])
    )
    assert res["Errors"] is None and res["Results"][0]["KV"]["Value"] == b"2"
    assert fsm.apply(10, 1, cmd(MessageType.SESSION, Op="destroy", Session={"ID": "s1"})) is None
    assert st.kvs_get("b")[1]["Session"] == ""  # type: ignore[index]
    assert fsm.apply(11, 1, cmd(MessageType.DEREGISTER, Node="n1")) is None
    assert st.nodes() == (11, [])
    assert fsm.apply(12, 1, cmd(MessageType.TOMBSTONE, Op="reap", ReapIndex=11)) is None
    assert st.tombstones() == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "failed to decode command"),
        (b"\xc1\xc1", "failed to decode command"),
        (packb([1, 2]), "not a map"),
        (packb({"Type": "x", "Req": {}}), "no integer Type"),
        (packb({"Type": 2}), "no Req map"),
        (packb({"Type": 42, "Req": {}}), "unknown message type 42"),
        (cmd(MessageType.KVS, Op="frob", DirEnt={"Key": "a"}), "Invalid KVS operation 'frob'"),
        (cmd(MessageType.KVS, Op="set"), "missing DirEnt"),
        (cmd(MessageType.KVS, Op="set", DirEnt={"Key": "a", "Flags": "many"}), "Flags must be"),
        (cmd(MessageType.KVS, Op="set", DirEnt={"Key": "a", "Flags": -1}), "Flags must be"),
        (cmd(MessageType.KVS, Op="set", DirEnt={"Key": "a", "Value": 5}), "Value must be bytes"),
        (
            cmd(MessageType.KVS, Op="lock", DirEnt={"Key": "a", "Session": "zz"}),
            'invalid session "zz"',
        ),
        (
            cmd(MessageType.SESSION, Op="create", Session={"ID": "x", "Node": "nope"}),
            "Missing node registration",
        ),
        (cmd(MessageType.SESSION, Op="explode", Session={}), "Invalid Session operation"),
        (cmd(MessageType.TXN, Ops="no"), "missing Ops"),
        (
            cmd(MessageType.REGISTER, Node="n", Address="a", Service={"ID": "s", "Port": "eighty"}),
            "Port must be",
        ),
        (
            cmd(MessageType.REGISTER, Node="n", Address="a", Service={"ID": "s", "Tags": 5}),
            "invalid REGISTER",
        ),
    ],
)
def test_bad_commands_return_errors_and_change_nothing(data: bytes, message: str) -> None:
    fsm = StateFSM()
    before = fsm.snapshot()
    result = fsm.apply(1, 1, data)
    assert isinstance(result, FSMError)
    assert message in str(result)
    assert fsm.snapshot() == before


def test_unknown_type_with_ignore_flag_is_skipped() -> None:
    fsm = StateFSM()
    assert fsm.apply(1, 1, packb({"Type": 128 | 50, "Req": {}})) is None


@settings(max_examples=200, deadline=None)
@given(
    hst.binary(max_size=64)
    | hst.builds(
        lambda t, req: packb({"Type": t, "Req": req}),
        hst.integers(min_value=0, max_value=12),
        hst.dictionaries(
            hst.sampled_from(
                ["Op", "DirEnt", "Session", "Node", "Address", "Ops", "Updates", "Check", "Service"]
            ),
            hst.none()
            | hst.integers(min_value=-(2**63), max_value=2**63 - 1)
            | hst.text(max_size=5)
            | hst.lists(hst.integers(min_value=0, max_value=9), max_size=3)
            | hst.dictionaries(
                hst.sampled_from(["Key", "ID", "Node", "Session", "Verb"]), hst.text(max_size=3)
            ),
        ),
    )
)
def test_fsm_never_raises_on_garbage(data: bytes) -> None:
    fsm = StateFSM()
    fsm.apply(1, 1, data)  # must not raise, whatever the bytes


def test_snapshot_restore_round_trip_is_equal_and_deterministic() -> None:
    fsm = StateFSM()
    populate(fsm)
    snap = fsm.snapshot()
    assert snap == fsm.snapshot()
    other = StateFSM()
    other.restore(snap)
    assert other.snapshot() == snap
    st = other.state
    assert st.kvs_get("b")[1]["LockIndex"] == 1  # type: ignore[index]
    assert st.tombstones() == [("a", 5)]
    assert st.table_index("kvs") == 5
    assert st.coordinate("n1") == {"Vec": [0.5], "Error": 1.0}
    # the restored session still owns its lock: destroying it releases the key
    other.apply(8, 1, cmd(MessageType.SESSION, Op="destroy", Session={"ID": "s1"}))
    assert st.kvs_get("b")[1]["Session"] == ""  # type: ignore[index]


def test_restore_replaces_state_and_wakes_watchers() -> None:
    fsm = StateFSM()
    populate(fsm)
    snap = fsm.snapshot()
    target = StateFSM(StateStore())
    target.apply(1, 1, cmd(MessageType.KVS, Op="set", DirEnt={"Key": "old", "Value": b"x"}))
    woke: list[int] = []
    target.state.watch(["nodes"], lambda: woke.append(1))
    target.restore(snap)
    assert woke == [1]
    assert target.state.kvs_get("old")[1] is None
    assert [n["Node"] for n in target.state.nodes()[1]] == ["n1"]


def test_malformed_snapshot_is_refused_and_state_kept() -> None:
    fsm = StateFSM()
    populate(fsm)
    before = fsm.snapshot()
    for bad in (b"\xc1", packb({"Version": 99}), packb({"Version": 1, "KVS": [{"nokey": 1}]})):
        with pytest.raises(ValueError):
            fsm.restore(bad)
        assert fsm.snapshot() == before


def test_snapshot_restore_command_through_the_log() -> None:
    src = StateFSM()
    populate(src)
    dst = StateFSM()
    dst.apply(1, 1, cmd(MessageType.KVS, Op="set", DirEnt={"Key": "zzz"}))
    assert dst.apply(50, 2, cmd(MessageType.SNAPSHOT_RESTORE, Data=src.snapshot())) is None
    assert dst.state.kvs_get("zzz")[1] is None
    assert dst.state.table_index("kvs") == 50
    assert isinstance(dst.apply(51, 2, cmd(MessageType.SNAPSHOT_RESTORE, Data=b"\xc1")), FSMError)
    assert msgpack.unpackb(src.snapshot())["Version"] == 1


def test_restored_sessions_are_still_bound_to_their_node_and_checks() -> None:
    fsm = StateFSM()
    populate(fsm)
    other = StateFSM()
    other.restore(fsm.snapshot())
    assert [s["ID"] for s in other.state.node_sessions("n1")[1]] == ["s1"]
    other.apply(
        20,
        1,
        cmd(
            MessageType.REGISTER,
            Node="n1",
            Address="10.0.0.1",
            Check={"CheckID": "serfHealth", "Status": "critical"},
        ),
    )
    assert other.state.session_get("s1")[1] is None
    assert other.state.node_sessions("n1")[1] == []
    assert other.state.kvs_get("b")[1]["Session"] == ""  # type: ignore[index]


def test_autopilot_config_with_cas() -> None:
    fsm = StateFSM()
    assert fsm.apply(1, 1, cmd(MessageType.AUTOPILOT, Config={"CleanupDeadServers": True})) is True
    assert fsm.state.autopilot_config() == (
        1,
        {"CleanupDeadServers": True, "CreateIndex": 1, "ModifyIndex": 1},
    )
    stale = {"CleanupDeadServers": False, "ModifyIndex": 0}
    assert fsm.apply(2, 1, cmd(MessageType.AUTOPILOT, Config=stale, CAS=True)) is False
    fresh = {"CleanupDeadServers": False, "ModifyIndex": 1}
    assert fsm.apply(3, 1, cmd(MessageType.AUTOPILOT, Config=fresh, CAS=True)) is True
    assert fsm.state.autopilot_config()[1]["CleanupDeadServers"] is False  # type: ignore[index]
