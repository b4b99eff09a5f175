"""Property tests: the KV tables against a plain-dict model, and snapshot/restore at any
point of a history being indistinguishable from having applied the whole history."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as hst

from agent.state.commands import MessageType, encode_command
from agent.state.fsm import StateFSM

KEYS = ["a", "a/b", "a/c", "b", "bb"]
SESSIONS = ["s1", "s2"]

key = hst.sampled_from(KEYS)
kv_op = hst.one_of(
    hst.builds(lambda k, v: ("set", {"Key": k, "Value": v}), key, hst.binary(max_size=3)),
    hst.builds(lambda k, i: ("cas", {"Key": k, "ModifyIndex": i}), key, hst.integers(0, 12)),
    hst.builds(lambda k: ("delete", {"Key": k}), key),
    hst.builds(lambda k, i: ("delete-cas", {"Key": k, "ModifyIndex": i}), key, hst.integers(0, 12)),
    hst.builds(lambda p: ("delete-tree", {"Key": p}), hst.sampled_from(["a", "a/", "b", ""])),
    hst.builds(lambda k, s: ("lock", {"Key": k, "Session": s}), key, hst.sampled_from(SESSIONS)),
    hst.builds(lambda k, s: ("unlock", {"Key": k, "Session": s}), key, hst.sampled_from(SESSIONS)),
    hst.builds(lambda s: ("destroy", {"ID": s}), hst.sampled_from(SESSIONS)),
)


def setup() -> list[bytes]:
    return [
        encode_command(MessageType.REGISTER, {"Node": "n", "Address": "a"}),
        *(
            encode_command(
                MessageType.SESSION,
                {"Op": "create", "Session": {"ID": s, "Node": "n", "Behavior": b}},
            )
            for s, b in zip(SESSIONS, ["release", "delete"], strict=True)
        ),
    ]


def command(op: tuple[str, dict[str, Any]]) -> bytes:
    verb, body = op
    if verb == "destroy":
        return encode_command(MessageType.SESSION, {"Op": "destroy", "Session": body})
    return encode_command(MessageType.KVS, {"Op": verb, "DirEnt": body})


class Model:
    """What Consul's KV does, written as plainly as possible."""

    def __init__(self) -> None:
        self.kv: dict[str, dict[str, Any]] = {}
        self.sessions = {"s1": "release", "s2": "delete"}

    def apply(self, idx: int, op: tuple[str, dict[str, Any]]) -> None:
        verb, b = op
        k = b.get("Key", "")
        cur = self.kv.get(k)
        if verb == "set":
            self.kv[k] = {
                "Value": b["Value"],
                "Session": cur["Session"] if cur else "",
                "LockIndex": 0,
                "CreateIndex": cur["CreateIndex"] if cur else idx,
                "ModifyIndex": idx,
            }
        elif verb == "cas":
            if (b["ModifyIndex"] == 0 and cur is None) or (
                cur is not None and b["ModifyIndex"] == cur["ModifyIndex"] != 0
            ):
                self.apply(idx, ("set", {"Key": k, "Value": None}))
        elif verb == "delete":
            self.kv.pop(k, None)
        elif verb == "delete-cas":
            if cur is not None and cur["ModifyIndex"] == b["ModifyIndex"]:
                del self.kv[k]
        elif verb == "delete-tree":
            for kk in [kk for kk in self.kv if kk.startswith(k)]:
                del self.kv[kk]
        elif verb == "lock":
            if b["Session"] not in self.sessions:
                return
            if cur is None:
                self.kv[k] = {
                    "Value": None,
                    "Session": b["Session"],
                    "LockIndex": 1,
                    "CreateIndex": idx,
                    "ModifyIndex": idx,
                }
            elif cur["Session"] in ("", b["Session"]):
                lock_index = cur["LockIndex"] + (1 if cur["Session"] == "" else 0)
                self.kv[k] = {
                    **cur,
                    "Value": None,
                    "Session": b["Session"],
                    "LockIndex": lock_index,
                    "ModifyIndex": idx,
                }
        elif verb == "unlock":
            if cur is not None and cur["Session"] == b["Session"]:
                self.kv[k] = {**cur, "Value": None, "Session": "", "ModifyIndex": idx}
        elif verb == "destroy":
            behavior = self.sessions.pop(b["ID"], None)
            for kk, e in list(self.kv.items()):
                if behavior and e["Session"] == b["ID"]:
                    if behavior == "delete":
                        del self.kv[kk]
                    else:
                        self.kv[kk] = {**e, "Session": "", "ModifyIndex": idx}


@settings(max_examples=150, deadline=None)
@given(hst.lists(kv_op, max_size=40))
def test_kv_matches_the_model(ops: list[tuple[str, dict[str, Any]]]) -> None:
    fsm = StateFSM()
    for i, data in enumerate(setup(), start=1):
        fsm.apply(i, 1, data)
    model = Model()
    for idx, op in enumerate(ops, start=10):
        fsm.apply(idx, 1, command(op))
        model.apply(idx, op)
    got = {e["Key"]: e for e in fsm.state.kvs_list("")[1]}
    assert sorted(got) == sorted(model.kv)
    for k, want in model.kv.items():
        for field in ("Session", "LockIndex", "CreateIndex", "ModifyIndex"):
            assert got[k][field] == want[field], (k, field)
        if want["Value"] is not None:
            assert got[k]["Value"] == want["Value"]


@settings(max_examples=100, deadline=None)
@given(hst.lists(kv_op, max_size=30), hst.integers(min_value=0, max_value=30))
def test_snapshot_at_any_point_restores_the_same_future(
    ops: list[tuple[str, dict[str, Any]]], cut: int
) -> None:
    whole = StateFSM()
    for i, data in enumerate(setup(), start=1):
        whole.apply(i, 1, data)
    cut = min(cut, len(ops))
    for idx, op in enumerate(ops[:cut], start=10):
        whole.apply(idx, 1, command(op))
    restored = StateFSM()
    restored.restore(whole.snapshot())
    for idx, op in enumerate(ops[cut:], start=10 + cut):
        assert whole.apply(idx, 1, command(op)) == restored.apply(idx, 1, command(op))
    assert whole.snapshot() == restored.snapshot()
