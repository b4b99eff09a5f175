"""memberlist's data types: member states, what to send, the delegate, probe records.

`NodeState` is one member as `agent.gossip.swim.Memberlist` knows it; `Outgoing` is what
the core hands the runner to send; `Delegate` is what Serf plugs in. `Probe`, `Relay`
and `Suspect` are the records of the failure detector's work under way. Also here: how
member states travel in a push/pull (memberlist pushNodeState), and the random choice
of members that probing and gossip share (memberlist kRandomNodes).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.gossip.config import Profile
from agent.gossip.messages import BadMessage, is_ip
from agent.gossip.suspicion import Suspicion

PROTOCOL_MIN, PROTOCOL_MAX, PROTOCOL_CUR = 1, 5, 2


class State(enum.IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(slots=True)
class NodeState:
    name: str
    addr: str
    port: int
    meta: bytes
    incarnation: int
    state: State
    state_change: float
    vsn: tuple[int, ...] = (PROTOCOL_MIN, PROTOCOL_MAX, PROTOCOL_CUR, 0, 0, 0)

    @property
    def address(self) -> str:
        return f"{self.addr}:{self.port}"

    def dead_or_left(self) -> bool:
        return self.state in (State.DEAD, State.LEFT)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Something for the runner to send: a UDP packet, or a TCP stream frame."""

    dest: str  # "ip:port"
    data: bytes
    stream: bool = False
    expect_reply: bool = False


class Delegate(Protocol):
    """What Serf plugs into memberlist (Delegate, EventDelegate, MergeDelegate, PingDelegate)."""

    def notify_msg(self, data: bytes) -> None: ...
    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]: ...
    def has_broadcasts(self) -> bool: ...
    def local_state(self, join: bool) -> bytes: ...
    def merge_remote_state(self, data: bytes, join: bool) -> None: ...
    def notify_join(self, node: NodeState) -> None: ...
    def notify_leave(self, node: NodeState) -> None: ...
    def notify_update(self, node: NodeState) -> None: ...
    def notify_merge(self, nodes: list[NodeState]) -> str | None: ...
    def notify_conflict(self, existing: NodeState, addr: str, port: int) -> None: ...
    def ack_payload(self) -> bytes: ...
    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None: ...


@dataclass(slots=True)
class Probe:
    seq: int
    target: str
    sent: float
    timeout_at: float
    deadline: float
    indirect: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class Relay:
    """A ping we send on behalf of another member's ping-req."""

    orig_seq: int
    requester: str
    nack: bool
    deadline: float


@dataclass(slots=True)
class Suspect:
    """A member suspected at `incarnation`, with the Lifeguard timer to declare it dead."""

    timer: Suspicion
    incarnation: int

    @classmethod
    def begin(cls, profile: Profile, n: int, accuser: str, inc: int, now: float) -> Suspect:
        """A new suspicion in a cluster of n members (memberlist suspectNode): it expects
        suspicion_mult - 2 independent confirmations, none if too few members could."""
        k = profile.suspicion_mult - 2
        if n - 2 < k:
            k = 0
        min_t = profile.suspicion_timeout(n)
        max_t = profile.suspicion_max_timeout_mult * min_t
        timer = Suspicion(accuser=accuser, k=k, min_timeout=min_t, max_timeout=max_t, start=now)
        return cls(timer, inc)


def encode_push_pull_nodes(nodes: Iterable[NodeState]) -> list[list[Any]]:
    """The "Nodes" of a push/pull message: one entry per member state."""
    return [
        [n.name, n.addr, n.port, n.meta, n.incarnation, int(n.state), list(n.vsn)] for n in nodes
    ]


def decode_push_pull_nodes(entries: list[Any], now: float) -> list[NodeState]:
    """The member states of a push/pull's "Nodes"; BadMessage for a malformed entry."""
    states: list[NodeState] = []
    for raw in entries:
        if not isinstance(raw, list) or len(raw) != 7:
            raise BadMessage("push/pull: bad node entry")
        name, addr, port, meta, inc, state, vsn = raw
        if not (
            isinstance(name, str)
            and isinstance(addr, str)
            and isinstance(port, int)
            and 0 <= port <= 65535
            and isinstance(meta, bytes)
            and isinstance(inc, int)
            and inc >= 0
            and state in (0, 1, 2, 3)
            and isinstance(vsn, list)
            and len(vsn) == 6
            and all(isinstance(v, int) for v in vsn)
        ):
            raise BadMessage("push/pull: bad node entry")
        if not is_ip(addr):
            raise BadMessage("push/pull: node address is not an IP")
        states.append(NodeState(name, addr, port, meta, inc, State(state), now, tuple(vsn)))
    return states


def k_random_nodes(
    rng: random.Random,
    names: list[str],
    node_map: dict[str, NodeState],
    k: int,
    accept: Callable[[NodeState], bool],
) -> list[NodeState]:
    """Up to k distinct random members of `names` passing `accept` (memberlist kRandomNodes)."""
    n = len(names)
    picked: list[NodeState] = []
    seen: set[int] = set()
    for _ in range(3 * n):
        if len(picked) >= k or len(seen) >= n:
            break
        i = rng.randrange(n)
        if i in seen:
            continue
        seen.add(i)
        node = node_map[names[i]]
        if accept(node):
            picked.append(node)
    return picked
