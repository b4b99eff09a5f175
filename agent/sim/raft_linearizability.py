"""A linearizability checker for key-value histories (Wing & Gong's search, with memoisation).

A KV store is linearizable iff each key, seen as a register, is (Herlihy & Wing's locality),
so the history is split by key and each register history is searched on its own: repeatedly
pick an operation that may go next (none of the remaining operations completed before it was
invoked), check it against the register's value, and backtrack on a mismatch. Visited
(set of linearized operations, value) pairs are cached, as in Lowe's refinement of the
algorithm, which keeps the search polynomial on the histories a simulator produces.

An operation whose outcome the client never learned (timeout, crash, lost leadership) has
`complete = inf`: it may take effect at any point after its invocation, or never.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Op:
    client: int
    kind: str  # "put" | "get"
    key: str
    value: Any  # put: the value written; get: the value read (None = absent)
    invoke: float
    complete: float = math.inf  # inf: outcome unknown

    @property
    def known(self) -> bool:
        return self.complete != math.inf


@dataclass(frozen=True, slots=True)
class Violation:
    key: str
    ops: tuple[Op, ...]

    def __str__(self) -> str:
        lines = [f"history of key {self.key!r} is not linearizable:"]
        for op in sorted(self.ops, key=lambda o: o.invoke):
            lines.append(
                f"  client {op.client} {op.kind}({op.value!r}) [{op.invoke:.6f}, {op.complete:.6f}]"
            )
        return "\n".join(lines)


def check_register(ops: list[Op], initial: Any = None, budget: int = 300_000) -> bool | None:
    """True if linearizable, False if not, None if the search budget ran out."""
    # Reads whose outcome is unknown constrain nothing. A put whose outcome is unknown and
    # whose value no read returned can be left out of any linearization without changing
    # what a read sees, so it is dropped (this keeps the search small under heavy faults).
    read_values = {o.value for o in ops if o.kind == "get" and o.known}
    ops = [o for o in ops if o.known or (o.kind == "put" and o.value in read_values)]
    n = len(ops)
    if n == 0:
        return True
    ops.sort(key=lambda o: o.invoke)
    required = 0
    for i, o in enumerate(ops):
        if o.known:
            required |= 1 << i
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = [(0, initial)]
    steps = 0
    while stack:
        done, value = stack.pop()
        if done & required == required:
            return True
        if (done, value) in seen:
            continue
        seen.add((done, value))
        steps += 1
        if steps > budget:
            return None
        # The earliest completion among the remaining ops bounds what may go next.
        horizon = math.inf
        for i in range(n):
            if not done >> i & 1 and ops[i].complete < horizon:
                horizon = ops[i].complete
        for i in range(n):
            if done >> i & 1:
                continue
            o = ops[i]
            if o.invoke > horizon:
                break  # sorted by invoke: no later op may go next either
            if o.kind == "get":
                if o.value == value:
                    stack.append((done | 1 << i, value))
            else:
                stack.append((done | 1 << i, o.value))
    return False


def check_history(history: list[Op], inconclusive: list[str] | None = None) -> Violation | None:
    """The first key whose history is not linearizable, or None. Keys whose search ran out
    of budget are appended to `inconclusive` (when given)."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    for key, ops in sorted(by_key.items()):
        result = check_register(ops)
        if result is False:
            return Violation(key, tuple(ops))
        if result is None and inconclusive is not None:
            inconclusive.append(key)
    return None
