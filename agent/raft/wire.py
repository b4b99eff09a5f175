"""Raft messages on the wire: each message is a msgpack list `[tag, field, field, ...]`.

Decoding validates every field's type, so a malformed frame is refused with a `WireError`
(the transport then closes that connection) instead of reaching the core.
"""

from __future__ import annotations

from typing import Any

from agent.raft.messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    Message,
    RequestVote,
    ServerInfo,
    SnapshotMeta,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)

#: Bumped when the message layout changes; sent in the connection's hello frame.
PROTOCOL_VERSION = 1


class WireError(Exception):
    """A frame that does not decode to a valid raft message."""


_TAGS: dict[type, int] = {
    RequestVote: 1,
    VoteResponse: 2,
    AppendEntries: 3,
    AppendResponse: 4,
    InstallSnapshot: 5,
    SnapshotResponse: 6,
    TimeoutNow: 7,
}


def _servers_out(servers: tuple[ServerInfo, ...]) -> list[list[str]]:
    return [[s.id, s.address, s.suffrage] for s in servers]


def encode_entry(e: Entry) -> list[Any]:
    return [e.index, e.term, int(e.kind), e.data, _servers_out(e.servers)]


def encode(m: Message) -> list[Any]:
    tag = _TAGS[type(m)]
    if isinstance(m, AppendEntries):
        return [
            tag,
            m.term,
            m.frm,
            m.to,
            m.prev_index,
            m.prev_term,
            [  # inlined encode_entry: this is the leader's hot path
                [e.index, e.term, int(e.kind), e.data, _servers_out(e.servers) if e.servers else []]
                for e in m.entries
            ],
            m.commit,
            m.ctx,
            m.sent_at,
        ]
    if isinstance(m, InstallSnapshot):
        meta = [m.meta.index, m.meta.term, _servers_out(m.meta.servers)]
        return [tag, m.term, m.frm, m.to, meta, m.offset, m.data, m.done, m.ctx, m.sent_at]
    return [tag, *(getattr(m, f) for f in m.__slots__)]


def _int(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise WireError(f"expected a non-negative integer, got {type(v).__name__}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str) or len(v) > 1024:
        raise WireError(f"expected a string, got {type(v).__name__}")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise WireError(f"expected a boolean, got {type(v).__name__}")
    return v


def _float(v: Any) -> float:
    if type(v) not in (int, float):
        raise WireError(f"expected a number, got {type(v).__name__}")
    return float(v)


def _bytes(v: Any) -> bytes:
    if not isinstance(v, bytes):
        raise WireError(f"expected bytes, got {type(v).__name__}")
    return v


def _list(v: Any, n: int | None = None) -> list[Any]:
    if not isinstance(v, list) or (n is not None and len(v) != n):
        raise WireError(f"expected a list of {n} items" if n else "expected a list")
    return v


def _servers_in(v: Any) -> tuple[ServerInfo, ...]:
    out = []
    for s in _list(v):
        sid, addr, suffrage = _list(s, 3)
        if suffrage not in ("Voter", "Nonvoter"):
            raise WireError(f"unknown suffrage {suffrage!r}")
        out.append(ServerInfo(_str(sid), _str(addr), suffrage))
    return tuple(out)


_KINDS = {int(k): k for k in EntryKind}


def decode_entry(v: Any) -> Entry:
    # The hot path of a follower: checks inlined, no enum call.
    if type(v) is not list or len(v) != 5:
        raise WireError("an entry is a list of 5 items")
    index, term, kind, data, servers = v
    if type(index) is not int or type(term) is not int or index < 0 or term < 0:
        raise WireError("entry index and term must be non-negative integers")
    k = _KINDS.get(kind) if type(kind) is int else None
    if k is None:
        raise WireError(f"unknown entry kind {kind!r}")
    if type(data) is not bytes:
        raise WireError("entry data must be bytes")
    return Entry(index, term, k, data, _servers_in(servers) if servers else ())


_FIELD_CHECK: dict[type, list[Any]] = {
    RequestVote: [_int, _str, _str, _int, _int, _bool, _bool],
    VoteResponse: [_int, _str, _str, _bool, _bool],
    AppendResponse: [_int, _str, _str, _bool, _int, _int, _int, _int, _int, _float],
    SnapshotResponse: [_int, _str, _str, _int, _int, _bool, _int, _float],
    TimeoutNow: [_int, _str, _str],
}
_BY_TAG = {tag: cls for cls, tag in _TAGS.items()}


def decode(obj: Any) -> Message:
    items = _list(obj)
    if not items:
        raise WireError("empty message")
    cls = _BY_TAG.get(items[0]) if type(items[0]) is int else None
    if cls is None:
        raise WireError(f"unknown message tag {items[0]!r}")
    f = items[1:]
    try:
        if cls is AppendEntries:
            if len(f) != 9:
                raise WireError("AppendEntries needs 9 fields")
            entries = tuple(decode_entry(e) for e in _list(f[5]))
            return AppendEntries(
                _int(f[0]),
                _str(f[1]),
                _str(f[2]),
                _int(f[3]),
                _int(f[4]),
                entries,
                _int(f[6]),
                _int(f[7]),
                _float(f[8]),
            )
        if cls is InstallSnapshot:
            if len(f) != 9:
                raise WireError("InstallSnapshot needs 9 fields")
            mi, mt, ms = _list(f[3], 3)
            meta = SnapshotMeta(_int(mi), _int(mt), _servers_in(ms))
            return InstallSnapshot(
                _int(f[0]),
                _str(f[1]),
                _str(f[2]),
                meta,
                _int(f[4]),
                _bytes(f[5]),
                _bool(f[6]),
                _int(f[7]),
                _float(f[8]),
            )
        checks = _FIELD_CHECK[cls]
        if len(f) != len(checks):
            raise WireError(f"{cls.__name__} needs {len(checks)} fields, got {len(f)}")
        msg: Message = cls(*(check(v) for check, v in zip(checks, f, strict=True)))
        return msg
    except (TypeError, ValueError) as exc:
        raise WireError(f"malformed {cls.__name__}: {exc}") from exc
