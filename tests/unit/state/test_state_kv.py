"""KV semantics of the state store, as Consul 0.7's state/kvs.go and txn.go."""

from __future__ import annotations

from typing import Any

import pytest

from agent.state.store import StateError, StateStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ent(key: str, value: bytes | None = b"v", **kw: Any) -> dict[str, Any]:
    return {"Key": key, "Value": value, **kw}


def with_session(st: StateStore, idx: int = 1, behavior: str = "release") -> str:
    st.ensure_registration(
        idx,
        {
            "Node": "n1",
            "Address": "10.0.0.1",
            "Check": {"CheckID": "serfHealth", "Status": "passing"},
        },
    )
    return st.session_create(
        idx + 1,
        {
            "ID": f"s{idx}",
            "Node": "n1",
            "Checks": ["serfHealth"],
            "LockDelay": 15_000_000_000,
            "Behavior": behavior,
        },
    )


def test_set_get_indexes() -> None:
    st = StateStore()
    assert st.kvs_apply(5, "set", ent("a", b"1", Flags=42))
    idx, e = st.kvs_get("a")
    assert idx == 5
    assert e == {
        "Key": "a",
        "Flags": 42,
        "Value": b"1",
        "Session": "",
        "LockIndex": 0,
        "CreateIndex": 5,
        "ModifyIndex": 5,
    }
    st.kvs_apply(7, "set", ent("a", b"2"))
    e = st.kvs_get("a")[1]
    assert e is not None and (e["CreateIndex"], e["ModifyIndex"], e["Value"], e["Flags"]) == (
        5,
        7,
        b"2",
        0,
    )
    assert st.kvs_get("missing") == (7, None)


def test_cas_zero_is_create_only_and_index_must_match() -> None:
    st = StateStore()
    assert st.kvs_apply(1, "cas", ent("k", ModifyIndex=0))
    assert not st.kvs_apply(2, "cas", ent("k", b"x", ModifyIndex=0))
    assert not st.kvs_apply(3, "cas", ent("k", b"x", ModifyIndex=99))
    assert st.kvs_apply(4, "cas", ent("k", b"y", ModifyIndex=1))
    assert st.kvs_get("k")[1]["Value"] == b"y"  # type: ignore[index]
    assert not st.kvs_apply(5, "cas", ent("nope", ModifyIndex=3))


def test_delete_cas_and_delete_tree_leave_tombstones() -> None:
    st = StateStore()
    for i, k in enumerate(["foo/a", "foo/b", "foo/c/d", "foz", "bar"], start=1):
        st.kvs_apply(i, "set", ent(k))
    assert not st.kvs_apply(10, "delete-cas", ent("foo/a", ModifyIndex=2))
    assert st.kvs_apply(11, "delete-cas", ent("foo/a", ModifyIndex=1))
    assert st.kvs_apply(12, "delete-cas", ent("foo/a", ModifyIndex=1))  # missing -> true
    assert st.kvs_list("foo/")[0] == 11  # the tombstone of foo/a is the newest change
    st.kvs_apply(13, "delete-tree", ent("foo/"))
    idx, ents = st.kvs_list("foo/")
    assert (idx, ents) == (13, [])
    assert [e["Key"] for e in st.kvs_list("")[1]] == ["bar", "foz"]
    # a prefix with no entries and no tombstones falls back to the table index
    assert st.kvs_list("zzz")[0] == 13
    # reaping forgets tombstones but does not move the table index
    st.reap_tombstones(14, 12)
    assert st.tombstones() == [("foo/b", 13), ("foo/c/d", 13)]


def test_delete_missing_key_changes_nothing() -> None:
    st = StateStore()
    st.kvs_apply(1, "set", ent("a"))
    assert st.kvs_apply(2, "delete", ent("b"))
    assert st.table_index("kvs", "tombstones") == 1


def test_list_keys_with_separator() -> None:
    st = StateStore()
    for i, k in enumerate(["web/a", "web/sub/x", "web/sub/y", "web/z", "db/x"], start=1):
        st.kvs_apply(i, "set", ent(k))
    assert st.kvs_list_keys("web/", "/") == (4, ["web/a", "web/sub/", "web/z"])
    assert st.kvs_list_keys("", "/")[1] == ["db/", "web/"]
    assert st.kvs_list_keys("web/", "")[1] == ["web/a", "web/sub/x", "web/sub/y", "web/z"]


