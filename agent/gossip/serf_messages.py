"""Serf's messages, carried in memberlist user messages and push/pulls (serf messages.go).

A Serf message is a msgpack `[type, body]` pair (`pack`, `decode_message`) of one of the
`MSG_*` types; `PushPull` is Serf's part of a memberlist push/pull. Queries carry filters
(`query_filters`) that each member checks against its name and tags (`query_matches`);
a `_serf_conflict` query is answered with the address a member knows for the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgpack

from agent.gossip.messages import BadMessage, get_int, get_list, unpack
from agent.gossip.serf_types import Member

# Serf message types (first element of a user message).
MSG_LEAVE, MSG_JOIN, MSG_USER_EVENT, MSG_QUERY, MSG_QUERY_RESPONSE = 0, 1, 3, 4, 5


def pack(kind: int, body: dict[str, Any]) -> bytes:
    return msgpack.packb([kind, body], use_bin_type=True)


def decode_message(data: bytes) -> tuple[Any, dict[str, Any]]:
    """The type and body of a Serf message; BadMessage if it is not a [type, body] pair."""
    item = unpack(data)
    if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], dict):
        raise BadMessage("serf message is not a [type, body] pair")
    kind, body = item
    return kind, body


@dataclass
class PushPull:
    """Serf's state in a push/pull: clocks, member status times, left members, recent
    events (serf messagePushPull). Entries of `status_ltimes`, `left_members` and `events`
    are as received: the reader checks each."""

    ltime: int
    status_ltimes: dict[Any, Any]
    left_members: list[Any]
    event_ltime: int
    events: list[Any]
    query_ltime: int

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "LTime": self.ltime,
                "StatusLTimes": self.status_ltimes,
                "LeftMembers": self.left_members,
                "EventLTime": self.event_ltime,
                "Events": self.events,
                "QueryLTime": self.query_ltime,
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> PushPull:
        """Raises BadMessage (or ValueError) for a state that is not well formed."""
        pp = unpack(data)
        if not isinstance(pp, dict):
            raise BadMessage("serf push/pull state is not a map")
        ltime = get_int(pp, "LTime")
        event_ltime = get_int(pp, "EventLTime")
        query_ltime = get_int(pp, "QueryLTime")
        status = pp.get("StatusLTimes", {})
        if not isinstance(status, dict):
            raise BadMessage("StatusLTimes must be a map")
        left = get_list(pp, "LeftMembers")
        events = get_list(pp, "Events")
        return cls(ltime, status, left, event_ltime, events, query_ltime)


def query_filters(nodes: list[str] | None, tags: dict[str, str] | None) -> dict[str, Any]:
    """A query's "Filters": only the named nodes, only members whose tags match."""
    filters: dict[str, Any] = {}
    if nodes:
        filters["Nodes"] = nodes
    if tags:
        filters["Tags"] = tags
    return filters


def query_matches(filters: dict[str, Any], node_name: str, tags: dict[str, str]) -> bool:
    """Whether a member named `node_name` with `tags` answers a query with `filters`: it is
    among the "Nodes", if any, and every "Tags" regular expression matches its tag."""
    nodes = filters.get("Nodes")
    if isinstance(nodes, list) and nodes and node_name not in nodes:
        return False
    tag_exprs = filters.get("Tags")
    if isinstance(tag_exprs, dict):
        for tag, expr in tag_exprs.items():
            if not isinstance(tag, str) or not isinstance(expr, str):
                return False
            try:
                if not re.fullmatch(expr, tags.get(tag, "")):
                    return False
            except re.error:
                return False
    return True


def encode_conflict_response(member: Member | None) -> bytes:
    """The answer to a `_serf_conflict` query: the address we know for the name, or nil."""
    known = None if member is None else {"Addr": member.addr, "Port": member.port}
    return msgpack.packb(known, use_bin_type=True)


def conflict_response_is(data: bytes, addr: str, port: int) -> bool:
    """Whether a `_serf_conflict` answer names addr:port; BadMessage if it is not msgpack."""
    known = unpack(data)
    return isinstance(known, dict) and known.get("Addr") == addr and known.get("Port") == port
