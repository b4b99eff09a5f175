"""Sessions: create, destroy and invalidation (locks released or deleted, lock-delay set),
bound to a node and its checks, as Consul 0.7's state/session.go."""

from __future__ import annotations

from typing import Any

from agent.state.kv import KVTables
from agent.state.tables import (
    _KEY_MAX,
    HEALTH_CRITICAL,
    MAX_LOCK_DELAY_NS,
    SESSION_DELETE,
    SESSION_RELEASE,
    StateError,
    _copy,
    _uint,
)


class SessionTables(KVTables):
    """The sessions table and its session_checks / node-sessions indexes."""

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
                # Consul >= 1.7 tells node and service checks apart; Checks is their union
                "NodeChecks": [str(c) for c in sess.get("NodeChecks") or []] or None,
                "ServiceChecks": [
                    {"ID": str(c.get("ID") or ""), "Namespace": str(c.get("Namespace") or "")}
                    for c in sess.get("ServiceChecks") or []
                    if isinstance(c, dict)
                ]
                or None,
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
