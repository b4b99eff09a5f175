"""The rolling-restart planner: in which order nodes are restarted onto a new release or config.

Theory of operation
-------------------
This module is a pure function of the cluster's observed state: it takes what provision saw
(every node's datacenter, role, whether it is alive, which server leads its datacenter, which
nodes need a restart) and returns the ordered steps. It owns no host, no clock and no I/O, so
every ordering rule is tested without a cluster.

The rules, in order of importance:

1. Never start from a degraded cluster. A server that is not alive, or a datacenter without
   exactly one leader, refuses the plan: restarting one more server could lose quorum.
2. Servers before clients: clients keep talking to servers they already know, and a newer
   server must accept an older client, not the reverse.
3. Servers one at a time, whatever `serial` says: a quorum must survive every step.
4. Within a datacenter, followers first and the leader last, after leadership has been moved
   to an already-restarted follower; the datacenter then changes leader once, not once per
   restarted server.
5. Clients in batches of `serial`, in inventory order.

The subtle case: when only the leader needs restarting (everything else is already at the
target), the step still transfers leadership first, so writes see one clean hand-off instead
of an election timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class Role(Enum):
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class ObservedNode:
    name: str
    datacenter: str
    role: Role
    alive: bool
    leader: bool = False  # this server leads its datacenter


@dataclass(frozen=True, slots=True)
class Step:
    datacenter: str | None  # None for a client batch spanning datacenters
    role: Role
    nodes: tuple[str, ...]
    transfer_leadership: bool = False  # move leadership off nodes[0] before restarting it


@dataclass(frozen=True, slots=True)
class RollingPlan:
    steps: tuple[Step, ...]
    unchanged: tuple[str, ...]  # nodes that need nothing

    @property
    def order(self) -> list[str]:
        return [n for s in self.steps for n in s.nodes]


class PlanRefused(Exception):
    """The cluster is not in a state a rolling restart may start from; `reasons` say why."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


def plan_rolling(
    nodes: Sequence[ObservedNode], pending: frozenset[str] | set[str], serial: int = 1
) -> RollingPlan:
    """Order the restarts of the `pending` nodes. `nodes` is in inventory order."""
    if serial < 1:
        raise ValueError(f"serial must be at least 1, got {serial}")
    unknown = sorted(set(pending) - {n.name for n in nodes})
    if unknown:
        raise ValueError(f"pending nodes not observed: {', '.join(unknown)}")

    datacenters: list[str] = []
    for n in nodes:
        if n.datacenter not in datacenters:
            datacenters.append(n.datacenter)

    reasons: list[str] = []
    for dc in datacenters:
        servers = [n for n in nodes if n.datacenter == dc and n.role is Role.SERVER]
        for s in servers:
            if not s.alive:
                reasons.append(f"{dc}: server {s.name} is not alive")
        leaders = [s.name for s in servers if s.leader]
        if not leaders:
            reasons.append(f"{dc}: no leader")
        elif len(leaders) > 1:
            reasons.append(f"{dc}: more than one leader ({', '.join(leaders)})")
    for n in nodes:
        if n.role is Role.CLIENT and not n.alive and n.name in pending:
            reasons.append(f"{n.datacenter}: client {n.name} is not alive")
    if reasons:
        raise PlanRefused(reasons)

    steps: list[Step] = []
    for dc in datacenters:
        servers = [
            n for n in nodes if n.datacenter == dc and n.role is Role.SERVER and n.name in pending
        ]
        followers = sorted((s for s in servers if not s.leader), key=lambda s: s.name)
        steps += [Step(dc, Role.SERVER, (s.name,)) for s in followers]
        steps += [
            Step(dc, Role.SERVER, (s.name,), transfer_leadership=True) for s in servers if s.leader
        ]
    clients = [n.name for n in nodes if n.role is Role.CLIENT and n.name in pending]
    for i in range(0, len(clients), serial):
        steps.append(Step(None, Role.CLIENT, tuple(clients[i : i + serial])))
    return RollingPlan(tuple(steps), tuple(n.name for n in nodes if n.name not in pending))
