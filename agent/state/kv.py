"""KV entries with tombstones, check-and-set, locks held by sessions, and Txn, as Consul 0.7's
state/kvs.go and state/txn.go (messages verbatim)."""

from __future__ import annotations

from typing import Any

from agent.state.tables import _KEY_MAX, StateError, Tables, _copy, _uint, go_quote


class KVTables(Tables):
    """The kvs and tombstones tables."""

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
