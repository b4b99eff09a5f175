"""StateFSM: the raft state machine. Decodes each committed command, applies it to the
StateStore at its raft index, and returns the result raft hands back to the proposer.

A command that cannot be applied (malformed bytes, an unknown type, a write the state
refuses) returns an `FSMError` value rather than raising: raft must keep applying the log, and
the endpoint that proposed the command turns the value into the RPC's error, as Consul's
endpoints do with an `error` returned from the FSM.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agent.codec import FrameError, packb, unpackb
from agent.metrics import metrics
from agent.state.commands import (
    IGNORE_UNKNOWN_TYPE_FLAG,
    CommandError,
    MessageType,
    decode_command,
)
from agent.state.store import StateError, StateStore

log = logging.getLogger("consul")


class FSMError(Exception):
    """Returned (not raised) by StateFSM.apply for a command that failed; str() is Consul's
    message."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FSMError) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


_NOT_ACL = object()


#: the sample each command type's apply is timed as, in Consul's names
FSM_KEYS: dict[int, str] = {
    MessageType.REGISTER: "fsm.register",
    MessageType.DEREGISTER: "fsm.deregister",
    MessageType.KVS: "fsm.kvs",
    MessageType.SESSION: "fsm.session",
    MessageType.TOMBSTONE: "fsm.tombstone",
    MessageType.COORDINATE_BATCH_UPDATE: "fsm.coordinate.batch-update",
    MessageType.TXN: "fsm.txn",
    MessageType.AUTOPILOT: "fsm.autopilot",
    MessageType.ACL_BOOTSTRAP: "fsm.acl.bootstrap",
    MessageType.ACL_TOKEN_SET: "fsm.acl.token",
    MessageType.ACL_TOKEN_DELETE: "fsm.acl.token",
    MessageType.ACL_POLICY_SET: "fsm.acl.policy",
    MessageType.ACL_POLICY_DELETE: "fsm.acl.policy",
    MessageType.ACL_ROLE_SET: "fsm.acl.role",
    MessageType.ACL_ROLE_DELETE: "fsm.acl.role",
    MessageType.CONFIG_ENTRY: "fsm.config_entry",
    MessageType.SNAPSHOT_RESTORE: "fsm.restore",
}


