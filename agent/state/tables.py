"""The core of the state store: the tables, the raft index each was last changed at, write
transactions with undo, and watches. kv.py, sessions.py, catalog.py and store.py build the
replicated state (as Consul 0.7's state store) on it, one concern a file.

Theory of operation
-------------------
Every write names the raft index it is applied at, and runs inside one write transaction
(`_write`): each mutation of a table records how to undo it, so a write that fails half-way
(a registration whose check names a missing service, a Txn with one bad op) leaves nothing
behind — all or nothing, as go-memdb's transactions give Consul. When a write commits, the
changed (table, key) pairs wake the watches that cover them.

Each table remembers the raft index that last changed it (`table_index`). Reads return the
index Consul's read would (for KV: the entry's ModifyIndex, else the highest index under the
prefix including deleted keys' tombstones), so a blocking query that waits for "an index past
N" wakes after a delete too.

Records are plain dicts with Consul's field names and are never mutated in place once stored
(a change stores a new dict), so readers get cheap shallow copies. The store does no I/O and
keeps no tasks: watches are callbacks, and time comes from the `now` function (used only for
lock-delay, which Consul too keeps outside the replicated state, per server).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sortedcontainers import SortedDict

log = logging.getLogger("consul")

#: Largest KV value Consul accepts (maxKVSize).
MAX_KV_VALUE_SIZE = 512 * 1024
#: Largest number of operations in one Txn (maxTxnOps).
MAX_TXN_OPS = 64
#: Consul's structs.MaxLockDelay: a session's lock-delay is capped at 60 s.
MAX_LOCK_DELAY_NS = 60 * 1_000_000_000
DEFAULT_LOCK_DELAY_NS = 15 * 1_000_000_000

HEALTH_PASSING = "passing"
HEALTH_WARNING = "warning"
HEALTH_CRITICAL = "critical"
HEALTH_ANY = "any"
HEALTH_STATES = (HEALTH_PASSING, HEALTH_WARNING, HEALTH_CRITICAL)

SESSION_RELEASE = "release"
SESSION_DELETE = "delete"

TABLES = (
    "kvs",
    "tombstones",
    "sessions",
    "nodes",
    "services",
    "checks",
    "coordinates",
    "autopilot",
    "config-entries",
    "acl-tokens",
    "acl-policies",
    "acl-roles",
    "prepared-queries",
)

_MISSING = object()
_KEY_MAX = "\U0010ffff"


class StateError(Exception):
    """A write the state refuses; the message is Consul's."""


def go_quote(text: str) -> str:
    """Go's %q for the strings that appear in Consul's messages."""
    return json.dumps(text, ensure_ascii=False)


