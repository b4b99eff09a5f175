"""A transmit-limited broadcast queue (memberlist queue.go).

Each broadcast is piggybacked on outgoing packets until it has been sent
retransmit_mult * ceil(log10(n+1)) times. Broadcasts sent fewer times go first; a new
broadcast about the same subject (a node name) invalidates the queued one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Item:
    subject: str | None
    message: bytes
    transmits: int
    seq: int
    on_done: Callable[[], None] | None = field(default=None)


class TransmitLimitedQueue:
    def __init__(
        self,
        retransmit_limit: Callable[[], int],
        max_depth: int = 4096,
        on_queue: Callable[[], None] | None = None,
    ) -> None:
        self._limit = retransmit_limit
        self._on_queue = on_queue
        self._max_depth = max_depth
        self._items: list[_Item] = []
        self._by_subject: dict[str, _Item] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def queue(
        self, message: bytes, subject: str | None = None, on_done: Callable[[], None] | None = None
    ) -> None:
        """Queue a message; `subject` (a node name) replaces an older broadcast about it."""
        if subject is not None:
            old = self._by_subject.pop(subject, None)
            if old is not None:
                self._items.remove(old)
                if old.on_done is not None:
                    old.on_done()
        item = _Item(subject, message, 0, next(self._seq), on_done)
        self._items.append(item)
        if subject is not None:
            self._by_subject[subject] = item
        if len(self._items) > self._max_depth:
            # Prune the oldest, most-sent broadcasts first.
            self._items.sort(key=lambda i: (-i.transmits, i.seq))
            for dropped in self._items[: len(self._items) - self._max_depth]:
                self._forget(dropped)
            del self._items[: len(self._items) - self._max_depth]
        if self._on_queue is not None:
            self._on_queue()

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Messages that fit in `limit` bytes, each costing `overhead` extra bytes."""
        if not self._items:
            return []
        transmit_limit = self._limit()
        self._items.sort(key=lambda i: (i.transmits, -i.seq))
        used = 0
        out: list[bytes] = []
        finished: list[_Item] = []
        for item in self._items:
            cost = len(item.message) + overhead
            if used + cost > limit:
                continue
            used += cost
            out.append(item.message)
            item.transmits += 1
            if item.transmits >= transmit_limit:
                finished.append(item)
        for item in finished:
            self._items.remove(item)
            self._forget(item)
        return out

    def _forget(self, item: _Item) -> None:
        if item.subject is not None and self._by_subject.get(item.subject) is item:
            del self._by_subject[item.subject]
        if item.on_done is not None:
            item.on_done()

    def reset(self) -> None:
        for item in self._items:
            self._forget(item)
        self._items.clear()
