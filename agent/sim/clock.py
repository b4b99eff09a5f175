"""A virtual clock with a seeded event queue.

Everything the simulator does is an event at a virtual time; ties break by insertion order,
so a run is a pure function of its seed.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class VirtualClock:
    """Run callbacks in virtual-time order. `now` only moves when an event runs."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        # (at, seq, event): tuples compare in C, several times faster than the dataclass.
        self._queue: list[tuple[float, int, _Event]] = []
        self._seq = itertools.count()

    def call_at(self, at: float, action: Callable[[], None]) -> _Event:
        event = _Event(max(at, self.now), next(self._seq), action)
        heapq.heappush(self._queue, (event.at, event.seq, event))
        return event

    def call_later(self, delay: float, action: Callable[[], None]) -> _Event:
        return self.call_at(self.now + delay, action)

    @staticmethod
    def cancel(event: _Event) -> None:
        event.cancelled = True

    def step(self) -> bool:
        """Run the next event; False when the queue is empty."""
        while self._queue:
            event = heapq.heappop(self._queue)[2]
            if event.cancelled:
                continue
            self.now = event.at
            event.action()
            return True
        return False

    def run_until(self, deadline: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to `deadline`; with `stop`, return True as soon as it holds."""
        while self._queue and self._queue[0][0] <= deadline:
            self.step()
            if stop is not None and stop():
                return True
        self.now = max(self.now, deadline)
        return stop() if stop is not None else False

    def pending(self) -> int:
        return sum(1 for _, _, e in self._queue if not e.cancelled)
