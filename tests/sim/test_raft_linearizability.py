"""The linearizability checker itself (Herlihy & Wing; Wing & Gong's search)."""

from __future__ import annotations

import math

from agent.sim.raft_linearizability import Op, check_history, check_register


def test_sequential_history_is_linearizable() -> None:
    ops = [Op(0, "put", "k", "a", 0, 1), Op(0, "get", "k", "a", 2, 3), Op(1, "put", "k", "b", 4, 5)]
    assert check_register(ops) is True


def test_stale_read_after_completed_write_is_not_linearizable() -> None:
    ops = [Op(0, "put", "k", "a", 0, 1), Op(0, "put", "k", "b", 2, 3), Op(1, "get", "k", "a", 4, 5)]
    violation = check_history(ops)
    assert violation is not None and violation.key == "k"
    assert "get('a')" in str(violation)


def test_concurrent_operations_may_order_either_way() -> None:
    ops = [
        Op(0, "put", "k", "a", 0, 10),
        Op(1, "get", "k", "a", 1, 2),
        Op(2, "get", "k", None, 0, 0.5),
    ]
    assert check_register(ops) is True


def test_read_of_a_value_never_written_is_not_linearizable() -> None:
    assert check_register([Op(0, "get", "k", "ghost", 0, 1)]) is False


def test_unknown_write_may_or_may_not_take_effect() -> None:
    unknown = Op(0, "put", "k", "a", 0, math.inf)
    assert check_register([unknown, Op(1, "get", "k", "a", 5, 6)]) is True
    assert check_register([unknown, Op(1, "get", "k", None, 5, 6)]) is True
    # ...but once seen it cannot be unseen.
    ops = [unknown, Op(1, "get", "k", "a", 5, 6), Op(1, "get", "k", None, 7, 8)]
    assert check_register(ops) is False


def test_keys_are_checked_independently() -> None:
    ops = [
        Op(0, "put", "x", 1, 0, 1),
        Op(0, "put", "y", 2, 2, 3),
        Op(1, "get", "x", 1, 4, 5),
        Op(1, "get", "y", None, 6, 7),
    ]
    violation = check_history(ops)
    assert violation is not None and violation.key == "y"
