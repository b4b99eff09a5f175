"""SWIM membership with Lifeguard: probe, gossip and push/pull (memberlist state.go), sans-IO.

Theory of operation
-------------------
`Memberlist` keeps one `NodeState` per known member: alive, suspect, dead or left, each
with the member's incarnation number. Everything that changes a state lives in the four
handlers `_alive_node`, `_suspect_node`, `_dead_node` and `_merge_state`, as in
memberlist; every change is also queued as a broadcast so it spreads epidemically.

Failure detection, once per probe interval (scaled by local health):
  1. ping the next member of a shuffled round-robin list, and wait probe_timeout;
  2. no ack: ask `indirect_checks` random members to ping it for us (ping-req, with
     nacks so we can tell our own trouble from theirs), and try a TCP ping;
  3. no ack by the end of the interval: suspect it -- or at once if the TCP ping was
     refused (see `stream_refused`; an ICMP port unreachable for the ping moves step 2 up,
     see `packet_refused`). The suspicion is gossiped; other
     members that suspect it independently confirm it, which shortens Lifeguard's
     timeout from max toward min. When it expires the member is declared dead.
A member that hears it is suspected or dead refutes by gossiping `alive` with a higher
incarnation. A member that leaves gossips `dead` about itself; that is "left", not
"failed".

The core has no socket, task, clock or file. Drive it with `receive_packet` (UDP),
`receive_stream` / `receive_stream_reply` (TCP), and `tick(now)` at `next_deadline()`;
collect what to send with `take_outgoing()`. The delegate (Serf) sees joins, leaves,
updates, user messages and push/pull state, as memberlist's delegate interfaces do.

The subtle case: a restarted member comes back with incarnation 1 while others hold it
dead at a higher incarnation. Its alive message is ignored, but the first push/pull
tells it that it is "dead", and it refutes with a higher incarnation, which wins.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.gossip.awareness import Awareness
from agent.gossip.broadcast import TransmitLimitedQueue
from agent.gossip.config import Profile
from agent.gossip.keyring import OVERHEAD as ENCRYPT_OVERHEAD
from agent.gossip.messages import (
    COMPOUND_HEADER_OVERHEAD,
    COMPOUND_OVERHEAD,
    BadMessage,
    MessageType,
    compound,
    decode_one,
    decode_packet,
    decode_stream,
    encode,
    get_bool,
    get_bytes,
    get_int,
    get_ip,
    get_ip_port,
    get_list,
    get_str,
)
from agent.gossip.nodes import (
    PROTOCOL_CUR,
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    Delegate,
    NodeState,
    Outgoing,
    Probe,
    Relay,
    State,
    Suspect,
    decode_push_pull_nodes,
    encode_push_pull_nodes,
    k_random_nodes,
)

log = logging.getLogger("memberlist")

#: Push/pulls with random members a node makes soon after it joined, at doubling
#: intervals from profile.join_push_pull_delay, before the periodic schedule resumes.
JOIN_PUSH_PULLS = 4


@dataclass
class Memberlist:
    name: str
    addr: str
    port: int
    profile: Profile
    delegate: Delegate
    rng: random.Random
    now: float = 0.0
    encrypted: bool = False
    vsn: tuple[int, ...] = (PROTOCOL_MIN, PROTOCOL_MAX, PROTOCOL_CUR, 0, 0, 0)
    metrics: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        #: Member names in probe order (shuffled round-robin); `node_map` holds the states.
        self.nodes: list[str] = []
        self.node_map: dict[str, NodeState] = {}
        self.incarnation = 0
        self.seq = 0
        self.awareness = Awareness(self.profile.awareness_max_multiplier)
        self.broadcasts = TransmitLimitedQueue(
            lambda: self.profile.retransmit_limit(len(self.nodes)), on_queue=self.gossip_soon
        )
        self.suspicions: dict[str, Suspect] = {}
        self.probe: Probe | None = None
        self.relays: dict[int, Relay] = {}
        self.probe_index = 0
        self.leaving = False
        #: Early push/pulls still due after our join (JOIN_PUSH_PULLS).
        self.join_push_pulls = 0
        self.leave_broadcast_done = False
        self.shut_down = False
        self._out: list[Outgoing] = []
        self.next_probe_at = self.now + self.profile.probe_interval * self.rng.random()
        self.next_gossip_at = self.now
        self.last_gossip_round = float("-inf")
        # Random stagger, as memberlist's tickers start.
        self.next_push_pull_at = self.now + self.profile.push_pull_interval * self.rng.random()

    # ------------------------------------------------------------------ public API

    def start(self, meta: bytes, now: float) -> None:
        """Become alive ourselves (memberlist setAlive)."""
        self.now = now
        self._alive_node(
            self.name,
            self.addr,
            self.port,
            meta,
            self._next_incarnation(),
            self.vsn,
            bootstrap=True,
        )

    def local(self) -> NodeState:
        return self.node_map[self.name]

    def take_outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def update_meta(self, meta: bytes, now: float) -> None:
        self.now = now
        me = self.local()
        self._alive_node(
            self.name,
            me.addr,
            me.port,
            meta,
            self._next_incarnation(),
            self.vsn,
            bootstrap=True,
        )

    def leave(self, now: float) -> bool:
        """Gossip our own departure; False if there is nobody to tell."""
        self.now = now
        self.leaving = True
        me = self.local()
        others = any(n.state == State.ALIVE and n.name != self.name for n in self.node_map.values())
        self._dead_node(me.incarnation, self.name, self.name)
        if not others:
            self.leave_broadcast_done = True
        return others

    def join_request(self) -> bytes:
        return self._push_pull_message(join=True, reply=False)

    def handle_join_reply(self, data: bytes, now: float) -> str | None:
        """Merge a join's push/pull reply; an error message if it was refused."""
        self.now = now
        try:
            kind, body = decode_stream(data)
            if kind != MessageType.PUSH_PULL:
                raise BadMessage(f"expected push/pull reply, got type {kind}")
            error = self._merge_remote(body, join=True)
        except BadMessage as exc:
            self.metrics["drop.malformed"] += 1
            return f"bad push/pull reply: {exc}"
        if error is None:
            self._schedule_join_push_pulls()
        return error

    def _schedule_join_push_pulls(self) -> None:
        """Anti-entropy right after a join (not in memberlist; see JOIN_PUSH_PULLS).

        Gossip reaches a fraction 1 - exp(-R) of the members, R being the retransmit
        limit: with Local's R = 2-4 at N <= 10 one member in 10-50 misses each alive
        message and waited for the periodic push/pull (15-30 s). A few early push/pulls
        with random members repair what gossip missed, in both directions."""
        self.join_push_pulls = JOIN_PUSH_PULLS
        self.next_push_pull_at = min(
            self.next_push_pull_at, self.now + self._join_push_pull_delay()
        )

    def _join_push_pull_delay(self) -> float:
        """Doubling spacing (d, 2d, 4d, ... x0.5-1.5): the first push/pulls are quick for
        a cluster that forms at once, the later ones catch members that joined after us."""
        done = JOIN_PUSH_PULLS - self.join_push_pulls
        base = self.profile.join_push_pull_delay * 2**done
        return base * (0.5 + self.rng.random())

    def send_user(self, dest: str, payload: bytes) -> None:
        """A delegate message straight to one address (serf query responses)."""
        msg = encode(MessageType.USER, {"Data": payload})
        self._send(dest, [msg])

    def alive_members(self) -> list[NodeState]:
        return [n for n in self.node_map.values() if n.state in (State.ALIVE, State.SUSPECT)]

    # ------------------------------------------------------------------ inputs

    def receive_packet(self, src: str, data: bytes, now: float) -> None:
        self.now = now
        self.metrics["packets_received"] += 1
        try:
            items = decode_packet(data)
        except BadMessage:
            self.metrics["drop.malformed"] += 1
            return
        for item in items:
            try:
                kind, body = decode_one(item)
                self._handle(src, kind, body)
            except BadMessage:
                self.metrics["drop.malformed"] += 1

    def receive_stream(self, src: str, data: bytes, now: float) -> bytes | None:
        """A TCP frame from `src`; returns the reply frame, if the message has one."""
        self.now = now
        self.metrics["streams_received"] += 1
        try:
            kind, body = decode_stream(data)
            if kind == MessageType.PING:
                if not self._ping_is_for_us(body):
                    return None
                seq = get_int(body, "Seq")
                return encode(MessageType.ACK, {"Seq": seq, "Payload": self.delegate.ack_payload()})
            if kind == MessageType.PUSH_PULL:
                reply = self._push_pull_message(join=False, reply=True)
                error = self._merge_remote(body, join=get_bool(body, "Join"))
                if error is not None:
                    log.warning("Push/pull with %s refused: %s", src, error)
                return reply
            self._handle(src, kind, body)
        except BadMessage:
            self.metrics["drop.malformed"] += 1
        return None

    def packet_refused(self, dest: str, now: float) -> None:
        """A datagram we sent to `dest` came back as ICMP port unreachable.

        Not in memberlist either. If it was the ping of the probe under way, waiting out the
        probe timeout cannot bring an ack: go on to the indirect pings and the TCP ping now.
        Only a refused TCP ping (`stream_refused`) or the end of the interval fails the probe,
        so one spoofed or stray ICMP message cannot make a member suspect."""
        self.now = now
        probe = self.probe
        if probe is None or probe.indirect or self._probed_node(dest) is None:
            return
        self.metrics["probe.unreachable"] += 1
        self._start_indirect(probe)

    def stream_refused(self, dest: str, now: float) -> None:
        """A stream we opened to `dest` was refused (the host answered with a TCP reset).

        Not in memberlist, which waits out the probe interval for the indirect acks. A refused
        TCP ping means the host is up and nothing listens on the member's gossip port: the
        agent is gone (crashed, killed, restarting), not slow or cut off. So once the direct
        ping has also timed out, the probe fails now instead of at the end of the interval.
        It is still only a suspicion, with Lifeguard's timeout and refutation as usual, and it
        says nothing against our own health (awareness is not charged for missing nacks)."""
        self.now = now
        probe = self.probe
        node = self._probed_node(dest)
        if probe is None or not probe.indirect or node is None:
            return
        self.metrics["probe.refused"] += 1
        self.probe = None
        if node.dead_or_left():
            return
        log.info("Suspect %s has failed, no acks received and TCP ping refused", node.name)
        self._suspect_node(node.incarnation, node.name, self.name)

    def _probed_node(self, dest: str) -> NodeState | None:
        """The member the probe under way is after, if `dest` is its address."""
        node = None if self.probe is None else self.node_map.get(self.probe.target)
        return node if node is not None and node.address == dest else None

    def receive_stream_reply(self, src: str, data: bytes, now: float) -> None:
        """The reply to a stream we opened (an ack, or a push/pull state)."""
        self.now = now
        try:
            kind, body = decode_stream(data)
            if kind == MessageType.PUSH_PULL:
                self._merge_remote(body, join=False)
            elif kind == MessageType.ACK:
                self._handle_ack(body, via_stream=True)
            else:
                self.metrics["drop.unknown_type"] += 1
        except BadMessage:
            self.metrics["drop.malformed"] += 1

    def tick(self, now: float) -> None:
        self.now = now
        if self.shut_down:
            return
        probe = self.probe
        if probe is not None:
            if not probe.indirect and now >= probe.timeout_at:
                self._start_indirect(probe)
            if now >= probe.deadline:
                self._probe_failed(probe)
        if self.probe is None and now >= self.next_probe_at:
            self.next_probe_at = now + self.profile.probe_interval
            self._probe_next()
        for seq in [s for s, r in self.relays.items() if now >= r.deadline]:
            relay = self.relays.pop(seq)
            if relay.nack:
                self._send(relay.requester, [encode(MessageType.NACK, {"Seq": relay.orig_seq})])
        # Gossip rounds are one per gossip_interval, as memberlist's ticker, while old
        # broadcasts drain; an idle node skips them, so a broadcast queued after a quiet spell
        # goes out at once, and a new one is sent within a quarter interval (gossip_soon).
        if now >= self.next_gossip_at:
            self.next_gossip_at = now + self.profile.gossip_interval
            self._gossip()
        if now >= self.next_push_pull_at:
            if self.join_push_pulls > 0:
                self.join_push_pulls -= 1
                if self.join_push_pulls > 0:
                    self.next_push_pull_at = now + self._join_push_pull_delay()
                else:
                    self.next_push_pull_at = now + self.profile.push_pull_scale(len(self.nodes))
            else:
                self.next_push_pull_at = now + self.profile.push_pull_scale(len(self.nodes))
            self._push_pull()
        expired = [name for name, s in self.suspicions.items() if s.timer.expired(now)]
        for name in expired:
            self._suspicion_expired(name)

    def next_deadline(self) -> float:
        times = [self.next_push_pull_at]
        if self.probe is not None:
            times.append(self.probe.deadline if self.probe.indirect else self.probe.timeout_at)
        else:
            times.append(self.next_probe_at)
        if len(self.broadcasts) or self.delegate.has_broadcasts():
            times.append(self.next_gossip_at)
        times.extend(r.deadline for r in self.relays.values())
        times.extend(s.timer.deadline for s in self.suspicions.values())
        return min(times)

    # ------------------------------------------------------------------ dispatch

    def _handle(self, src: str, kind: int, body: dict[str, Any]) -> None:
        if kind == MessageType.PING:
            if self._ping_is_for_us(body):
                ack = {"Seq": get_int(body, "Seq"), "Payload": self.delegate.ack_payload()}
                self._send(src, [encode(MessageType.ACK, ack)])
        elif kind == MessageType.INDIRECT_PING:
            self._handle_indirect(src, body)
        elif kind == MessageType.ACK:
            self._handle_ack(body, via_stream=False)
        elif kind == MessageType.NACK:
            seq = get_int(body, "Seq")
            if self.probe is not None and self.probe.seq == seq:
                self.probe.nacks += 1
        elif kind == MessageType.SUSPECT:
            self._suspect_node(get_int(body, "Inc"), get_str(body, "Node"), get_str(body, "From"))
        elif kind == MessageType.ALIVE:
            vsn = tuple(get_list(body, "Vsn"))
            if len(vsn) != 6 or not all(isinstance(v, int) for v in vsn):
                raise BadMessage("alive: bad Vsn")
            self._alive_node(
                get_str(body, "Node"),
                get_ip(body, "Addr"),
                get_int(body, "Port", 0, 65535),
                get_bytes(body, "Meta"),
                get_int(body, "Inc"),
                vsn,
            )
        elif kind == MessageType.DEAD:
            self._dead_node(get_int(body, "Inc"), get_str(body, "Node"), get_str(body, "From"))
        elif kind == MessageType.USER:
            self.delegate.notify_msg(get_bytes(body, "Data"))
        else:
            self.metrics["drop.unknown_type"] += 1

    def _ping_is_for_us(self, body: dict[str, Any]) -> bool:
        target = body.get("Node", "")
        if target not in ("", self.name):
            self.metrics["drop.unexpected_ping"] += 1
            log.warning("Got ping for unexpected node '%s'", target)
            return False
        return True

    # ------------------------------------------------------------------ sending

    def _send(self, dest: str, msgs: list[bytes]) -> None:
        """One UDP packet, with as many broadcasts piggybacked as fit."""
        limit = self.profile.udp_buffer_size - COMPOUND_HEADER_OVERHEAD
        if self.encrypted:
            limit -= ENCRYPT_OVERHEAD
        used = sum(len(m) + COMPOUND_OVERHEAD for m in msgs)
        if used > limit:
            for m in msgs:  # too big for UDP: each goes on its own stream
                self._out.append(Outgoing(dest, m, stream=True))
            return
        extra = self._get_broadcasts(COMPOUND_OVERHEAD, limit - used)
        self.metrics["packets_sent"] += 1
        self._out.append(Outgoing(dest, compound(msgs + extra)))

    def _get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out = self.broadcasts.get_broadcasts(overhead, limit)
        used = sum(len(m) + overhead for m in out)
        if limit - used > overhead:
            out.extend(self.delegate.get_broadcasts(overhead, limit - used))
        return out

    def _broadcast(self, subject: str, kind: MessageType, body: dict[str, Any]) -> None:
        self.broadcasts.queue(encode(kind, body), subject)

    # ------------------------------------------------------------------ probing

    def _probe_next(self) -> None:
        checked = 0
        while checked < len(self.nodes):
            if self.probe_index >= len(self.nodes):
                self._reset_nodes()
                self.probe_index = 0
                checked += 1
                continue
            node = self.node_map[self.nodes[self.probe_index]]
            self.probe_index += 1
            if node.name == self.name or node.dead_or_left():
                checked += 1
                continue
            self._probe_node(node)
            return

    def _reset_nodes(self) -> None:
        """Forget members dead for longer than gossip_to_the_dead_time; reshuffle."""
        cutoff = self.now - self.profile.gossip_to_the_dead_time
        keep: list[str] = []
        for name in self.nodes:
            node = self.node_map[name]
            if node.dead_or_left() and node.state_change < cutoff:
                del self.node_map[name]
                self.suspicions.pop(name, None)
            else:
                keep.append(name)
        self.rng.shuffle(keep)
        self.nodes = keep

    def _probe_node(self, node: NodeState) -> None:
        self.metrics["probes"] += 1
        self.seq += 1
        ping = encode(MessageType.PING, {"Seq": self.seq, "Node": node.name})
        interval = self.awareness.scale_timeout(self.profile.probe_interval)
        self.probe = Probe(
            seq=self.seq,
            target=node.name,
            sent=self.now,
            timeout_at=self.now + self.profile.probe_timeout,
            deadline=self.now + interval,
        )
        msgs = [ping]
        if node.state == State.SUSPECT:
            # Tell it it's suspected, so it can refute.
            msgs.append(
                encode(
                    MessageType.SUSPECT,
                    {"Inc": node.incarnation, "Node": node.name, "From": self.name},
                )
            )
        self._send(node.address, msgs)

    def _start_indirect(self, probe: Probe) -> None:
        probe.indirect = True
        node = self.node_map.get(probe.target)
        if node is None:
            return
        peers = self._k_random(
            self.profile.indirect_checks,
            lambda n: n.name not in (self.name, probe.target) and n.state == State.ALIVE,
        )
        for peer in peers:
            body = {"Seq": probe.seq, "Target": node.name, "Addr": node.address, "Nack": True}
            self._send(peer.address, [encode(MessageType.INDIRECT_PING, body)])
        probe.expected_nacks = len(peers)
        if self.profile.tcp_pings:
            ping = encode(MessageType.PING, {"Seq": probe.seq, "Node": node.name})
            self._out.append(Outgoing(node.address, ping, stream=True, expect_reply=True))

    def _probe_failed(self, probe: Probe) -> None:
        self.probe = None
        delta = max(0, probe.expected_nacks - probe.nacks) if probe.expected_nacks > 0 else 1
        self.awareness.apply_delta(delta)
        node = self.node_map.get(probe.target)
        if node is None or node.dead_or_left():
            return
        log.info("Suspect %s has failed, no acks received", node.name)
        self._suspect_node(node.incarnation, node.name, self.name)

    def _handle_ack(self, body: dict[str, Any], via_stream: bool) -> None:
        seq = get_int(body, "Seq")
        payload = get_bytes(body, "Payload")
        probe = self.probe
        if probe is not None and probe.seq == seq:
            self.probe = None
            self.awareness.apply_delta(-1)
            node = self.node_map.get(probe.target)
            if node is not None and not probe.indirect and not via_stream:
                self.delegate.notify_ping_complete(node, self.now - probe.sent, payload)
            return
        relay = self.relays.pop(seq, None)
        if relay is not None:
            self._send(relay.requester, [encode(MessageType.ACK, {"Seq": relay.orig_seq})])

    def _handle_indirect(self, src: str, body: dict[str, Any]) -> None:
        orig_seq = get_int(body, "Seq")
        target = get_str(body, "Target")
        addr = get_ip_port(body, "Addr")
        self.seq += 1
        self.relays[self.seq] = Relay(
            orig_seq, src, get_bool(body, "Nack"), self.now + self.profile.probe_timeout
        )
        self._send(addr, [encode(MessageType.PING, {"Seq": self.seq, "Node": target})])

    def _k_random(self, k: int, accept: Callable[[NodeState], bool]) -> list[NodeState]:
        return k_random_nodes(self.rng, self.nodes, self.node_map, k, accept)

    # ------------------------------------------------------------------ gossip, push/pull

    def gossip_soon(self) -> None:
        """A new broadcast was queued: hold the next gossip round no later than a quarter of
        gossip_interval after the last one (not in memberlist, whose rounds are a fixed
        ticker). A change then spreads in a few short hops instead of waiting up to a full
        interval at every hop; while nothing new is queued, rounds stay gossip_interval
        apart, and every broadcast is still sent only retransmit_limit times."""
        soon = self.last_gossip_round + self.profile.gossip_interval / 4
        if soon < self.next_gossip_at:
            self.next_gossip_at = soon

    def _gossip(self) -> None:
        if not (len(self.broadcasts) or self.delegate.has_broadcasts()):
            return
        self.last_gossip_round = self.now
        cutoff = self.now - self.profile.gossip_to_the_dead_time

        def accept(n: NodeState) -> bool:
            if n.name == self.name:
                return False
            if n.state == State.DEAD:
                return n.state_change > cutoff
            return n.state != State.LEFT

        limit = self.profile.udp_buffer_size - COMPOUND_HEADER_OVERHEAD
        if self.encrypted:
            limit -= ENCRYPT_OVERHEAD
        for node in self._k_random(self.profile.gossip_nodes, accept):
            msgs = self._get_broadcasts(COMPOUND_OVERHEAD, limit)
            if not msgs:
                return
            self.metrics["packets_sent"] += 1
            self._out.append(Outgoing(node.address, compound(msgs)))

    def _push_pull(self) -> None:
        peers = self._k_random(1, lambda n: n.name != self.name and n.state == State.ALIVE)
        if peers:
            data = self._push_pull_message(join=False, reply=False)
            self._out.append(Outgoing(peers[0].address, data, stream=True, expect_reply=True))

    def _push_pull_message(self, join: bool, reply: bool) -> bytes:
        body = {
            "Join": join,
            "Reply": reply,
            "Nodes": encode_push_pull_nodes(self.node_map.values()),
            "User": self.delegate.local_state(join),
        }
        return encode(MessageType.PUSH_PULL, body)

    def _merge_remote(self, body: dict[str, Any], join: bool) -> str | None:
        states = decode_push_pull_nodes(get_list(body, "Nodes"), self.now)
        user = get_bytes(body, "User")
        error = self.delegate.notify_merge(states)
        if error is not None:
            return error
        for r in states:
            if r.state == State.ALIVE:
                self._alive_node(r.name, r.addr, r.port, r.meta, r.incarnation, r.vsn)
            elif r.state == State.LEFT:
                self._dead_node(r.incarnation, r.name, r.name)
            else:
                # Prefer suspecting over declaring dead on hearsay.
                self._suspect_node(r.incarnation, r.name, self.name)
        if user:
            self.delegate.merge_remote_state(user, join)
        return None

    # ------------------------------------------------------------------ state transitions

    def _next_incarnation(self) -> int:
        self.incarnation += 1
        return self.incarnation

    def _refute(self, me: NodeState, accused: int) -> None:
        inc = self._next_incarnation()
        if accused >= inc:
            self.incarnation = accused + 1
            inc = self.incarnation
        me.incarnation = inc
        self.awareness.apply_delta(1)
        self._broadcast(
            me.name,
            MessageType.ALIVE,
            {
                "Inc": inc,
                "Node": me.name,
                "Addr": me.addr,
                "Port": me.port,
                "Meta": me.meta,
                "Vsn": list(me.vsn),
            },
        )

    def _owned(self, name: str) -> NodeState | None:
        """The state of `name` for changing it. A simulation may share states between
        nodes' views (agent/sim/gossip_shared.py); its map then copies on write."""
        own = getattr(self.node_map, "own", None)
        return own(name) if own is not None else self.node_map.get(name)

    def _must_own(self, name: str) -> NodeState:
        state = self._owned(name)
        assert state is not None, name
        return state

    def _alive_node(
        self,
        name: str,
        addr: str,
        port: int,
        meta: bytes,
        inc: int,
        vsn: tuple[int, ...],
        bootstrap: bool = False,
    ) -> None:
        if self.leaving and name == self.name:
            return
        # Read first: most alive messages (every push/pull repeats them) change nothing.
        state = self.node_map.get(name)
        is_new = state is None
        if state is None:
            state = NodeState(name, addr, port, meta, 0, State.DEAD, self.now, vsn)
            self.node_map[name] = state
            self.nodes.append(name)
            # Random position so new members are not all probed last.
            i = self.rng.randrange(len(self.nodes))
            self.nodes[i], self.nodes[-1] = self.nodes[-1], self.nodes[i]
        elif (state.addr, state.port) != (addr, port):
            if not state.dead_or_left():
                self.metrics["conflict"] += 1
                log.error(
                    "Conflicting address for %s. Mine: %s:%d Theirs: %s:%d",
                    name,
                    state.addr,
                    state.port,
                    addr,
                    port,
                )
                self.delegate.notify_conflict(state, addr, port)
                return
            # A dead member may come back at a new address.
            state = self._must_own(name)
            state.addr, state.port = addr, port
            state.incarnation = 0
        is_local = name == self.name
        if not is_new and inc <= state.incarnation and not is_local:
            return
        if inc < state.incarnation and is_local:
            return
        if not is_new:
            state = self._must_own(name)
        self.suspicions.pop(name, None)
        old_state, old_meta = state.state, state.meta
        if is_local and not bootstrap:
            if inc == state.incarnation and meta == state.meta and vsn == state.vsn:
                return
            log.warning("Refuting an alive message for '%s'", name)
            self._refute(state, inc)
            return
        self._broadcast(
            name,
            MessageType.ALIVE,
            {"Inc": inc, "Node": name, "Addr": addr, "Port": port, "Meta": meta, "Vsn": list(vsn)},
        )
        state.incarnation, state.meta, state.vsn = inc, meta, vsn
        if state.state != State.ALIVE:
            state.state = State.ALIVE
            state.state_change = self.now
        if old_state in (State.DEAD, State.LEFT):
            self.delegate.notify_join(state)
        elif old_meta != meta:
            self.delegate.notify_update(state)

    def _suspect_node(self, inc: int, name: str, accuser: str) -> None:
        state = self.node_map.get(name)
        if state is None or inc < state.incarnation:
            return
        if state.state == State.SUSPECT:
            suspect = self.suspicions.get(name)
            if suspect is not None and suspect.timer.confirm(accuser):
                self._broadcast(
                    name, MessageType.SUSPECT, {"Inc": inc, "Node": name, "From": accuser}
                )
            return
        if state.state != State.ALIVE:
            return
        state = self._must_own(name)
        if name == self.name:
            if not self.leaving:
                self._refute(state, inc)
                log.warning("Refuting a suspect message (from: %s)", accuser)
            return
        self._broadcast(name, MessageType.SUSPECT, {"Inc": inc, "Node": name, "From": accuser})
        state.incarnation = inc
        state.state = State.SUSPECT
        state.state_change = self.now
        self.suspicions[name] = Suspect.begin(self.profile, len(self.nodes), accuser, inc, self.now)

    def _suspicion_expired(self, name: str) -> None:
        suspect = self.suspicions.pop(name)
        state = self.node_map.get(name)
        if state is None or state.state != State.SUSPECT:
            return
        if state.incarnation != suspect.incarnation:
            return
        log.info(
            "Marking %s as failed, suspect timeout reached (%d peer confirmations)",
            name,
            suspect.timer.n,
        )
        self._dead_node(suspect.incarnation, name, self.name)

    def _dead_node(self, inc: int, name: str, accuser: str) -> None:
        state = self.node_map.get(name)
        if state is None or inc < state.incarnation:
            return
        self.suspicions.pop(name, None)
        if state.dead_or_left():
            return
        state = self._must_own(name)
        if name == self.name:
            if not self.leaving:
                self._refute(state, inc)
                log.warning("Refuting a dead message (from: %s)", accuser)
                return
            # Our own leave: tell everyone, and let the runner know when it went out.
            self.broadcasts.queue(
                encode(MessageType.DEAD, {"Inc": inc, "Node": name, "From": accuser}),
                name,
                on_done=self._leave_sent,
            )
        else:
            self._broadcast(name, MessageType.DEAD, {"Inc": inc, "Node": name, "From": accuser})
        state.incarnation = inc
        state.state = State.LEFT if accuser == name else State.DEAD
        state.state_change = self.now
        self.delegate.notify_leave(state)

    def _leave_sent(self) -> None:
        self.leave_broadcast_done = True
