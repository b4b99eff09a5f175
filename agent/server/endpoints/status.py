"""Status.*: what this server knows of raft, answered without a leader (Consul's
status_endpoint.go).

Status.Leader          {} -> str  ("ip:port" of the leader, "" when none)
Status.Peers           {} -> [str]  (raft server addresses)
"""

from __future__ import annotations

from typing import Any

from agent.server.endpoints.base import Context, Kind, Methods


async def leader(ctx: Context, args: dict[str, Any]) -> str:
    leader = ctx.raft.leader()
    return str(leader.address) if leader is not None else ""


async def peers(ctx: Context, args: dict[str, Any]) -> list[str]:
    return [str(s.address) for s in ctx.raft.configuration()]


METHODS: Methods = {
    "Status.Leader": (leader, Kind.LOCAL),
    "Status.Peers": (peers, Kind.LOCAL),
}
#: no ACL governs them: a request's token is never resolved (an unknown one is no error)
UNCHECKED = frozenset(METHODS)