def test_lock_unlock_lock_index_and_session() -> None:
    st = StateStore()
    sid = with_session(st)
    other = st.session_create(3, {"ID": "other", "Node": "n1", "Checks": []})
    assert st.kvs_apply(4, "lock", ent("l", b"x", Session=sid))
    e = st.kvs_get("l")[1]
    assert e is not None and (e["Session"], e["LockIndex"]) == (sid, 1)
    # the holder re-acquires without bumping LockIndex; another session is refused
    assert st.kvs_apply(5, "lock", ent("l", b"y", Session=sid))
    assert st.kvs_get("l")[1]["LockIndex"] == 1  # type: ignore[index]
    assert not st.kvs_apply(6, "lock", ent("l", Session=other))
    # a plain set keeps the lock holder
    st.kvs_apply(7, "set", ent("l", b"z"))
    assert st.kvs_get("l")[1]["Session"] == sid  # type: ignore[index]
    assert not st.kvs_apply(8, "unlock", ent("l", Session=other))
    assert st.kvs_apply(9, "unlock", ent("l", Session=sid))
    e = st.kvs_get("l")[1]
    assert e is not None and e["Session"] == "" and e["ModifyIndex"] == 9
    assert st.kvs_apply(10, "lock", ent("l", Session=other))
    assert st.kvs_get("l")[1]["LockIndex"] == 1  # type: ignore[index]


def test_lock_needs_a_valid_session() -> None:
    st = StateStore()
    with pytest.raises(StateError, match="missing session"):
        st.kvs_apply(1, "lock", ent("l"))
    with pytest.raises(StateError, match='invalid session "nope"'):
        st.kvs_apply(1, "lock", ent("l", Session="nope"))
    assert st.kvs_get("l") == (0, None)


def test_session_destroy_releases_locks_and_sets_lock_delay() -> None:
    clock = Clock()
    st = StateStore(now=clock)
    sid = with_session(st)
    st.kvs_apply(4, "lock", ent("a", Session=sid))
    st.kvs_apply(5, "lock", ent("b", Session=sid))
    st.session_destroy(6, sid)
    for k in ("a", "b"):
        e = st.kvs_get(k)[1]
        assert e is not None and e["Session"] == "" and e["ModifyIndex"] == 6
        assert st.kvs_lock_delay(k) == pytest.approx(clock.t + 15)
    assert st.session_get(sid) == (6, None)


def test_delete_behavior_deletes_held_keys() -> None:
    st = StateStore()
    sid = with_session(st, behavior="delete")
    st.kvs_apply(4, "lock", ent("a", Session=sid))
    st.kvs_apply(5, "set", ent("unrelated"))
    st.session_destroy(6, sid)
    assert st.kvs_get("a")[1] is None
    assert st.kvs_list("a")[0] == 6
    assert st.kvs_get("unrelated")[1] is not None


def test_lock_delay_is_capped_at_60s() -> None:
    clock = Clock()
    st = StateStore(now=clock)
    st.ensure_registration(1, {"Node": "n1", "Address": "a"})
    st.session_create(2, {"ID": "s", "Node": "n1", "LockDelay": 3600 * 10**9})
    st.kvs_apply(3, "lock", ent("k", Session="s"))
    st.session_destroy(4, "s")
    assert st.kvs_lock_delay("k") == pytest.approx(clock.t + 60)


def test_txn_applies_all_or_nothing() -> None:
    st = StateStore()
    st.kvs_apply(1, "set", ent("keep", b"old"))
    res = st.txn(
        2,
        [
            {"KV": {"Verb": "set", "DirEnt": ent("keep", b"new")}},
            {"KV": {"Verb": "set", "DirEnt": ent("added")}},
            {"KV": {"Verb": "cas", "DirEnt": ent("keep", ModifyIndex=1)}},
            {"KV": {"Verb": "get", "DirEnt": ent("gone")}},
            {"KV": {"Verb": "bogus", "DirEnt": ent("x")}},
        ],
    )
    assert res == {
        "Results": None,
        "Errors": [
            {"OpIndex": 2, "What": 'failed to set key "keep", index is stale'},
            {"OpIndex": 3, "What": 'key "gone" doesn\'t exist'},
            {"OpIndex": 4, "What": 'unknown KV verb "bogus"'},
        ],
    }
    assert st.kvs_get("keep")[1]["Value"] == b"old"  # type: ignore[index]
    assert st.kvs_get("added") == (1, None)
    assert st.table_index("kvs") == 1


