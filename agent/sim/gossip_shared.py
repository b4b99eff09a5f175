"""Copy-on-write member tables, so thousands of simulated nodes can start converged.

A converged cluster of N nodes holds N views of N members: N^2 states (about 0.4 GB at
N = 1000, 10 GB at N = 5000). Here every view starts as the same shared base and keeps
only what it changed: `SharedMap.own(name)` (what the cores call, through their
`_owned` helpers, before changing a state) copies the base entry into the view first.
Plain reads never copy. `SharedNames` is the probe-order list, materialised per view on
its first change. Used only by `GossipCluster.converged`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")


class SharedMap(Generic[V]):
    """The dict operations the gossip cores use, over a shared base plus own changes."""

    def __init__(self, base: dict[str, V], copy: Callable[[V], V]) -> None:
        self._base = base
        self._copy = copy
        self._own: dict[str, V] = {}
        self._deleted: set[str] = set()
        self._len = len(base)

    def own(self, key: str) -> V | None:
        """The entry for writing: a private copy of the shared one."""
        value = self._own.get(key)
        if value is not None:
            return value
        if key in self._deleted or key not in self._base:
            return None
        value = self._own[key] = self._copy(self._base[key])
        return value

    def get(self, key: str, default: V | None = None) -> V | None:
        value = self._own.get(key)
        if value is not None:
            return value
        if key in self._deleted:
            return default
        return self._base.get(key, default)

    def __getitem__(self, key: str) -> V:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        if key in self._own:
            return True
        return key in self._base and key not in self._deleted

    def __setitem__(self, key: str, value: V) -> None:
        if key not in self:
            self._len += 1
        self._own[key] = value
        self._deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._own.pop(key, None)
        if key in self._base:
            self._deleted.add(key)
        self._len -= 1

    def pop(self, key: str, default: V | None = None) -> V | None:
        value = self.get(key, default)
        if key in self:
            del self[key]
        return value

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        yield from self._own
        for key in self._base:
            if key not in self._own and key not in self._deleted:
                yield key

    def items(self) -> Iterator[tuple[str, V]]:
        for key in self:
            yield key, self[key]

    def values(self) -> Iterator[V]:
        for key in self:
            yield self[key]


class SharedNames:
    """A list of names shared by every view until one view changes its own."""

    def __init__(self, base: list[str]) -> None:
        self._base = base
        self._own: list[str] | None = None

    def _list(self) -> list[str]:
        return self._own if self._own is not None else self._base

    def _mine(self) -> list[str]:
        if self._own is None:
            self._own = list(self._base)
        return self._own

    def __len__(self) -> int:
        return len(self._list())

    def __getitem__(self, i: int) -> str:
        return self._list()[i]

    def __setitem__(self, i: int, value: str) -> None:
        self._mine()[i] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._list())

    def append(self, name: str) -> None:
        self._mine().append(name)
