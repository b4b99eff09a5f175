"""Lifeguard local health awareness (memberlist awareness.go).

A member that misses acks it should have had, or has to refute suspicions about itself,
raises its health score; the score stretches its own probe timeouts (score + 1 times)
instead of accusing healthy peers. Successful probes lower it again.
"""

from __future__ import annotations


class Awareness:
    def __init__(self, max_multiplier: int) -> None:
        self.max = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), self.max - 1)

    def scale_timeout(self, timeout: float) -> float:
        return timeout * (self.score + 1)