class StateFSM:
    """Implements agent.raft's FSM Protocol over a StateStore."""

    def __init__(self, state: StateStore | None = None) -> None:
        self.state = state if state is not None else StateStore()

    def apply(self, index: int, term: int, data: bytes) -> Any:
        try:
            msg_type, req = decode_command(data)
        except CommandError as exc:
            log.error("fsm: failed to decode command at index %d: %s", index, exc)
            return FSMError(f"failed to decode command: {exc}")
        ignore_unknown = bool(msg_type & IGNORE_UNKNOWN_TYPE_FLAG)
        msg_type &= ~IGNORE_UNKNOWN_TYPE_FLAG
        start = time.perf_counter()
        try:
            return self._dispatch(index, msg_type, req, ignore_unknown)
        except StateError as exc:
            log.info("fsm: apply of %s failed: %s", _type_name(msg_type), exc)
            return FSMError(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A command with fields of the wrong type: refuse it, keep the log moving.
            log.error("fsm: bad %s command at index %d: %r", _type_name(msg_type), index, exc)
            return FSMError(f"invalid {_type_name(msg_type)} request: {exc}")
        finally:
            key = FSM_KEYS.get(msg_type)
            if key is not None:  # Consul's consul.fsm.<type> (op labelled where it has one)
                op = req.get("Op") if isinstance(req, dict) else None
                metrics.measure_since(key, start, (("op", op),) if isinstance(op, str) else ())

    def _acl(self, index: int, msg_type: int, req: dict[str, Any]) -> Any:
        """The ACL writes (Consul 1.x's token, policy, role and bootstrap requests)."""
        st = self.state
        if msg_type == MessageType.ACL_BOOTSTRAP:
            return st.acl_bootstrap(index, dict(req["Token"]), int(req.get("ResetIndex") or 0))
        if msg_type == MessageType.ACL_TOKEN_SET:
            return st.acl_token_set(index, dict(req["Token"]))
        if msg_type == MessageType.ACL_TOKEN_DELETE:
            st.acl_token_delete(index, str(req["AccessorID"]))
            return None
        if msg_type == MessageType.ACL_POLICY_SET:
            return st.acl_policy_set(index, dict(req["Policy"]))
        if msg_type == MessageType.ACL_POLICY_DELETE:
            st.acl_policy_delete(index, str(req["ID"]))
            return None
        if msg_type == MessageType.ACL_ROLE_SET:
            return st.acl_role_set(index, dict(req["Role"]))
        if msg_type == MessageType.ACL_ROLE_DELETE:
            st.acl_role_delete(index, str(req["ID"]))
            return None
        return _NOT_ACL

    def _prepared_query(self, index: int, req: dict[str, Any]) -> Any:
        """PreparedQueryRequest {Op: create | update | delete, Query: PreparedQuery}."""
        query = req.get("Query")
        if not isinstance(query, dict):
            return FSMError("invalid PreparedQuery request: missing Query")
        op = req.get("Op")
        if op in ("create", "update"):
            self.state.prepared_query_set(index, query)
            return None
        if op == "delete":
            self.state.prepared_query_delete(index, str(query.get("ID") or ""))
            return None
        return FSMError(f"Unknown prepared query operation: {op}")

    def _dispatch(self, index: int, msg_type: int, req: dict[str, Any], ignore: bool) -> Any:
        st = self.state
        if msg_type == MessageType.REGISTER:
            st.ensure_registration(index, req)
            return None
        if msg_type == MessageType.DEREGISTER:
            st.deregister(index, req)
            return None
        if msg_type == MessageType.KVS:
            dir_ent = req.get("DirEnt")
            if not isinstance(dir_ent, dict):
                return FSMError("invalid KVS request: missing DirEnt")
            return st.kvs_apply(index, str(req.get("Op") or ""), dir_ent)
        if msg_type == MessageType.SESSION:
            sess = req.get("Session")
            if not isinstance(sess, dict):
                return FSMError("invalid Session request: missing Session")
            op = req.get("Op")
            if op == "create":
                return st.session_create(index, sess)
            if op == "destroy":
                st.session_destroy(index, str(sess.get("ID") or ""))
                return None
            return FSMError(f"Invalid Session operation '{op}'")
        if msg_type == MessageType.TOMBSTONE:
            if req.get("Op") == "reap":
                st.reap_tombstones(index, int(req.get("ReapIndex") or 0))
                return None
            return FSMError(f"Invalid Tombstone operation '{req.get('Op')}'")
        if msg_type == MessageType.COORDINATE_BATCH_UPDATE:
            updates = req.get("Updates")
            if not isinstance(updates, list):
                return FSMError("invalid CoordinateBatchUpdate request: missing Updates")
            st.coordinate_batch_update(index, updates)
            return None
        if msg_type == MessageType.TXN:
            ops = req.get("Ops")
            if not isinstance(ops, list):
                return FSMError("invalid Txn request: missing Ops")
            return st.txn(index, ops)
        if msg_type == MessageType.AUTOPILOT:
            config = req.get("Config")
            if not isinstance(config, dict):
                return FSMError("invalid Autopilot request: missing Config")
            cas = int(config.get("ModifyIndex") or 0) if req.get("CAS") else None
            return st.autopilot_set_config(index, config, cas)
        if msg_type == MessageType.CONFIG_ENTRY:
            entry = req.get("Entry")
            if not isinstance(entry, dict):
                return FSMError("invalid ConfigEntry request: missing Entry")
            return st.config_entry_apply(
                index, str(req.get("Op") or ""), entry, int(req.get("Cas") or 0)
            )
        if msg_type == MessageType.PREPARED_QUERY:
            return self._prepared_query(index, req)
        acl = self._acl(index, msg_type, req)
        if acl is not _NOT_ACL:
            return acl
        if msg_type == MessageType.SNAPSHOT_RESTORE:
            data = req.get("Data")
            if not isinstance(data, bytes):
                return FSMError("invalid SnapshotRestore request: missing Data")
            try:
                snap = unpackb(data)
            except FrameError as exc:
                return FSMError(f"failed to restore snapshot: {exc}")
            st.restore_tables(snap, at_index=index)
            return None
        if ignore:
            log.warning(
                "fsm: ignoring unknown message type (%d), upgrade to newer version", msg_type
            )
            return None
        return FSMError(f"failed to apply request: unknown message type {msg_type}")

    def snapshot(self) -> bytes:
        return packb(self.state.snapshot_tables())

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's. Raises ValueError for a malformed snapshot
        (raft must not install it); the current state is kept then."""
        try:
            snap = unpackb(data)
        except FrameError as exc:
            raise ValueError(f"malformed state snapshot: {exc}") from exc
        try:
            self.state.restore_tables(snap)
        except StateError as exc:
            raise ValueError(str(exc)) from exc


def _type_name(msg_type: int) -> str:
    try:
        return MessageType(msg_type).name
    except ValueError:
        return f"type {msg_type}"
