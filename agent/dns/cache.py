"""dns_config.use_cache: catalog reads served from the agent, kept fresh in the background.

Consul's agent cache, for the two reads DNS makes most (Catalog.NodeServices and
Health.ServiceNodes): the first question for a name fetches it; from then on a task per
entry re-asks the servers with a blocking query (MinQueryIndex = the index it holds), so the
entry changes as soon as the catalog does and a question costs no RPC. When the servers
cannot be reached the entry keeps being served; with cache_max_age > 0, once its refresh
has failed for longer than that, a question fetches afresh (and fails as an uncached read
would). Entries not asked for in IDLE_TTL, and the least recently asked past MAX_ENTRIES,
are dropped with their tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import RPCError

log = logging.getLogger("dns")

#: the reads that can block on an index, so an entry can follow the catalog
CACHED_METHODS = frozenset(("Catalog.NodeServices", "Health.ServiceNodes"))
MAX_ENTRIES = 1024
#: Consul's cache drops an entry not read for 3 days
IDLE_TTL = 3 * 24 * 3600.0
#: the wait of each background blocking query
REFRESH_WAIT = 300.0
RETRY_MIN, RETRY_MAX = 0.5, 30.0

Key = tuple[str, tuple[tuple[str, Any], ...]]
RPC = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass(slots=True)
class _Entry:
    reply: Any
    last_get: float
    #: since when the refresh loop has failed to reach the servers (None: in contact)
    lost_contact: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ReadCache:
    def __init__(self, rpc: RPC, max_age: float, clock: Callable[[], float] = time.monotonic):
        self._rpc = rpc
        self._max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(method: str, args: dict[str, Any]) -> Key:
        return method, tuple(sorted(args.items()))

    def cached(self, method: str, args: dict[str, Any]) -> Any | None:
        """The entry's reply if it may be served now, without awaiting; None otherwise."""
        entry = self._entries.get(self.key(method, args))
        if entry is None:
            return None
        now = self._clock()
        lost = entry.lost_contact
        if self._max_age > 0 and lost is not None and now - lost > self._max_age:
            return None
        entry.last_get = now
        self._entries.move_to_end(self.key(method, args))
        self.hits += 1
        return entry.reply

    async def get(self, method: str, args: dict[str, Any]) -> Any:
        if method not in CACHED_METHODS:
            return await self._rpc(method, args)
        reply = self.cached(method, args)
        if reply is not None:
            return reply
        self.misses += 1
        reply = await self._rpc(method, args)
        self._store(self.key(method, args), dict(args), reply)
        return reply

    def _store(self, key: Key, args: dict[str, Any], reply: Any) -> None:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            entry.reply, entry.lost_contact, entry.last_get = reply, None, now
            return
        entry = _Entry(reply, now)
        self._entries[key] = entry
        entry.task = asyncio.get_running_loop().create_task(self._refresh(key, args, entry))
        while len(self._entries) > MAX_ENTRIES:
            _, old = self._entries.popitem(last=False)
            if old.task is not None:
                old.task.cancel()

    async def _refresh(self, key: Key, args: dict[str, Any], entry: _Entry) -> None:
        method = key[0]
        backoff = RETRY_MIN
        while self._entries.get(key) is entry:
            if self._clock() - entry.last_get > IDLE_TTL:
                self._entries.pop(key, None)
                return
            index = int((entry.reply or {}).get("Index") or 0)
            try:
                reply = await self._rpc(
                    method, dict(args, MinQueryIndex=index, MaxQueryTime=REFRESH_WAIT)
                )
            except (RPCError, OSError, ConnectionError, TimeoutError) as exc:
                if entry.lost_contact is None:
                    entry.lost_contact = self._clock()
                log.debug("cache refresh of %s failed: %s", method, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
                continue
            entry.reply, entry.lost_contact, backoff = reply, None, RETRY_MIN
            if int((reply or {}).get("Index") or 0) <= index:
                # An index that did not move past ours is a timed-out wait (or a reset):
                # pause a little so that a server answering at once does not spin us.
                await asyncio.sleep(RETRY_MIN)

    async def close(self) -> None:
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        self._entries.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
