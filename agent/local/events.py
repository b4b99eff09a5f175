"""User events as every agent handles them (Consul's agent/user_event.go): fired into LAN
gossip as serf user events named `consul:event:<name>`, received by every agent, kept when
the node, service and tag filters match this agent, and listed by /v1/event/list.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from agent import codec
from agent.errors import RPCError
from agent.filter.tree import compile_re2

log = logging.getLogger("agent")

#: The serf event name prefix of user events, and Consul's limits.
USER_EVENT_PREFIX = "consul:event:"
USER_EVENT_SIZE_LIMIT = 512
MAX_USER_EVENTS = 256


class UserEvents:
    """Fires, receives, filters and remembers user events for one agent."""

    def __init__(
        self,
        *,
        node_name: str,
        datacenter: str = "",
        services: Callable[[], Iterable[dict[str, Any]]],
        send: Callable[[str, bytes], None],
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.node_name = node_name
        self.datacenter = datacenter
        self._services = services  # this agent's services (for the service/tag filters)
        self._send = send  # into LAN gossip: (serf event name, payload)
        self._on_event = on_event  # every event kept (remote exec listens here)
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_USER_EVENTS)

    def recent(self) -> list[dict[str, Any]]:
        """The last 256 events this agent kept, oldest first (/v1/event/list)."""
        return list(self._events)

    def fire(
        self,
        name: str,
        payload: bytes,
        node_filter: str = "",
        service_filter: str = "",
        tag_filter: str = "",
    ) -> dict[str, Any]:
        """Fire an event into this datacenter's LAN pool; returns it as /v1/event/fire."""
        event, serf_name, body = self.build(name, payload, node_filter, service_filter, tag_filter)
        self._send(serf_name, body)
        return event

    async def fire_in(
        self,
        datacenter: str,
        rpc: Callable[[str, dict[str, Any]], Awaitable[Any]],
        name: str,
        payload: bytes,
        node_filter: str = "",
        service_filter: str = "",
        tag_filter: str = "",
    ) -> dict[str, Any]:
        """Fire an event in `datacenter`: ours through LAN gossip; another through a server
        there (Internal.EventFire over `rpc`), which broadcasts it into its LAN pool."""
        if not datacenter or datacenter == self.datacenter:
            return self.fire(name, payload, node_filter, service_filter, tag_filter)
        event, serf_name, body = self.build(name, payload, node_filter, service_filter, tag_filter)
        await rpc(
            "Internal.EventFire", {"Datacenter": datacenter, "Name": serf_name, "Payload": body}
        )
        return event

    @staticmethod
    def build(
        name: str,
        payload: bytes,
        node_filter: str = "",
        service_filter: str = "",
        tag_filter: str = "",
    ) -> tuple[dict[str, Any], str, bytes]:
        """The event, its serf user-event name and encoded body: what a server of another
        datacenter broadcasts for us (Internal.EventFire). RPCError on a bad event."""
        if not name:
            raise RPCError("User event missing name")
        for what, pattern in (
            ("node", node_filter),
            ("service", service_filter),
            ("tag", tag_filter),
        ):
            if pattern:
                try:
                    _regex(pattern)
                except ValueError as exc:
                    raise RPCError(f"Invalid {what} filter: {exc}") from None
        event = {
            "ID": str(uuid.uuid4()),
            "Name": name,
            "Payload": payload or None,
            "NodeFilter": node_filter,
            "ServiceFilter": service_filter,
            "TagFilter": tag_filter,
            "Version": 1,
            "LTime": 0,
        }
        body = codec.packb(event)
        if len(body) + len(USER_EVENT_PREFIX) + len(name) > USER_EVENT_SIZE_LIMIT:
            raise RPCError(f"user event exceeds limit of {USER_EVENT_SIZE_LIMIT} bytes")
        return event, USER_EVENT_PREFIX + name, body

    def receive(self, name: str, payload: bytes, ltime: int) -> None:
        """A serf user event from gossip; kept (once) when it is a Consul event for us."""
        if not name.startswith(USER_EVENT_PREFIX):
            return
        try:
            body = codec.unpackb(payload)
        except codec.FrameError:
            log.warning("failed to decode event: malformed payload")
            return
        if not isinstance(body, dict) or not self._matches(body):
            return
        record = {
            "ID": str(body.get("ID", "")),
            "Name": str(body.get("Name", name[len(USER_EVENT_PREFIX) :])),
            "Payload": body.get("Payload"),
            "NodeFilter": str(body.get("NodeFilter", "")),
            "ServiceFilter": str(body.get("ServiceFilter", "")),
            "TagFilter": str(body.get("TagFilter", "")),
            "Version": int(body.get("Version", 1)),
            "LTime": int(ltime),
        }
        if any(e["ID"] == record["ID"] for e in self._events):
            return
        log.debug("new event: %s (%s)", record["Name"], record["ID"])
        self._events.append(record)
        if self._on_event is not None:
            self._on_event(record)

    def _matches(self, body: dict[str, Any]) -> bool:
        """Whether this node is one the event's filters (RE2: linear in the text whatever the
        pattern, as Go's regexp is) pick; a pattern RE2 refuses picks none."""
        try:
            nf = str(body.get("NodeFilter") or "")
            if nf and not _search(nf, self.node_name):
                return False
            sf = str(body.get("ServiceFilter") or "")
            if sf:
                tf = str(body.get("TagFilter") or "")
                for svc in self._services():
                    if _search(sf, svc["Service"]) and (
                        not tf or any(_search(tf, t) for t in svc.get("Tags") or [])
                    ):
                        return True
                return False
        except ValueError:
            return False
        return True


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    return compile_re2(pattern)


def _search(pattern: str, text: str) -> bool:
    return _regex(pattern).search(text.encode("utf-8", "surrogateescape")) is not None
