"""Txn operations on the catalog (Consul >= 1.4: Node, Service and Check ops beside KV), in
one all-or-nothing transaction with the KV ops (kv.py's `txn`). Verbs, results and error
texts are Consul's state/txn.go: set, cas, get, delete, delete-cas."""

from __future__ import annotations

from typing import Any

from agent.state.config_entries import ConfigEntryTables
from agent.state.tables import StateError, _copy

CATALOG_VERBS = ("set", "cas", "get", "delete", "delete-cas")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _index(obj: dict[str, Any]) -> int:
    raw = obj.get("ModifyIndex") or 0
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise StateError("ModifyIndex must be an unsigned integer")
    return raw


class CatalogTxnTables(ConfigEntryTables):
    def _txn_op(self, idx: int, op: dict[str, Any]) -> list[dict[str, Any]]:
        if isinstance(op, dict):
            for kind, handler in (
                ("Node", self._txn_node),
                ("Service", self._txn_service),
                ("Check", self._txn_check),
            ):
                body = op.get(kind)
                if isinstance(body, dict):
                    verb = str(body.get("Verb") or "")
                    if verb not in CATALOG_VERBS:
                        raise StateError(f"unknown {kind} verb {_q(verb)}")
                    return handler(idx, verb, body)
        return super()._txn_op(idx, op)

    def _txn_record(
        self,
        idx: int,
        verb: str,
        *,
        what: str,
        result: str,
        record: dict[str, Any],
        stored: Any,
        write: Any,
        delete: Any,
    ) -> list[dict[str, Any]]:
        """One catalog op: `stored()` is the current record (None if absent), `write()` sets
        it, `delete()` removes it; `what` names it in errors as Consul does."""
        existing = stored()
        if verb == "get":
            if existing is None:
                raise StateError(f"{what} doesn't exist")
            return [{result: _copy(existing)}]
        if verb in ("cas", "delete-cas"):
            current = existing["ModifyIndex"] if existing else 0
            if current != _index(record):
                action = "set" if verb == "cas" else "delete"
                raise StateError(f"failed to {action} {what}, index is stale")
        if verb.startswith("delete"):
            delete()
            return []
        write()
        return [{result: _copy(stored())}]

    def _txn_node(self, idx: int, verb: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        node = body.get("Node")
        if not isinstance(node, dict) or not node.get("Node"):
            raise StateError("Must provide node")
        name = str(node["Node"])
        return self._txn_record(
            idx,
            verb,
            what=f"node {_q(name)}",
            result="Node",
            record=node,
            stored=lambda: self._nodes.get(name),
            write=lambda: self._ensure_node(idx, node),
            delete=lambda: self._delete_node(idx, name),
        )

    def _txn_service(self, idx: int, verb: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        node = str(body.get("Node") or "")
        svc = body.get("Service")
        if not node or not isinstance(svc, dict):
            raise StateError("Must provide node and service")
        sid = str(svc.get("ID") or svc.get("Service") or "")
        return self._txn_record(
            idx,
            verb,
            what=f"service {_q(sid)} on node {_q(node)}",
            result="Service",
            record=svc,
            stored=lambda: self._services.get((node, sid)),
            write=lambda: self._ensure_service(idx, node, svc),
            delete=lambda: self._delete_service(idx, node, sid),
        )

    def _txn_check(self, idx: int, verb: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        chk = body.get("Check")
        if not isinstance(chk, dict) or not chk.get("Node"):
            raise StateError("Must provide check with a node")
        node = str(chk["Node"])
        cid = str(chk.get("CheckID") or chk.get("Name") or "")
        return self._txn_record(
            idx,
            verb,
            what=f"check {_q(cid)} on node {_q(node)}",
            result="Check",
            record=chk,
            stored=lambda: self._checks.get((node, cid)),
            write=lambda: self._ensure_check(idx, chk),
            delete=lambda: self._delete_check(idx, node, cid),
        )
