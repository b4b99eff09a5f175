"""Raft commands of the state machine: msgpack maps {"Type": MessageType, "Req": request}.

The type numbers are Consul's structs.MessageType, so a log or snapshot reads the same way
as Consul's; the request maps use Consul's struct field names (see agent/server/endpoints.py).
"""

from __future__ import annotations

import enum
from typing import Any

from agent.codec import FrameError, packb, unpackb


class MessageType(enum.IntEnum):
    REGISTER = 0
    DEREGISTER = 1
    KVS = 2
    SESSION = 3
    ACL = 4
    TOMBSTONE = 5
    COORDINATE_BATCH_UPDATE = 6
    PREPARED_QUERY = 7
    TXN = 8
    AUTOPILOT = 9
    ACL_BOOTSTRAP = 11
    ACL_TOKEN_SET = 12
    ACL_TOKEN_DELETE = 13
    ACL_POLICY_SET = 19
    ACL_POLICY_DELETE = 21
    CONFIG_ENTRY = 20  # Consul's ConfigEntryRequestType
    ACL_ROLE_SET = 26
    ACL_ROLE_DELETE = 27
    #: senate's own: replace the whole state with a snapshot's tables (Snapshot.Restore goes
    #: through the log, so every server restores at the same index). Outside Consul's range.
    SNAPSHOT_RESTORE = 127


#: Consul's IgnoreUnknownTypeFlag: a command with this bit set is skipped by a server that
#: does not know its type instead of being reported as an error.
IGNORE_UNKNOWN_TYPE_FLAG = 128


class CommandError(Exception):
    """A raft command that cannot be decoded."""


def encode_command(msg_type: MessageType | int, req: dict[str, Any]) -> bytes:
    """The bytes to hand to raft.apply for one state change."""
    return packb({"Type": int(msg_type), "Req": req})


def decode_command(data: bytes) -> tuple[int, dict[str, Any]]:
    """(type, request) of a command; raises CommandError with what is wrong."""
    try:
        obj = unpackb(data)
    except FrameError as exc:
        raise CommandError(str(exc)) from exc
    if not isinstance(obj, dict):
        raise CommandError(f"command is a {type(obj).__name__}, not a map")
    msg_type = obj.get("Type")
    req = obj.get("Req")
    if not isinstance(msg_type, int) or isinstance(msg_type, bool):
        raise CommandError("command has no integer Type")
    if not isinstance(req, dict):
        raise CommandError("command has no Req map")
    return msg_type, req