def _uint(value: Any, name: str) -> int:
    """A uint64 field of a request (None means 0); anything else is refused."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise StateError(f"{name} must be an unsigned 64-bit integer, not {value!r}")
    return value


def _copy(rec: dict[str, Any]) -> dict[str, Any]:
    return dict(rec)


class Watch:
    """A waiter parked on some tables (and, for "kvs", a key prefix); `callback` runs after
    every committed write that touches them. Cancel it when done."""

    __slots__ = ("_store", "callback", "prefix", "tables")

    def __init__(
        self,
        store: Tables,
        tables: frozenset[str],
        prefix: str | None,
        callback: Callable[[], None],
    ) -> None:
        self._store = store
        self.tables = tables
        self.prefix = prefix
        self.callback = callback

    def covers(self, table: str, key: str | None) -> bool:
        if table not in self.tables:
            return False
        if self.prefix is None or table not in ("kvs", "tombstones") or key is None:
            return True
        return key.startswith(self.prefix)

    def cancel(self) -> None:
        self._store._watches.discard(self)


class Tables:
    """The in-memory tables and their machinery; StateStore (store.py) is the whole store."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._watches: set[Watch] = set()
        self._undo: list[tuple[Any, Any, Any]] | None = None
        self._changed: set[tuple[str, str | None]] = set()
        self._reset_tables()
        # Not replicated: each server keeps its own, as Consul's lockDelay.
        self._lock_delay: dict[str, float] = {}

    def _reset_tables(self) -> None:
        self._index: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._kvs: SortedDict = SortedDict()  # key -> DirEntry
        self._tombstones: SortedDict = SortedDict()  # key -> index of the delete
        self._session_keys: SortedDict = SortedDict()  # (session, key) -> None
        self._sessions: SortedDict = SortedDict()  # id -> Session
        # Consul's session_checks table, and sessions by node: (node, check, id) / (node, id)
        self._session_checks: SortedDict = SortedDict()
        self._node_sessions: SortedDict = SortedDict()
        self._nodes: SortedDict = SortedDict()  # name -> Node
        self._services: SortedDict = SortedDict()  # (node, id) -> NodeService
        self._service_names: SortedDict = SortedDict()  # (name, node, id) -> None
        self._checks: SortedDict = SortedDict()  # (node, check id) -> HealthCheck
        self._coords: SortedDict = SortedDict()  # node -> Coordinate
        self._autopilot: dict[str, Any] | None = None
        self._config_entries: SortedDict = SortedDict()  # (kind, name) -> ConfigEntry
        self._acl_tokens: SortedDict = SortedDict()  # AccessorID -> ACLToken
        self._acl_policies: SortedDict = SortedDict()  # ID -> ACLPolicy
        self._acl_roles: SortedDict = SortedDict()  # ID -> ACLRole
        self._acl_bootstrap: dict[str, Any] | None = None
        self._prepared_queries: SortedDict = SortedDict()  # ID -> PreparedQuery
        self._query_names: dict[str, str] = {}  # lower-cased Name -> ID (names are unique)

    # ---------------------------------------------------------------- transactions, watches

    @contextmanager
    def _write(self) -> Iterator[None]:
        assert self._undo is None, "nested write transaction"
        self._undo = []
        self._changed = set()
        try:
            yield
        except BaseException:
            for container, key, old in reversed(self._undo):
                if old is _MISSING:
                    container.pop(key, None)
                else:
                    container[key] = old
            self._undo = None
            self._changed = set()
            raise
        self._undo = None
        changed, self._changed = self._changed, set()
        self._notify(changed)

    def _set(self, container: Any, key: Any, value: Any) -> None:
        assert self._undo is not None, "write outside a transaction"
        self._undo.append((container, key, container.get(key, _MISSING)))
        container[key] = value

    def _del(self, container: Any, key: Any) -> None:
        assert self._undo is not None, "write outside a transaction"
        old = container.get(key, _MISSING)
        if old is _MISSING:
            return
        self._undo.append((container, key, old))
        del container[key]

    def _touch(self, table: str, idx: int, key: str | None = None) -> None:
        if self._index[table] < idx:
            self._set(self._index, table, idx)
        self._changed.add((table, key))

    def _notify(self, changed: set[tuple[str, str | None]]) -> None:
        if not changed:
            return
        for watch in list(self._watches):
            if any(watch.covers(table, key) for table, key in changed):
                self._fire(watch)

    @staticmethod
    def _fire(watch: Watch) -> None:
        # A waiter's bug must never reach raft's apply loop.
        try:
            watch.callback()
        except Exception:
            log.exception("state: watch callback failed")

    def watch(
        self, tables: Iterable[str], callback: Callable[[], None], prefix: str | None = None
    ) -> Watch:
        """Call `callback` after each committed write to `tables` (for "kvs" only under
        `prefix` when given). Returns the Watch; cancel() it when done."""
        w = Watch(self, frozenset(tables), prefix, callback)
        self._watches.add(w)
        return w

    def table_index(self, *tables: str) -> int:
        return max(self._index[t] for t in tables)

    def max_index(self) -> int:
        return max(self._index.values())


def _same(existing: dict[str, Any], record: dict[str, Any]) -> bool:
    return all(existing.get(k) == v for k, v in record.items() if k != "ModifyIndex")
