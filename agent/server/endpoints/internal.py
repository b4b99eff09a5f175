"""Internal.*: what one server does for another datacenter (Consul's internal_endpoint.go).

Internal.EventFire  EventFireRequest {Datacenter, Name, Payload} -> None
                    A user event fired from another datacenter (`senate event -datacenter`,
                    `PUT /v1/event/fire/:name?dc=`): Name is the serf event name and Payload
                    the encoded event, as the firing agent built them; this server broadcasts
                    it into its LAN pool, where every agent filters it as its own.
"""

from __future__ import annotations

from typing import Any

from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods, access, get_str

#: serf's name of a user event (agent/local/events.py)
USER_EVENT_PREFIX = "consul:event:"


async def event_fire(ctx: Context, args: dict[str, Any]) -> None:
    name = get_str(args, "Name")
    payload = args.get("Payload")
    if not name:
        raise RPCError("User event missing name")
    access().need("event", "write", name.removeprefix(USER_EVENT_PREFIX))
    if not isinstance(payload, bytes):
        raise RPCError("User event payload must be bytes")
    if ctx.user_event is None:
        raise RPCError("this server has no LAN pool to fire user events into")
    ctx.user_event(name, payload)


METHODS: Methods = {
    "Internal.EventFire": (event_fire, Kind.LOCAL),
}
