"""Gossip timing profiles: memberlist's DefaultLANConfig / DefaultWANConfig / DefaultLocalConfig
plus the Serf settings that sit on top of them.

Every timing constant of the gossip layer lives here, documented once, in the manner of
hashicorp/memberlist's config.go. The cores read a `Profile`; nothing else hard-codes a time.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Profile:
    """One named set of timings. Use `Profile.lan()`, `.wan()` or `.local()`."""

    name: str
    # --- memberlist (SWIM + Lifeguard) ---
    #: Timeout of a TCP connection (push/pull, fallback ping, large messages).
    tcp_timeout: float
    #: Members asked to ping-req a node that missed its direct probe (SWIM's k).
    indirect_checks: int
    #: A broadcast is sent retransmit_mult * ceil(log10(n+1)) times.
    retransmit_mult: int
    #: Suspicion minimum = suspicion_mult * max(1, log10 n) * probe_interval.
    suspicion_mult: int
    #: Suspicion maximum (Lifeguard start value) = this times the minimum.
    suspicion_max_timeout_mult: int
    #: Full state exchange with one random member; scaled up past 32 nodes.
    push_pull_interval: float
    #: Time to wait for a direct ack before indirect probes (scaled by awareness).
    probe_timeout: float
    #: One member is probed every probe_interval (scaled by awareness).
    probe_interval: float
    #: Lifeguard local health: timeouts stretch up to this many times.
    awareness_max_multiplier: int
    #: Random members each gossip round is sent to.
    gossip_nodes: int
    #: Period of a gossip round (piggybacked broadcasts to gossip_nodes members).
    gossip_interval: float
    #: Dead members still receive gossip for this long (helps them refute).
    gossip_to_the_dead_time: float
    #: Largest UDP packet we build (compound messages are kept under it).
    udp_buffer_size: int
    #: TCP fallback probe when UDP probes fail.
    tcp_pings: bool
    # --- serf ---
    #: Failed members are retried (a join) every reconnect_interval...
    reconnect_interval: float
    #: ...and forgotten (member-reap) after reconnect_timeout. Consul uses 72h.
    reconnect_timeout: float
    #: Left members are forgotten after this.
    tombstone_timeout: float
    #: How often failed/left members are checked for reaping.
    reap_interval: float
    #: Leave waits up to this long for the leave intent to be broadcast.
    broadcast_timeout: float
    #: After the memberlist leave, wait this long so the message spreads.
    leave_propagate_delay: float
    #: Lamport window of the user-event dedup buffer.
    event_buffer: int
    #: Lamport window of the query dedup buffer.
    query_buffer: int
    #: Default query timeout = gossip_interval * query_timeout_mult * ceil(log10(n+1)).
    query_timeout_mult: int
    #: Largest user event (name + payload) accepted.
    user_event_size_limit: int
    #: Largest query response payload.
    query_response_size_limit: int
    #: Coalescing of user events sent with coalesce=True (0 disables, as serf's default).
    user_coalesce_period: float
    user_quiescent_period: float
    #: Intents (join/leave) for members not yet known are kept this long.
    recent_intent_timeout: float
    #: Serf queues are pruned to this depth.
    max_queue_depth: int

    @classmethod
    def lan(cls) -> Profile:
        """memberlist.DefaultLANConfig with serf.DefaultConfig; Consul's 72h reconnect timeout."""
        return cls(
            name="lan",
            tcp_timeout=10.0,
            indirect_checks=3,
            retransmit_mult=4,
            suspicion_mult=4,
            suspicion_max_timeout_mult=6,
            push_pull_interval=30.0,
            probe_timeout=0.5,
            probe_interval=1.0,
            awareness_max_multiplier=8,
            gossip_nodes=3,
            gossip_interval=0.2,
            gossip_to_the_dead_time=30.0,
            udp_buffer_size=1400,
            tcp_pings=True,
            reconnect_interval=30.0,
            reconnect_timeout=72 * HOUR,
            tombstone_timeout=24 * HOUR,
            reap_interval=15.0,
            broadcast_timeout=5.0,
            leave_propagate_delay=1.0,
            event_buffer=512,
            query_buffer=512,
            query_timeout_mult=16,
            user_event_size_limit=512,
            query_response_size_limit=1024,
            user_coalesce_period=0.0,
            user_quiescent_period=0.0,
            recent_intent_timeout=300.0,
            max_queue_depth=4096,
        )

    @classmethod
    def wan(cls) -> Profile:
        """memberlist.DefaultWANConfig: slower probes, longer suspicion, for the WAN pool."""
        return dataclasses.replace(
            cls.lan(),
            name="wan",
            tcp_timeout=30.0,
            suspicion_mult=6,
            push_pull_interval=60.0,
            probe_timeout=3.0,
            probe_interval=5.0,
            gossip_nodes=4,
            gossip_interval=0.5,
            gossip_to_the_dead_time=60.0,
        )

    @classmethod
    def local(cls) -> Profile:
        """memberlist.DefaultLocalConfig (loopback, tests); serf timings scaled down likewise."""
        return dataclasses.replace(
            cls.lan(),
            name="local",
            tcp_timeout=1.0,
            indirect_checks=1,
            retransmit_mult=2,
            suspicion_mult=3,
            push_pull_interval=15.0,
            probe_timeout=0.2,
            probe_interval=1.0,
            gossip_interval=0.1,
            gossip_to_the_dead_time=15.0,
            reconnect_interval=2.0,
            reap_interval=1.0,
            broadcast_timeout=1.0,
            leave_propagate_delay=0.3,
        )

    @classmethod
    def named(cls, name: str) -> Profile:
        makers = {"lan": cls.lan, "wan": cls.wan, "local": cls.local}
        if name not in makers:
            raise ValueError(f"unknown gossip profile {name!r}: expected lan, wan or local")
        return makers[name]()

    # --- derived values (memberlist util.go) ---

    @property
    def join_push_pull_delay(self) -> float:
        """First spacing of the early push/pulls after a join (swim.JOIN_PUSH_PULLS), which
        then doubles: one gossip round (Local 0.1 s, LAN 0.2 s, WAN 0.5 s)."""
        return self.gossip_interval

    def retransmit_limit(self, n: int) -> int:
        return self.retransmit_mult * math.ceil(math.log10(n + 1))

    def suspicion_timeout(self, n: int) -> float:
        """The Lifeguard minimum; the maximum is suspicion_max_timeout_mult times it."""
        node_scale = max(1.0, math.log10(max(1.0, float(n))))
        return self.suspicion_mult * node_scale * self.probe_interval

    def push_pull_scale(self, n: int) -> float:
        """memberlist pushPullScale: the interval grows with log2 of n/32 past 32 nodes."""
        threshold = 32
        if n <= threshold:
            return self.push_pull_interval
        multiplier = math.ceil(math.log2(n) - math.log2(threshold)) + 1.0
        return self.push_pull_interval * multiplier

    def query_timeout(self, n: int) -> float:
        return self.gossip_interval * self.query_timeout_mult * math.ceil(math.log10(n + 1))
