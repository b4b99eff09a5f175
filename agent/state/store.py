"""The replicated state: KV entries (with tombstones), sessions, catalog nodes, services and
checks, network coordinates, and the autopilot configuration, as Consul 0.7's state store.

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
        store: StateStore,
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


class StateStore:
    """In-memory tables of the replicated state. Writes are called by StateFSM only."""

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

    # ------------------------------------------------------------------------------- KV

    @staticmethod
    def _dir_entry(req: dict[str, Any]) -> dict[str, Any]:
        value = req.get("Value")
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, bytearray):
            value = bytes(value)
        elif value is not None and not isinstance(value, bytes):
            raise StateError(f"Value must be bytes, not {type(value).__name__}")
        return {
            "Key": str(req.get("Key") or ""),
            "Flags": _uint(req.get("Flags"), "Flags"),
            "Value": value,
            "Session": str(req.get("Session") or ""),
            "LockIndex": _uint(req.get("LockIndex"), "LockIndex"),
            "CreateIndex": _uint(req.get("CreateIndex"), "CreateIndex"),
            "ModifyIndex": _uint(req.get("ModifyIndex"), "ModifyIndex"),
        }

    def _kvs_set(self, idx: int, entry: dict[str, Any], update_session: bool) -> dict[str, Any]:
        key = entry["Key"]
        existing = self._kvs.get(key)
        entry = dict(entry)
        entry["CreateIndex"] = existing["CreateIndex"] if existing else idx
        entry["ModifyIndex"] = idx
        if not update_session:
            entry["Session"] = existing["Session"] if existing else ""
        if existing and existing["Session"] and existing["Session"] != entry["Session"]:
            self._del(self._session_keys, (existing["Session"], key))
        if entry["Session"]:
            self._set(self._session_keys, (entry["Session"], key), None)
        self._set(self._kvs, key, entry)
        self._touch("kvs", idx, key)
        return entry

    def _kvs_delete(self, idx: int, key: str) -> bool:
        existing = self._kvs.get(key)
        if existing is None:
            return False
        if existing["Session"]:
            self._del(self._session_keys, (existing["Session"], key))
        self._del(self._kvs, key)
        self._set(self._tombstones, key, idx)
        self._touch("kvs", idx, key)
        self._touch("tombstones", idx, key)
        return True

    def _kvs_delete_tree(self, idx: int, prefix: str) -> None:
        for key in list(self._kvs.irange(prefix, prefix + _KEY_MAX)):
            if key.startswith(prefix):
                self._kvs_delete(idx, key)

    def _kvs_cas(self, idx: int, entry: dict[str, Any]) -> bool:
        existing = self._kvs.get(entry["Key"])
        cas = entry["ModifyIndex"]
        if cas == 0 and existing is not None:
            return False
        if cas != 0 and (existing is None or existing["ModifyIndex"] != cas):
            return False
        self._kvs_set(idx, entry, update_session=False)
        return True

    def _kvs_delete_cas(self, idx: int, cas: int, key: str) -> bool:
        existing = self._kvs.get(key)
        if existing is None or existing["ModifyIndex"] != cas:
            return existing is None
        self._kvs_delete(idx, key)
        return True

    def _kvs_lock(self, idx: int, entry: dict[str, Any]) -> bool:
        session = entry["Session"]
        if not session:
            raise StateError("missing session")
        if session not in self._sessions:
            raise StateError(f"invalid session {go_quote(session)}")
        existing = self._kvs.get(entry["Key"])
        entry = dict(entry)
        if existing is not None:
            if existing["Session"]:
                if existing["Session"] != session:
                    return False
                entry["LockIndex"] = existing["LockIndex"]
            else:
                entry["LockIndex"] = existing["LockIndex"] + 1
        else:
            entry["LockIndex"] = 1
        self._kvs_set(idx, entry, update_session=True)
        return True

    def _kvs_unlock(self, idx: int, entry: dict[str, Any]) -> bool:
        session = entry["Session"]
        if not session:
            raise StateError("missing session")
        existing = self._kvs.get(entry["Key"])
        if existing is None or existing["Session"] != session:
            return False
        entry = dict(entry)
        entry["Session"] = ""
        entry["LockIndex"] = existing["LockIndex"]
        self._kvs_set(idx, entry, update_session=True)
        return True

    def kvs_apply(self, idx: int, op: str, dir_ent: dict[str, Any]) -> bool:
        """One KVS.Apply operation; True/False as Consul's FSM answers it."""
        entry = self._dir_entry(dir_ent)
        with self._write():
            if op == "set":
                self._kvs_set(idx, entry, update_session=False)
                return True
            if op == "delete":
                self._kvs_delete(idx, entry["Key"])
                return True
            if op == "delete-tree":
                self._kvs_delete_tree(idx, entry["Key"])
                return True
            if op == "delete-cas":
                return self._kvs_delete_cas(idx, entry["ModifyIndex"], entry["Key"])
            if op == "cas":
                return self._kvs_cas(idx, entry)
            if op == "lock":
                return self._kvs_lock(idx, entry)
            if op == "unlock":
                return self._kvs_unlock(idx, entry)
            raise StateError(f"Invalid KVS operation '{op}'")

    def kvs_get(self, key: str) -> tuple[int, dict[str, Any] | None]:
        idx = self.table_index("kvs", "tombstones")
        ent = self._kvs.get(key)
        return idx, (_copy(ent) if ent is not None else None)

    def _prefix_index(self, prefix: str, entries_max: int) -> int:
        idx = self.table_index("kvs", "tombstones")
        if not prefix:
            return idx
        lindex = entries_max
        for key in self._tombstones.irange(prefix, prefix + _KEY_MAX):
            if key.startswith(prefix):
                lindex = max(lindex, self._tombstones[key])
        return lindex or idx

    def kvs_list(self, prefix: str) -> tuple[int, list[dict[str, Any]]]:
        ents = [
            _copy(self._kvs[k])
            for k in self._kvs.irange(prefix, prefix + _KEY_MAX)
            if k.startswith(prefix)
        ]
        lindex = max((e["ModifyIndex"] for e in ents), default=0)
        return self._prefix_index(prefix, lindex), ents

    def kvs_list_keys(self, prefix: str, separator: str) -> tuple[int, list[str]]:
        keys: list[str] = []
        lindex = 0
        prev = None
        for k in self._kvs.irange(prefix, prefix + _KEY_MAX):
            if not k.startswith(prefix):
                continue
            lindex = max(lindex, self._kvs[k]["ModifyIndex"])
            if not separator:
                keys.append(k)
                continue
            pos = k.find(separator, len(prefix))
            if pos >= 0:
                k = k[: pos + len(separator)]
                if k != prev:
                    keys.append(k)
                    prev = k
            else:
                keys.append(k)
        return self._prefix_index(prefix, lindex), keys

    def kvs_lock_delay(self, key: str) -> float:
        """When (in `now()` time) the lock-delay on `key` ends; 0 when there is none."""
        return self._lock_delay.get(key, 0.0)

    def reap_tombstones(self, idx: int, reap_index: int) -> None:
        """Forget tombstones of deletes at or before reap_index (Consul's Tombstone reap)."""
        with self._write():
            for key, at in list(self._tombstones.items()):
                if at <= reap_index:
                    # Not a change readers wait for: a blocking query must not wake for it.
                    self._del(self._tombstones, key)

    def tombstones(self) -> list[tuple[str, int]]:
        return list(self._tombstones.items())

    # ------------------------------------------------------------------------------- Txn

    def txn(self, idx: int, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply Txn ops all or nothing; {"Results": [...]|None, "Errors": [...]|None}."""
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []

        class _Abort(Exception):
            pass

        try:
            with self._write():
                for i, op in enumerate(ops):
                    try:
                        results.extend(self._txn_op(idx, op))
                    except StateError as exc:
                        errors.append({"OpIndex": i, "What": str(exc)})
                if errors:
                    raise _Abort
        except _Abort:
            return {"Results": None, "Errors": errors}
        return {"Results": results, "Errors": None}

    def _txn_op(self, idx: int, op: dict[str, Any]) -> list[dict[str, Any]]:
        kv = op.get("KV") if isinstance(op, dict) else None
        if not isinstance(kv, dict):
            raise StateError("unknown operation type, only KV is supported")
        verb = str(kv.get("Verb") or "")
        raw = kv.get("DirEnt")
        entry = self._dir_entry(raw if isinstance(raw, dict) else {})
        key = entry["Key"]
        result: dict[str, Any] | None = None
        if verb == "set":
            result = self._kvs_set(idx, entry, update_session=False)
        elif verb == "delete":
            self._kvs_delete(idx, key)
        elif verb == "delete-cas":
            if not self._kvs_delete_cas(idx, entry["ModifyIndex"], key):
                raise StateError(f"failed to delete key {go_quote(key)}, index is stale")
        elif verb == "delete-tree":
            self._kvs_delete_tree(idx, key)
        elif verb == "cas":
            if not self._kvs_cas(idx, entry):
                raise StateError(f"failed to set key {go_quote(key)}, index is stale")
            result = self._kvs[key]
        elif verb == "lock":
            if not self._kvs_lock(idx, entry):
                raise StateError(f"failed to lock key {go_quote(key)}, lock is already held")
            result = self._kvs[key]
        elif verb == "unlock":
            if not self._kvs_unlock(idx, entry):
                raise StateError(
                    f"failed to unlock key {go_quote(key)}, lock isn't held, "
                    "or is held by another session"
                )
            result = self._kvs[key]
        elif verb == "get":
            ent = self._kvs.get(key)
            if ent is None:
                raise StateError(f"key {go_quote(key)} doesn't exist")
            return [{"KV": _copy(ent)}]
        elif verb == "get-tree":
            return [{"KV": e} for e in self.kvs_list(key)[1]]
        elif verb == "check-session":
            ent = self._kvs.get(key)
            if ent is None:
                raise StateError(f"failed to check session, key {go_quote(key)} doesn't exist")
            if ent["Session"] != entry["Session"]:
                raise StateError(
                    f"failed session check for key {go_quote(key)}, current session "
                    f"{go_quote(ent['Session'])} != {go_quote(entry['Session'])}"
                )
            result = ent
        elif verb == "check-index":
            ent = self._kvs.get(key)
            if ent is None:
                raise StateError(f"failed to check index, key {go_quote(key)} doesn't exist")
            if ent["ModifyIndex"] != entry["ModifyIndex"]:
                raise StateError(
                    f"failed index check for key {go_quote(key)}, current modify index "
                    f"{ent['ModifyIndex']} != {entry['ModifyIndex']}"
                )
            result = ent
        else:
            raise StateError(f"unknown KV verb {go_quote(verb)}")
        if result is None:
            return []
        clone = _copy(result)
        clone["Value"] = None
        return [{"KV": clone}]

    # -------------------------------------------------------------------------- sessions

    def session_create(self, idx: int, sess: dict[str, Any]) -> str:
        sid = str(sess.get("ID") or "")
        node = str(sess.get("Node") or "")
        checks = [str(c) for c in (sess.get("Checks") or [])]
        behavior = str(sess.get("Behavior") or SESSION_RELEASE)
        if not sid:
            raise StateError("Missing session ID")
        if behavior not in (SESSION_RELEASE, SESSION_DELETE):
            raise StateError(f"Invalid Behavior setting '{behavior}'")
        with self._write():
            if node not in self._nodes:
                raise StateError("Missing node registration")
            for check_id in checks:
                check = self._checks.get((node, check_id))
                if check is None:
                    raise StateError(f"Missing check '{check_id}' registration")
                if check["Status"] == HEALTH_CRITICAL:
                    raise StateError(f"Check '{check_id}' is in {check['Status']} state")
            record = {
                "ID": sid,
                "Name": str(sess.get("Name") or ""),
                "Node": node,
                "Checks": checks,
                "LockDelay": _uint(sess.get("LockDelay"), "LockDelay"),
                "Behavior": behavior,
                "TTL": str(sess.get("TTL") or ""),
                "CreateIndex": idx,
                "ModifyIndex": idx,
            }
            self._set(self._sessions, sid, record)
            self._set(self._node_sessions, (node, sid), None)
            for check_id in checks:
                self._set(self._session_checks, (node, check_id, sid), None)
            self._touch("sessions", idx, sid)
        return sid

    def session_destroy(self, idx: int, sid: str) -> None:
        with self._write():
            self._session_delete(idx, sid)

    def _session_delete(self, idx: int, sid: str) -> None:
        sess = self._sessions.get(sid)
        if sess is None:
            return
        delay_ns = min(int(sess["LockDelay"]), MAX_LOCK_DELAY_NS)
        now = self.now()
        keys = [k for (_s, k) in self._session_keys.irange((sid, ""), (sid, _KEY_MAX))]
        for key in keys:
            if sess["Behavior"] == SESSION_DELETE:
                self._kvs_delete(idx, key)
            else:
                released = dict(self._kvs[key])
                released["Session"] = ""
                self._kvs_set(idx, released, update_session=True)
            if delay_ns > 0:
                self._lock_delay[key] = now + delay_ns / 1e9
        self._del(self._sessions, sid)
        self._del(self._node_sessions, (sess["Node"], sid))
        for check_id in sess["Checks"]:
            self._del(self._session_checks, (sess["Node"], check_id, sid))
        self._touch("sessions", idx, sid)

    def _invalidate_check_sessions(self, idx: int, node: str, check_id: str) -> None:
        bound = self._session_checks.irange((node, check_id, ""), (node, check_id, _KEY_MAX))
        for _node, _check, sid in list(bound):
            self._session_delete(idx, sid)

    def session_get(self, sid: str) -> tuple[int, dict[str, Any] | None]:
        sess = self._sessions.get(sid)
        return self.table_index("sessions"), (_copy(sess) if sess is not None else None)

    def session_list(self) -> tuple[int, list[dict[str, Any]]]:
        return self.table_index("sessions"), [_copy(s) for s in self._sessions.values()]

    def node_sessions(self, node: str) -> tuple[int, list[dict[str, Any]]]:
        return self.table_index("sessions"), [
            _copy(self._sessions[sid]) for _node, sid in self._node_session_ids(node)
        ]

    def _node_session_ids(self, node: str) -> list[tuple[str, str]]:
        return list(self._node_sessions.irange((node, ""), (node, _KEY_MAX)))

    # --------------------------------------------------------------------------- catalog

    def ensure_registration(self, idx: int, req: dict[str, Any]) -> None:
        """Catalog.Register: the node (unless SkipNodeUpdate), its service, its checks."""
        node = str(req.get("Node") or "")
        with self._write():
            if not req.get("SkipNodeUpdate") or node not in self._nodes:
                self._ensure_node(idx, req)
            service = req.get("Service")
            if isinstance(service, dict):
                self._ensure_service(idx, node, service)
            checks = list(req.get("Checks") or [])
            if isinstance(req.get("Check"), dict):
                checks.append(req["Check"])
            for check in checks:
                if isinstance(check, dict):
                    self._ensure_check(idx, {**check, "Node": check.get("Node") or node})

    def _ensure_node(self, idx: int, req: dict[str, Any]) -> None:
        name = str(req.get("Node") or "")
        if not name:
            raise StateError("Must provide node")
        existing = self._nodes.get(name)
        # A registration that does not carry a field keeps the stored one (the leader's
        # reconcile registers nodes with only ID and Address; it must not wipe the
        # TaggedAddresses and Meta the node's own agent synced).
        tagged = req.get("TaggedAddresses")
        meta = req.get("NodeMeta", req.get("Meta"))
        record = {
            "ID": str(req.get("ID") or (existing["ID"] if existing else "")),
            "Node": name,
            "Address": str(req.get("Address") or ""),
            "TaggedAddresses": dict(tagged)
            if tagged is not None
            else dict(existing["TaggedAddresses"] if existing else {}),
            "Meta": dict(meta) if meta is not None else dict(existing["Meta"] if existing else {}),
            "CreateIndex": existing["CreateIndex"] if existing else idx,
            "ModifyIndex": idx,
        }
        if existing is not None and _same(existing, record):
            return
        self._set(self._nodes, name, record)
        self._touch("nodes", idx, name)

    def _ensure_service(self, idx: int, node: str, svc: dict[str, Any]) -> None:
        if node not in self._nodes:
            raise StateError("Missing node registration")
        sid = str(svc.get("ID") or svc.get("Service") or "")
        existing = self._services.get((node, sid))
        record = {
            "ID": sid,
            "Service": str(svc.get("Service") or ""),
            "Tags": [str(t) for t in (svc.get("Tags") or [])],
            "Address": str(svc.get("Address") or ""),
            "Port": _uint(svc.get("Port"), "Port"),
            "Meta": dict(svc.get("Meta") or {}),
            "EnableTagOverride": bool(svc.get("EnableTagOverride")),
            "CreateIndex": existing["CreateIndex"] if existing else idx,
            "ModifyIndex": idx,
        }
        if existing is not None and _same(existing, record):
            return
        if existing is not None:
            self._del(self._service_names, (existing["Service"], node, sid))
        self._set(self._service_names, (record["Service"], node, sid), None)
        self._set(self._services, (node, sid), record)
        self._touch("services", idx, sid)

    def _ensure_check(self, idx: int, chk: dict[str, Any]) -> None:
        node = str(chk.get("Node") or "")
        if node not in self._nodes:
            raise StateError("Missing node registration")
        check_id = str(chk.get("CheckID") or chk.get("Name") or "")
        service_id = str(chk.get("ServiceID") or "")
        service_name = ""
        if service_id:
            svc = self._services.get((node, service_id))
            if svc is None:
                raise StateError("Missing service registration")
            service_name = svc["Service"]
        status = str(chk.get("Status") or HEALTH_CRITICAL)
        existing = self._checks.get((node, check_id))
        record = {
            "Node": node,
            "CheckID": check_id,
            "Name": str(chk.get("Name") or ""),
            "Status": status,
            "Notes": str(chk.get("Notes") or ""),
            "Output": str(chk.get("Output") or ""),
            "ServiceID": service_id,
            "ServiceName": service_name,
            "CreateIndex": existing["CreateIndex"] if existing else idx,
            "ModifyIndex": idx,
        }
        if existing is not None and _same(existing, record):
            return
        self._set(self._checks, (node, check_id), record)
        self._touch("checks", idx, check_id)
        if status == HEALTH_CRITICAL:
            self._invalidate_check_sessions(idx, node, check_id)

    def deregister(self, idx: int, req: dict[str, Any]) -> None:
        """Catalog.Deregister: a service, a check, or (with neither) the whole node."""
        node = str(req.get("Node") or "")
        service_id = str(req.get("ServiceID") or "")
        check_id = str(req.get("CheckID") or "")
        with self._write():
            if service_id:
                self._delete_service(idx, node, service_id)
            if check_id:
                self._delete_check(idx, node, check_id)
            if not service_id and not check_id:
                self._delete_node(idx, node)

    def _delete_check(self, idx: int, node: str, check_id: str) -> None:
        if (node, check_id) not in self._checks:
            return
        self._del(self._checks, (node, check_id))
        self._touch("checks", idx, check_id)
        self._invalidate_check_sessions(idx, node, check_id)

    def _delete_service(self, idx: int, node: str, service_id: str) -> None:
        if (node, service_id) not in self._services:
            return
        for (n, cid), chk in list(self._node_checks(node)):
            if chk["ServiceID"] == service_id:
                self._delete_check(idx, n, cid)
        self._del(
            self._service_names, (self._services[(node, service_id)]["Service"], node, service_id)
        )
        self._del(self._services, (node, service_id))
        self._touch("services", idx, service_id)

    def _node_checks(self, node: str) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        for k in self._checks.irange((node, ""), (node, _KEY_MAX)):
            yield k, self._checks[k]

    def _node_services(self, node: str) -> list[dict[str, Any]]:
        return [self._services[k] for k in self._services.irange((node, ""), (node, _KEY_MAX))]

    def _delete_node(self, idx: int, node: str) -> None:
        if node not in self._nodes:
            return
        for svc in self._node_services(node):
            self._delete_service(idx, node, svc["ID"])
        for (n, cid), _chk in list(self._node_checks(node)):
            self._delete_check(idx, n, cid)
        if node in self._coords:
            self._del(self._coords, node)
            self._touch("coordinates", idx, node)
        for _node, sid in self._node_session_ids(node):
            self._session_delete(idx, sid)
        self._del(self._nodes, node)
        self._touch("nodes", idx, node)

    def get_node(self, node: str) -> dict[str, Any] | None:
        rec = self._nodes.get(node)
        return _copy(rec) if rec is not None else None

    def nodes(self, meta_filter: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
        out = [
            _copy(n)
            for n in self._nodes.values()
            if not meta_filter or all(n["Meta"].get(k) == v for k, v in meta_filter.items())
        ]
        return self.table_index("nodes"), out

    def services(self) -> tuple[int, dict[str, list[str]]]:
        tags: dict[str, set[str]] = {}
        for svc in self._services.values():
            tags.setdefault(svc["Service"], set()).update(svc["Tags"])
        return self.table_index("services"), {name: sorted(t) for name, t in sorted(tags.items())}

    def _service_node(self, node: dict[str, Any], svc: dict[str, Any]) -> dict[str, Any]:
        return {
            "ID": node["ID"],
            "Node": node["Node"],
            "Address": node["Address"],
            "TaggedAddresses": dict(node["TaggedAddresses"]),
            "NodeMeta": dict(node["Meta"]),
            "ServiceID": svc["ID"],
            "ServiceName": svc["Service"],
            "ServiceTags": list(svc["Tags"]),
            "ServiceAddress": svc["Address"],
            "ServicePort": svc["Port"],
            "ServiceMeta": dict(svc["Meta"]),
            "ServiceEnableTagOverride": svc["EnableTagOverride"],
            "CreateIndex": svc["CreateIndex"],
            "ModifyIndex": svc["ModifyIndex"],
        }

    def _matching_services(
        self, service: str, tag: str | None
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        for _name, node, sid in self._service_names.irange(
            (service, "", ""), (service, _KEY_MAX, _KEY_MAX)
        ):
            svc = self._services[(node, sid)]
            if tag is not None and tag.lower() not in (t.lower() for t in svc["Tags"]):
                continue
            yield self._nodes[node], svc

    def service_nodes(
        self, service: str, tag: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        out = [self._service_node(n, s) for n, s in self._matching_services(service, tag)]
        return self.table_index("nodes", "services"), out

    def node_services(self, node: str) -> tuple[int, dict[str, Any] | None]:
        idx = self.table_index("nodes", "services")
        rec = self._nodes.get(node)
        if rec is None:
            return idx, None
        return idx, {
            "Node": _copy(rec),
            "Services": {s["ID"]: _copy(s) for s in self._node_services(node)},
        }

    def checks_in_state(self, state: str) -> tuple[int, list[dict[str, Any]]]:
        out = [
            _copy(c) for c in self._checks.values() if state == HEALTH_ANY or c["Status"] == state
        ]
        return self.table_index("checks"), out

    def node_checks(self, node: str) -> tuple[int, list[dict[str, Any]]]:
        return self.table_index("checks"), [_copy(c) for _k, c in self._node_checks(node)]

    def service_checks(self, service: str) -> tuple[int, list[dict[str, Any]]]:
        out = [_copy(c) for c in self._checks.values() if c["ServiceName"] == service]
        return self.table_index("checks"), out

    def check_service_nodes(
        self, service: str, tag: str | None = None, passing_only: bool = False
    ) -> tuple[int, list[dict[str, Any]]]:
        out = []
        for node, svc in self._matching_services(service, tag):
            checks = [
                _copy(c)
                for _k, c in self._node_checks(node["Node"])
                if c["ServiceID"] in ("", svc["ID"])
            ]
            if passing_only and any(c["Status"] != HEALTH_PASSING for c in checks):
                continue
            out.append({"Node": _copy(node), "Service": _copy(svc), "Checks": checks})
        return self.table_index("nodes", "services", "checks"), out

    # ----------------------------------------------------------------------- coordinates

    def coordinate_batch_update(self, idx: int, updates: list[dict[str, Any]]) -> None:
        """Set nodes' coordinates; updates for nodes not in the catalog are dropped (Consul)."""
        with self._write():
            for upd in updates:
                if not isinstance(upd, dict):
                    continue
                node = str(upd.get("Node") or "")
                coord = upd.get("Coord")
                if node not in self._nodes or not isinstance(coord, dict):
                    continue
                self._set(self._coords, node, dict(coord))
                self._touch("coordinates", idx, node)

    def coordinates(self) -> tuple[int, list[dict[str, Any]]]:
        out = [{"Node": n, "Coord": dict(c)} for n, c in self._coords.items()]
        return self.table_index("coordinates"), out

    def coordinate(self, node: str) -> dict[str, Any] | None:
        c = self._coords.get(node)
        return dict(c) if c is not None else None

    # ------------------------------------------------------------------------- autopilot

    def autopilot_set_config(self, idx: int, config: dict[str, Any], cas: int | None) -> bool:
        with self._write():
            current = self._autopilot
            if cas is not None and (current["ModifyIndex"] if current else 0) != cas:
                return False
            record = dict(config)
            record["CreateIndex"] = current["CreateIndex"] if current else idx
            record["ModifyIndex"] = idx
            self._set(self.__dict__, "_autopilot", record)
            self._touch("autopilot", idx)
            return True

    def autopilot_config(self) -> tuple[int, dict[str, Any] | None]:
        cfg = self._autopilot
        return self.table_index("autopilot"), (dict(cfg) if cfg is not None else None)

    # ------------------------------------------------------------------ snapshot, restore

    def snapshot_tables(self) -> dict[str, Any]:
        """Every replicated table and index, in a deterministic order, for the FSM snapshot."""
        return {
            "Version": 1,
            "Indexes": [[t, self._index[t]] for t in TABLES],
            "KVS": list(self._kvs.values()),
            "Tombstones": [[k, v] for k, v in self._tombstones.items()],
            "Sessions": list(self._sessions.values()),
            "Nodes": list(self._nodes.values()),
            "Services": [[node, svc] for (node, _sid), svc in self._services.items()],
            "Checks": list(self._checks.values()),
            "Coordinates": [[n, c] for n, c in self._coords.items()],
            "Autopilot": self._autopilot,
        }

    def restore_tables(self, snap: dict[str, Any], at_index: int = 0) -> None:
        """Replace every table with a snapshot's; wakes every watch. Raises StateError (and
        keeps the current state) if the snapshot is malformed. With `at_index` (a restore
        applied from the raft log) every table index moves to at least that index, so that
        blocking queries see the change."""
        if not isinstance(snap, dict) or snap.get("Version") != 1:
            raise StateError("unsupported snapshot version")
        fresh = StateStore(self.now)
        try:
            for table, idx in snap["Indexes"]:
                if table in fresh._index:
                    fresh._index[table] = int(idx)
            for ent in snap["KVS"]:
                fresh._kvs[ent["Key"]] = ent
                if ent["Session"]:
                    fresh._session_keys[(ent["Session"], ent["Key"])] = None
            for key, idx in snap["Tombstones"]:
                fresh._tombstones[key] = int(idx)
            for sess in snap["Sessions"]:
                fresh._sessions[sess["ID"]] = sess
                fresh._node_sessions[(sess["Node"], sess["ID"])] = None
                for check_id in sess["Checks"]:
                    fresh._session_checks[(sess["Node"], check_id, sess["ID"])] = None
            for node in snap["Nodes"]:
                fresh._nodes[node["Node"]] = node
            for node, svc in snap["Services"]:
                fresh._services[(node, svc["ID"])] = svc
                fresh._service_names[(svc["Service"], node, svc["ID"])] = None
            for chk in snap["Checks"]:
                fresh._checks[(chk["Node"], chk["CheckID"])] = chk
            for node, coord in snap["Coordinates"]:
                fresh._coords[node] = coord
            fresh._autopilot = snap.get("Autopilot")
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"malformed snapshot: {exc!r}") from exc
        for table in TABLES:
            fresh._index[table] = max(fresh._index[table], at_index)
        for name in (
            "_index",
            "_kvs",
            "_tombstones",
            "_session_keys",
            "_sessions",
            "_session_checks",
            "_node_sessions",
            "_nodes",
            "_services",
            "_service_names",
            "_checks",
            "_coords",
            "_autopilot",
        ):
            setattr(self, name, getattr(fresh, name))
        self._lock_delay.clear()
        for watch in list(self._watches):
            self._fire(watch)


def _same(existing: dict[str, Any], record: dict[str, Any]) -> bool:
    return all(existing.get(k) == v for k, v in record.items() if k != "ModifyIndex")
