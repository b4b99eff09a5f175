"""Consul's merge delegates for the two pools (consul/merge.go), ready for GossipPool.

GossipPool(..., merge_check=lan_merge_check("dc1"))   # LAN: refuse other datacenters
GossipPool(..., merge_check=wan_merge_check())        # WAN: servers only
"""

from __future__ import annotations

from collections.abc import Callable

from agent.gossip.serf_types import Member
from agent.metadata import ROLE_CLIENT, ROLE_SERVER, TAG_DC, TAG_ROLE

MergeCheck = Callable[[list[Member]], str | None]


def lan_merge_check(datacenter: str) -> MergeCheck:
    """Refuse a join/merge with any node or server of another datacenter."""

    def check(members: list[Member]) -> str | None:
        for m in members:
            role = m.tags.get(TAG_ROLE)
            if role not in (ROLE_CLIENT, ROLE_SERVER):
                continue  # not a Consul agent: Consul lets it through
            dc = m.tags.get(TAG_DC, "")
            if dc != datacenter:
                return f"Member '{m.name}' part of wrong datacenter '{dc}'"
        return None

    return check


def wan_merge_check() -> MergeCheck:
    """The WAN pool holds only servers, named "node.dc"."""

    def check(members: list[Member]) -> str | None:
        for m in members:
            if m.tags.get(TAG_ROLE) != ROLE_SERVER or "." not in m.name:
                return f"Member '{m.name}' is not a server"
        return None

    return check
