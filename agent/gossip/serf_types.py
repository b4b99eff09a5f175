"""Serf's data types: the Lamport clock, members, events, tags, and Serf's own records.

`Member` and the events (`MemberEvent`, `UserEvent`, `Query`) are what `agent.gossip.serf.Serf`
hands out; `encode_tags` / `decode_tags` turn tags into memberlist's node meta and back.
`MemberState`, `Intent`, `PendingQuery` and `Coalesce` are what Serf keeps per member,
per early intent, per query under way and for user-event coalescing (serf lamport.go,
event.go, coalesce_user.go).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from agent.gossip.config import Profile
from agent.gossip.messages import BadMessage, unpack

SERF_PROTOCOL_MIN, SERF_PROTOCOL_MAX, SERF_PROTOCOL_CUR = 2, 5, 4
TAG_MAGIC = 0xFF
META_MAX_SIZE = 512


class LamportClock:
    def __init__(self, start: int = 0) -> None:
        self.counter = start

    def time(self) -> int:
        return self.counter

    def increment(self) -> int:
        self.counter += 1
        return self.counter

    def witness(self, v: int) -> None:
        if v >= self.counter:
            self.counter = v + 1


@dataclass(slots=True)
class Member:
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: str  # "alive" | "leaving" | "left" | "failed"
    protocol_min: int = 1
    protocol_max: int = 5
    protocol_cur: int = 2
    delegate_min: int = SERF_PROTOCOL_MIN
    delegate_max: int = SERF_PROTOCOL_MAX
    delegate_cur: int = SERF_PROTOCOL_CUR


@dataclass(frozen=True)
class MemberEvent:
    type: str  # "member-join"|"member-leave"|"member-failed"|"member-update"|"member-reap"
    members: tuple[Member, ...]


@dataclass(frozen=True)
class UserEvent:
    ltime: int
    name: str
    payload: bytes
    coalesce: bool


@dataclass(frozen=True)
class Query:
    ltime: int
    name: str
    payload: bytes
    respond: Callable[[bytes], None]


Event = MemberEvent | UserEvent | Query


class UserEventError(ValueError):
    """A user event or query that cannot be sent (too large, bad name)."""


def encode_tags(tags: dict[str, str]) -> bytes:
    meta = bytes([TAG_MAGIC]) + msgpack.packb(tags, use_bin_type=True)
    if len(meta) > META_MAX_SIZE:
        raise ValueError(f"Encoded length of tags exceeds limit of {META_MAX_SIZE} bytes")
    return meta


def decode_tags(meta: bytes) -> dict[str, str]:
    if not meta:
        return {}
    if meta[0] != TAG_MAGIC:
        return {"role": meta.decode("utf-8", "replace")}
    tags = unpack(meta[1:])
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise BadMessage("tags must map strings to strings")
    return tags


@dataclass(slots=True)
class MemberState:
    member: Member
    status_ltime: int = 0
    leave_time: float = 0.0


@dataclass
class Intent:
    kind: int
    ltime: int
    wall: float


@dataclass
class PendingQuery:
    ltime: int
    deadline: float
    responses: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Coalesce:
    """User events held for coalescing: the latest event of each name is delivered once the
    stream quiets down (quiescent period) or the coalesce period has passed since the first."""

    events: dict[str, UserEvent] = field(default_factory=dict)
    first: float = 0.0
    last: float = 0.0

    def add(self, event: UserEvent, now: float) -> None:
        if not self.events:
            self.first = now
        self.last = now
        old = self.events.get(event.name)
        if old is None or old.ltime <= event.ltime:
            self.events[event.name] = event

    def due(self, profile: Profile) -> float:
        return min(
            self.first + profile.user_coalesce_period,
            self.last + profile.user_quiescent_period,
        )
