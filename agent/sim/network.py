"""A simulated datagram network: drops, duplicates, delays, reorders and partitions.

Addresses are strings. `send` schedules delivery on the `VirtualClock` through the
receiver's handler; faults are drawn from the network's own seeded RNG, so a run replays
exactly from its seed.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.sim.clock import VirtualClock

Receiver = Callable[[str, Any], None]


@dataclass
class Faults:
    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability it is delivered twice
    min_delay: float = 0.0005
    max_delay: float = 0.002  # uniform delay; different delays reorder messages


@dataclass
class NetStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0


class SimNetwork:
    def __init__(self, clock: VirtualClock, rng: random.Random, faults: Faults | None = None):
        self.clock = clock
        self.rng = rng
        self.faults = faults or Faults()
        self._receivers: dict[str, Receiver] = {}
        self._down: set[str] = set()
        self._groups: dict[str, int] | None = None
        self._cut: set[frozenset[str]] = set()
        self.stats = NetStats()

    def attach(self, addr: str, receiver: Receiver) -> None:
        self._receivers[addr] = receiver
        self._down.discard(addr)

    def detach(self, addr: str) -> None:
        """The host is down: messages to and from it vanish."""
        self._down.add(addr)

    def partition(self, *groups: set[str]) -> None:
        """Only hosts of the same group can talk; hosts in no group are isolated."""
        self._groups = {addr: i for i, group in enumerate(groups) for addr in group}

    def cut(self, a: str, b: str) -> None:
        self._cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self._groups = None
        self._cut.clear()

    def reachable(self, src: str, dst: str) -> bool:
        if src in self._down or dst in self._down:
            return False
        if frozenset((src, dst)) in self._cut:
            return False
        if self._groups is not None:
            gs, gd = self._groups.get(src), self._groups.get(dst)
            if gs is None or gs != gd:
                return False
        return True

    def send(self, src: str, dst: str, message: Any) -> None:
        self.stats.sent += 1
        if not self.reachable(src, dst) or self.rng.random() < self.faults.drop:
            self.stats.dropped += 1
            return
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        self.stats.duplicated += copies - 1
        for _ in range(copies):
            delay = self.rng.uniform(self.faults.min_delay, self.faults.max_delay)
            self.clock.call_later(delay, functools.partial(self._deliver, src, dst, message))

    def _deliver(self, src: str, dst: str, message: Any) -> None:
        # Partitions that formed while the message was in flight also stop it.
        if not self.reachable(src, dst):
            self.stats.dropped += 1
            return
        receiver = self._receivers.get(dst)
        if receiver is not None:
            self.stats.delivered += 1
            receiver(src, message)