def test_txn_results() -> None:
    st = StateStore()
    sid = with_session(st)
    res = st.txn(
        4,
        [
            {"KV": {"Verb": "set", "DirEnt": ent("t/a", b"1")}},
            {"KV": {"Verb": "lock", "DirEnt": ent("t/b", b"2", Session=sid)}},
            {"KV": {"Verb": "get", "DirEnt": ent("t/a")}},
            {"KV": {"Verb": "check-index", "DirEnt": ent("t/a", ModifyIndex=4)}},
            {"KV": {"Verb": "check-session", "DirEnt": ent("t/b", Session=sid)}},
            {"KV": {"Verb": "get-tree", "DirEnt": ent("t/")}},
            {"KV": {"Verb": "delete", "DirEnt": ent("t/a")}},
        ],
    )
    assert res["Errors"] is None
    kv = [r["KV"] for r in res["Results"]]
    assert [(e["Key"], e["Value"]) for e in kv] == [
        ("t/a", None),
        ("t/b", None),
        ("t/a", b"1"),
        ("t/a", None),
        ("t/b", None),
        ("t/a", b"1"),
        ("t/b", b"2"),
    ]
    assert kv[1]["LockIndex"] == 1 and kv[1]["Session"] == sid
    assert st.kvs_get("t/a")[1] is None


def test_txn_check_errors_are_consuls() -> None:
    st = StateStore()
    st.kvs_apply(1, "set", ent("k"))
    res = st.txn(
        2,
        [
            {"KV": {"Verb": "check-index", "DirEnt": ent("k", ModifyIndex=7)}},
            {"KV": {"Verb": "check-session", "DirEnt": ent("k", Session="s")}},
            {"KV": {"Verb": "delete-cas", "DirEnt": ent("k", ModifyIndex=9)}},
            {"KV": {"Verb": "unlock", "DirEnt": ent("k", Session="s")}},
            {"NotKV": {}},
        ],
    )
    assert [e["What"] for e in res["Errors"]] == [
        'failed index check for key "k", current modify index 1 != 7',
        'failed session check for key "k", current session "" != "s"',
        'failed to delete key "k", index is stale',
        'failed to unlock key "k", lock isn\'t held, or is held by another session',
        "unknown operation type, only KV is supported",
    ]


def test_watch_wakes_on_prefix_and_tombstone() -> None:
    st = StateStore()
    woke: list[str] = []
    w = st.watch(["kvs", "tombstones"], lambda: woke.append("foo"), prefix="foo/")
    st.watch(["nodes"], lambda: woke.append("nodes"))
    st.kvs_apply(1, "set", ent("bar"))
    assert woke == []
    st.kvs_apply(2, "set", ent("foo/x"))
    assert woke == ["foo"]
    st.kvs_apply(3, "delete", ent("foo/x"))
    assert woke == ["foo", "foo"]
    w.cancel()
    st.kvs_apply(4, "set", ent("foo/y"))
    assert woke == ["foo", "foo"]
    # a failed write (rolled back) wakes nobody
    with pytest.raises(StateError):
        st.kvs_apply(5, "lock", ent("foo/z", Session="none"))
    st.ensure_registration(6, {"Node": "n", "Address": "a"})
    assert woke == ["foo", "foo", "nodes"]


def test_a_failing_watch_callback_does_not_break_the_write() -> None:
    st = StateStore()
    woke: list[int] = []

    def broken() -> None:
        raise RuntimeError("waiter bug")

    st.watch(["kvs"], broken)
    st.watch(["kvs"], lambda: woke.append(1))
    assert st.kvs_apply(1, "set", ent("k"))
    assert woke == [1] and st.kvs_get("k")[1] is not None
