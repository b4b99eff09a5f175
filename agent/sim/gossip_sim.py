"""Drive many gossip cores (Serf + memberlist) on the simulated clock and network.

Each node is a `Serf` core at address "10.x.y.z:8301". UDP packets and TCP streams both
travel through `SimNetwork` (so partitions and crashes cut both); drop/duplicate faults
apply to UDP only, as TCP retransmits. A node wakes at its core's `next_deadline()`.
"""

from __future__ import annotations

import copy
import functools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from agent.gossip.config import Profile
from agent.gossip.nodes import NodeState, State
from agent.gossip.serf import Serf
from agent.gossip.serf_types import Event, MemberEvent, UserEvent
from agent.netaddr import split_host_port
from agent.sim.clock import VirtualClock, _Event
from agent.sim.gossip_shared import SharedMap, SharedNames
from agent.sim.network import Faults, SimNetwork

PORT = 8301


def _copy_member_state(ms: Any) -> Any:
    clone = copy.copy(ms)
    clone.member = copy.copy(ms.member)
    return clone


def _fingerprint(state: NodeState) -> tuple[Any, ...]:
    return (state.incarnation, state.state, state.addr, state.port, state.meta)


def sim_addr(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:{PORT}"


@dataclass
class SimNode:
    name: str
    addr: str
    serf: Serf
    up: bool = True
    timer: _Event | None = None
    timer_at: float = float("inf")
    events: list[Event] = field(default_factory=list)
    joined: bool = False
    join_error: str | None = None


class GossipCluster:
    def __init__(
        self,
        seed: int,
        profile: Profile | None = None,
        faults: Faults | None = None,
        tags: Callable[[int], dict[str, str]] | None = None,
        merge_check: Callable[[list[Any]], str | None] | None = None,
        keep_events: bool = True,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = VirtualClock()
        self.faults = faults or Faults()
        self.net = SimNetwork(self.clock, random.Random(seed + 1), self.faults)
        self.profile = profile or Profile.local()
        self.tags = tags or (lambda i: {"role": "node", "dc": "dc1"})
        self.merge_check = merge_check
        self.keep_events = keep_events
        self.nodes: dict[str, SimNode] = {}
        self.by_name: dict[str, SimNode] = {}
        self.count = 0
        self.sent: Counter[str] = Counter()
        self.on_event: Callable[[SimNode, Event], None] | None = None
        #: (event type or "user:<name>", member name) -> observers that saw it; kept
        #: incrementally so stop conditions at N=1000 are O(1).
        self.seen: dict[tuple[str, str], set[str]] = {}
        self._shared: list[tuple[dict[str, NodeState], dict[str, Any], dict[str, Any]]] = []
        #: Addresses whose process crashed on a host that is still up: streams to them are
        #: refused (a TCP reset) instead of timing out.
        self.refusing: set[str] = set()

    # ------------------------------------------------------------------ building

    def add_node(self, name: str | None = None, start: bool = True) -> SimNode:
        i = self.count
        self.count += 1
        addr = sim_addr(i + 1)
        name = name or f"node{i}"
        host, port = split_host_port(addr)
        serf = Serf(
            node_name=name,
            addr=host,
            port=port,
            tags=self.tags(i),
            profile=self.profile,
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.clock.now,
            merge_check=self.merge_check,
        )
        node = SimNode(name, addr, serf)
        self.nodes[addr] = node
        self.by_name[name] = node
        self.net.attach(addr, self._receiver(node))
        if start:
            serf.start(self.clock.now)
            self._after(node)
        return node

    def converged(self, n: int) -> list[SimNode]:
        """n started nodes that already know each other (no join traffic). Their member
        tables share one copy-on-write base (agent/sim/gossip_shared.py), so N = 5000
        fits in memory; `shared_untouched()` checks no view wrote into the base."""
        new = [self.add_node() for _ in range(n)]
        base_nodes: dict[str, NodeState] = {}
        base_members: dict[str, Any] = {}
        for node in new:
            state = copy.copy(node.serf.memberlist.local())
            base_nodes[node.name] = state
            ms = node.serf.member_states[node.name]
            base_members[node.name] = _copy_member_state(ms)
        names = list(base_nodes)
        self.rng.shuffle(names)
        self._shared.append(
            (base_nodes, base_members, {k: _fingerprint(v) for k, v in base_nodes.items()})
        )
        for node in new:
            ml, serf = node.serf.memberlist, node.serf
            me, my_member = ml.local(), serf.member_states[node.name]
            nodes_map: SharedMap[NodeState] = SharedMap(base_nodes, copy.copy)
            nodes_map[node.name] = me
            members_map: SharedMap[Any] = SharedMap(base_members, _copy_member_state)
            members_map[node.name] = my_member
            ml.node_map = cast(dict[str, NodeState], nodes_map)
            ml.nodes = cast(list[str], SharedNames(names))
            ml.probe_index = self.rng.randrange(n)
            ml.next_push_pull_at = (
                self.clock.now + ml.profile.push_pull_scale(n) * self.rng.random()
            )
            serf.member_states = cast(dict[str, Any], members_map)
            serf.take_events()
            node.events.clear()
            self._after(node)
        return new

    def shared_untouched(self) -> bool:
        """No simulated node changed a shared base state in place (copy-on-write held)."""
        for base_nodes, _, prints in self._shared:
            for name, state in base_nodes.items():
                if _fingerprint(state) != prints[name]:
                    return False
        return True

    def restart(self, node: SimNode) -> SimNode:
        """A fresh process at the same name and address (state lost, as after SIGKILL)."""
        host, port = split_host_port(node.addr)
        node.serf = Serf(
            node_name=node.name,
            addr=host,
            port=port,
            tags=dict(node.serf.tags),
            profile=self.profile,
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.clock.now,
            merge_check=self.merge_check,
        )
        node.up = True
        node.joined = False
        self.refusing.discard(node.addr)
        self.net.attach(node.addr, self._receiver(node))
        node.serf.start(self.clock.now)
        self._after(node)
        return node

    # ------------------------------------------------------------------ actions

    def join(self, node: SimNode, target: SimNode | str, ignore_old: bool = True) -> None:
        dest = target if isinstance(target, str) else target.addr
        node.serf.ignore_old_events = ignore_old
        self._send(node, dest, ("join", node.serf.memberlist.join_request()), stream=True)

    def crash(self, node: SimNode, refuse: bool = False) -> None:
        """The node stops. `refuse`: its host stays up, so TCP connects to it are refused
        (a killed process); otherwise they go unanswered (a host or link down)."""
        node.up = False
        if refuse:
            self.refusing.add(node.addr)
        self.net.detach(node.addr)
        if node.timer is not None:
            VirtualClock.cancel(node.timer)
            node.timer = None
            node.timer_at = float("inf")

    def leave(self, node: SimNode) -> None:
        """Graceful leave, driven on virtual time like the runner does it."""
        node.serf.begin_leave(self.clock.now)
        self._after(node)
        deadline = self.clock.now + self.profile.broadcast_timeout
        self.run_until(deadline, lambda: node.serf.leave_intent_sent)
        node.serf.memberlist.leave(self.clock.now)
        self._after(node)
        deadline = self.clock.now + self.profile.broadcast_timeout
        self.run_until(deadline, lambda: node.serf.memberlist.leave_broadcast_done)
        self.run_for(self.profile.leave_propagate_delay)
        node.serf.state = "left"
        self.crash(node)

    def user_event(self, node: SimNode, name: str, payload: bytes) -> None:
        node.serf.user_event(name, payload, coalesce=False)
        self._after(node)

    def run_until(self, deadline: float, stop: Callable[[], bool] | None = None) -> bool:
        return self.clock.run_until(deadline, stop)

    def run_for(self, seconds: float) -> None:
        self.clock.run_until(self.clock.now + seconds)

    # ------------------------------------------------------------------ observations

    def up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]

    def status_of(self, observer: SimNode, name: str) -> str | None:
        ms = observer.serf.member_states.get(name)
        return ms.member.status if ms is not None else None

    def all_see(self, name: str, status: str, observers: list[SimNode] | None = None) -> bool:
        for obs in observers if observers is not None else self.up_nodes():
            if obs.name != name and self.status_of(obs, name) != status:
                return False
        return True

    def fully_converged(self, observers: list[SimNode] | None = None) -> bool:
        obs = observers if observers is not None else self.up_nodes()
        names = [n.name for n in obs]
        for o in obs:
            states = o.serf.member_states
            for name in names:  # exits early: this runs after every simulated event
                ms = states.get(name)
                if ms is None or ms.member.status != "alive":
                    return False
        return True

    def got_event(self, node: SimNode, name: str) -> bool:
        return any(isinstance(e, UserEvent) and e.name == name for e in node.events)

    def saw(self, kind: str, name: str = "") -> set[str]:
        """Observers that got a member event `kind` about `name` (or "user:<event>")."""
        return self.seen.get((kind, name), set())

    def false_failures(self, truly_down: set[str]) -> list[tuple[str, str]]:
        """(observer, member) pairs where a member that was up was seen failed."""
        out = []
        for o in self.up_nodes():
            for e in o.events:
                if isinstance(e, MemberEvent) and e.type == "member-failed":
                    name = e.members[0].name
                    if name not in truly_down:
                        out.append((o.name, name))
        return out

    # ------------------------------------------------------------------ plumbing

    def _send(self, node: SimNode, dest: str, message: Any, stream: bool) -> None:
        if dest in self.refusing:  # the host answers: TCP reset / UDP port unreachable
            self.sent["stream" if stream else "udp"] += 1
            self.clock.call_at(
                self.clock.now + self.faults.min_delay,
                functools.partial(self._refused, node, dest, stream),
            )
            return
        if stream:
            self.sent["stream"] += 1
            # Streams are reliable while a path exists: only the topology stops them.
            saved = self.net.faults
            self.net.faults = Faults(0.0, 0.0, saved.min_delay, saved.max_delay)
            self.net.send(node.addr, dest, message)
            self.net.faults = saved
        else:
            self.sent["udp"] += 1
            self.net.send(node.addr, dest, message)

    def _refused(self, node: SimNode, dest: str, stream: bool) -> None:
        if node.up:
            refused = node.serf.stream_refused if stream else node.serf.packet_refused
            refused(dest, self.clock.now)
            self._after(node)

    def _receiver(self, node: SimNode) -> Callable[[str, Any], None]:
        def receive(src: str, message: Any) -> None:
            self._deliver(node, src, message)

        return receive

    def _deliver(self, node: SimNode, src: str, message: Any) -> None:
        if not node.up:
            return
        serf, now = node.serf, self.clock.now
        kind = message[0]
        if kind == "udp":
            serf.receive_packet(src, message[1], now)
        elif kind == "stream":
            reply = serf.receive_stream(src, message[1], now)
            if reply is not None and message[2]:
                self._send(node, src, ("reply", reply), stream=True)
        elif kind == "reply":
            serf.receive_stream_reply(src, message[1], now)
        elif kind == "join":
            reply = serf.receive_stream(src, message[1], now)
            if reply is not None:
                self._send(node, src, ("join-reply", reply), stream=True)
        elif kind == "join-reply":
            error = serf.memberlist.handle_join_reply(message[1], now)
            serf.ignore_old_events = False  # only this join's push/pull skips old events
            node.join_error = error
            if error is None:
                node.joined = True
                serf.joined()
        self._after(node)

    def _after(self, node: SimNode) -> None:
        serf = node.serf
        for out in serf.take_outgoing():
            if out.stream:
                self._send(node, out.dest, ("stream", out.data, out.expect_reply), stream=True)
            else:
                self._send(node, out.dest, ("udp", out.data), stream=False)
        events = serf.take_events()
        if events:
            for e in events:
                if isinstance(e, MemberEvent):
                    key = (e.type, e.members[0].name)
                elif isinstance(e, UserEvent):
                    key = (f"user:{e.name}", "")
                else:
                    continue
                self.seen.setdefault(key, set()).add(node.name)
            if self.keep_events:
                node.events.extend(events)
            if self.on_event is not None:
                for e in events:
                    self.on_event(node, e)
        for addr in serf.take_reconnects():
            self.join(node, addr, ignore_old=False)
        if serf.shutdown_reason is not None and node.up:
            self.crash(node, refuse=True)  # the process closes its sockets
        if not node.up:
            return
        at = serf.next_deadline()
        if node.timer is not None and at >= node.timer_at - 1e-9:
            return
        if node.timer is not None:
            VirtualClock.cancel(node.timer)
        node.timer_at = at
        node.timer = self.clock.call_at(at, functools.partial(self._wake, node))

    def _wake(self, node: SimNode) -> None:
        node.timer = None
        node.timer_at = float("inf")
        if not node.up:
            return
        node.serf.tick(self.clock.now)
        self._after(node)


__all__ = ["GossipCluster", "NodeState", "SimNode", "State", "sim_addr"]
