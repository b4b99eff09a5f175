"""Lifeguard's dynamic suspicion timeout (memberlist suspicion.go), sans-IO.

A suspicion starts at `max` and shrinks toward `min` as independent members confirm it:
after n of the k expected confirmations the timeout is
    max - (max - min) * log(n + 1) / log(k + 1),
never below `min`. The owner asks `deadline` and checks `expired(now)`; no timer here.
"""

from __future__ import annotations

import math


def remaining_suspicion_time(n: int, k: int, elapsed: float, min_: float, max_: float) -> float:
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = max_ - frac * (max_ - min_)
    timeout = math.floor(1000.0 * raw) / 1000.0
    timeout = max(timeout, min_)
    return timeout - elapsed


class Suspicion:
    def __init__(
        self, *, accuser: str, k: int, min_timeout: float, max_timeout: float, start: float
    ) -> None:
        self.k = k
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout
        self.start = start
        self.confirmations: set[str] = {accuser}
        self.n = 0
        self.deadline = start + (min_timeout if k < 1 else max_timeout)

    def confirm(self, from_node: str) -> bool:
        """An independent accusation; True if it was new (and so worth re-broadcasting)."""
        if self.n >= self.k or from_node in self.confirmations:
            return False
        self.confirmations.add(from_node)
        self.n += 1
        remaining = remaining_suspicion_time(
            self.n, self.k, 0.0, self.min_timeout, self.max_timeout
        )
        self.deadline = self.start + remaining
        return True

    def expired(self, now: float) -> bool:
        return now >= self.deadline
