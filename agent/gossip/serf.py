"""Serf on top of memberlist: member status, tags, Lamport clocks, user events and queries.

Theory of operation
-------------------
memberlist knows who is reachable; Serf knows what members *meant*. A member is alive,
leaving, left or failed: memberlist's "dead" becomes "failed" unless a leave intent
(gossiped with a Lamport time) arrived first, in which case it is "left". Intents for
members we have not heard of yet are remembered for a while, since gossip reorders.

Three Lamport clocks order everything: the member clock (join/leave intents), the event
clock (user events) and the query clock. A user event is delivered once: a ring buffer
indexed by event time keeps the (name, payload) pairs already seen at that time, and
events older than the buffer window are dropped. Queries spread like events and every
member that matches the filters answers straight to the asker.

Failed members are retried (a push/pull join) every reconnect interval and forgotten
(member-reap) after the reconnect timeout; left members after the tombstone timeout.

Sans-IO: `Serf` owns a `Memberlist` and acts as its delegate. Drive it with
`receive_packet`, `receive_stream`, `receive_stream_reply`, `tick`; collect
`take_outgoing()`, `take_events()` and `take_reconnects()` (addresses to join).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgpack

from agent.gossip.broadcast import TransmitLimitedQueue
from agent.gossip.config import Profile
from agent.gossip.coordinate import (
    Coordinate,
    CoordinateClient,
    CoordinateConfig,
    CoordinateError,
)
from agent.gossip.keyring import KEYRING_QUERIES, Keyring, answer_keyring_query
from agent.gossip.messages import (
    BadMessage,
    MessageType,
    encode,
    get_bytes,
    get_int,
    get_ip_port,
    get_str,
    unpack,
)
from agent.gossip.nodes import NodeState, Outgoing, State
from agent.gossip.serf_messages import (
    MSG_JOIN,
    MSG_LEAVE,
    MSG_QUERY,
    MSG_QUERY_RESPONSE,
    MSG_USER_EVENT,
    PushPull,
    conflict_response_is,
    decode_message,
    encode_conflict_response,
    pack,
    query_filters,
    query_matches,
)
from agent.gossip.serf_types import (
    SERF_PROTOCOL_CUR,
    SERF_PROTOCOL_MAX,
    SERF_PROTOCOL_MIN,
    Coalesce,
    Event,
    Intent,
    LamportClock,
    Member,
    MemberEvent,
    MemberState,
    PendingQuery,
    Query,
    UserEvent,
    UserEventError,
    decode_tags,
    encode_tags,
)
from agent.gossip.swim import Memberlist
from agent.netaddr import join_host_port

log = logging.getLogger("serf")

INTERNAL_QUERY_PREFIX = "_serf_"
CONFLICT_QUERY = INTERNAL_QUERY_PREFIX + "conflict"


class Serf:
    def __init__(
        self,
        *,
        node_name: str,
        addr: str,
        port: int,
        tags: dict[str, str],
        profile: Profile,
        rng: random.Random,
        now: float = 0.0,
        merge_check: Callable[[list[Member]], str | None] | None = None,
        keyring: Keyring | None = None,
        coordinate_config: CoordinateConfig | None = None,
    ) -> None:
        self.node_name = node_name
        self.profile = profile
        self.rng = rng
        self.now = now
        self.tags = dict(tags)
        self.merge_check = merge_check
        self.keyring = keyring
        self.metrics: Counter[str] = Counter()
        self.memberlist = Memberlist(
            name=node_name,
            addr=addr,
            port=port,
            profile=profile,
            delegate=self,
            rng=rng,
            now=now,
            encrypted=keyring is not None,
            vsn=(1, 5, 2, SERF_PROTOCOL_MIN, SERF_PROTOCOL_MAX, SERF_PROTOCOL_CUR),
            metrics=self.metrics,
        )
        self.member_states: dict[str, MemberState] = {}
        self.failed: set[str] = set()
        self.left: set[str] = set()
        # Serf starts every clock at 1, so time 0 never names an event.
        self.clock = LamportClock(1)
        self.event_clock = LamportClock(1)
        self.query_clock = LamportClock(1)
        self.event_min_time = 0
        self.query_min_time = 0
        self.ignore_old_events = False
        self.event_buffer: dict[int, tuple[int, list[tuple[str, bytes]]]] = {}
        self.query_buffer: dict[int, tuple[int, set[int]]] = {}
        limit = lambda: profile.retransmit_limit(len(self.member_states))  # noqa: E731
        soon = self.memberlist.gossip_soon
        self.intent_queue = TransmitLimitedQueue(limit, profile.max_queue_depth, soon)
        self.event_queue = TransmitLimitedQueue(limit, profile.max_queue_depth, soon)
        self.query_queue = TransmitLimitedQueue(limit, profile.max_queue_depth, soon)
        self.recent_intents: dict[str, Intent] = {}
        self.coord_client = CoordinateClient(coordinate_config or CoordinateConfig(), rng)
        self.coord_cache: dict[str, Coordinate] = {}
        self.pending_queries: dict[int, PendingQuery] = {}
        self.coalesce = Coalesce()
        self.state = "alive"  # alive | leaving | left | shutdown
        self.leave_intent_sent = False
        self._events: list[Event] = []
        self._reconnects: list[str] = []
        #: The `_serf_conflict` query under way while another node claims our name.
        self.conflict_query: int | None = None
        #: Set when this node lost a name conflict: the runner shuts the pool down.
        self.shutdown_reason: str | None = None
        self.next_reap_at = now + profile.reap_interval
        self.next_reconnect_at = now + profile.reconnect_interval

    # ------------------------------------------------------------------ driving

    def start(self, now: float) -> None:
        self.now = now
        self.memberlist.start(encode_tags(self.tags), now)

    def receive_packet(self, src: str, data: bytes, now: float) -> None:
        self.now = now
        self.memberlist.receive_packet(src, data, now)

    def receive_stream(self, src: str, data: bytes, now: float) -> bytes | None:
        self.now = now
        return self.memberlist.receive_stream(src, data, now)

    def packet_refused(self, dest: str, now: float) -> None:
        self.now = now
        self.memberlist.packet_refused(dest, now)

    def stream_refused(self, dest: str, now: float) -> None:
        self.now = now
        self.memberlist.stream_refused(dest, now)

    def receive_stream_reply(self, src: str, data: bytes, now: float) -> None:
        self.now = now
        self.memberlist.receive_stream_reply(src, data, now)

    def tick(self, now: float) -> None:
        self.now = now
        if self.state == "shutdown":
            return
        self.memberlist.tick(now)
        if now >= self.next_reap_at:
            self.next_reap_at = now + self.profile.reap_interval
            self._reap()
        if now >= self.next_reconnect_at:
            self.next_reconnect_at = now + self.profile.reconnect_interval
            self._reconnect()
        for qid in [q for q, p in self.pending_queries.items() if now >= p.deadline]:
            if qid == self.conflict_query:
                self._resolve_conflict(self.pending_queries[qid].responses)
            del self.pending_queries[qid]
        self._flush_coalesced(now)

    def next_deadline(self) -> float:
        times = [self.memberlist.next_deadline(), self.next_reap_at]
        if self.failed:
            times.append(self.next_reconnect_at)
        if self.coalesce.events:
            times.append(self.coalesce.due(self.profile))
        times.extend(p.deadline for p in self.pending_queries.values())
        return min(times)

    def take_outgoing(self) -> list[Outgoing]:
        return self.memberlist.take_outgoing()

    def take_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def take_reconnects(self) -> list[str]:
        out, self._reconnects = self._reconnects, []
        return out

    # ------------------------------------------------------------------ public API

    def members(self) -> list[Member]:
        return [m.member for m in self.member_states.values()]

    def local_member(self) -> Member:
        return self.member_states[self.node_name].member

    def set_tags(self, tags: dict[str, str], now: float) -> None:
        meta = encode_tags(tags)  # raises before anything changes
        self.tags = dict(tags)
        self.memberlist.update_meta(meta, now)

    def joined(self) -> None:
        """After a successful memberlist join: announce it (serf broadcastJoin)."""
        ltime = self.clock.time()
        self._handle_join_intent(ltime, self.node_name)
        self.intent_queue.queue(pack(MSG_JOIN, {"LTime": ltime, "Node": self.node_name}))

    def begin_leave(self, now: float) -> None:
        self.now = now
        self.state = "leaving"
        ltime = self.clock.increment()
        self._handle_leave_intent(ltime, self.node_name)
        msg = pack(MSG_LEAVE, {"LTime": ltime, "Node": self.node_name})
        self.intent_queue.queue(msg, on_done=self._leave_intent_done)
        if not self._others_alive():
            self.leave_intent_sent = True

    def _leave_intent_done(self) -> None:
        self.leave_intent_sent = True

    def _others_alive(self) -> bool:
        return any(
            m.member.status == "alive" and n != self.node_name
            for n, m in self.member_states.items()
        )

    def force_leave(self, node: str, prune: bool = False) -> None:
        """Mark a failed member left; with `prune` (serf >= 0.9) forget it at once."""
        ltime = self.clock.increment()
        self._handle_leave_intent(ltime, node, prune)
        body: dict[str, object] = {"LTime": ltime, "Node": node}
        if prune:
            body["Prune"] = True
        self.intent_queue.queue(pack(MSG_LEAVE, body))

    def user_event(self, name: str, payload: bytes, coalesce: bool) -> UserEvent:
        size = len(name) + len(payload)
        if size > self.profile.user_event_size_limit:
            raise UserEventError(
                f"user event exceeds configured limit of {self.profile.user_event_size_limit}"
                f" bytes before encoding"
            )
        ltime = self.event_clock.time()
        self.event_clock.increment()
        body = {"LTime": ltime, "Name": name, "Payload": payload, "CC": coalesce}
        self._handle_user_event(body)
        self.event_queue.queue(pack(MSG_USER_EVENT, body))
        return UserEvent(ltime, name, payload, coalesce)

    def query(
        self,
        name: str,
        payload: bytes,
        timeout: float | None,
        filter_nodes: list[str] | None = None,
        filter_tags: dict[str, str] | None = None,
    ) -> tuple[int, float]:
        """Start a query; returns (id, deadline). Responses land in `pending_queries[id].responses`."""
        if len(name) + len(payload) > 1024:
            raise UserEventError("query exceeds limit of 1024 bytes")
        if timeout is None:
            timeout = self.profile.query_timeout(len(self.member_states))
        ltime = self.query_clock.time()
        self.query_clock.increment()
        qid = self.rng.getrandbits(32)
        me = self.memberlist.local()
        body = {
            "LTime": ltime,
            "ID": qid,
            "Addr": me.address,
            "Filters": query_filters(filter_nodes, filter_tags),
            "Timeout": timeout,
            "Name": name,
            "Payload": payload,
        }
        self.pending_queries[qid] = PendingQuery(ltime, self.now + timeout)
        self._handle_query(body)
        self.query_queue.queue(pack(MSG_QUERY, body))
        return qid, self.now + timeout

    def coordinate(self) -> Coordinate:
        return self.coord_client.coord

    def stats(self) -> dict[str, str]:
        return {
            "members": str(len(self.member_states)),
            "failed": str(len(self.failed)),
            "left": str(len(self.left)),
            "health_score": str(self.memberlist.awareness.score),
            "member_time": str(self.clock.time()),
            "event_time": str(self.event_clock.time()),
            "query_time": str(self.query_clock.time()),
            "intent_queue": str(len(self.intent_queue)),
            "event_queue": str(len(self.event_queue)),
            "query_queue": str(len(self.query_queue)),
            "encrypted": "true" if self.keyring is not None else "false",
            "coordinate_resets": str(self.coord_client.resets),
        }

    # ------------------------------------------------------------------ memberlist delegate

    def has_broadcasts(self) -> bool:
        return bool(len(self.intent_queue) or len(self.event_queue) or len(self.query_queue))

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out: list[bytes] = []
        wrap = overhead + 12  # the USER message wrapper around each serf message
        for queue in (self.intent_queue, self.query_queue, self.event_queue):
            used = sum(len(m) + wrap for m in out)
            if limit - used <= wrap:
                break
            out.extend(queue.get_broadcasts(wrap, limit - used))
        return [encode(MessageType.USER, {"Data": m}) for m in out]

    def notify_msg(self, data: bytes) -> None:
        try:
            kind, body = decode_message(data)
            rebroadcast = False
            if kind == MSG_LEAVE:
                rebroadcast = self._handle_leave_intent(
                    get_int(body, "LTime"), get_str(body, "Node"), body.get("Prune") is True
                )
                queue = self.intent_queue
            elif kind == MSG_JOIN:
                rebroadcast = self._handle_join_intent(
                    get_int(body, "LTime"), get_str(body, "Node")
                )
                queue = self.intent_queue
            elif kind == MSG_USER_EVENT:
                rebroadcast = self._handle_user_event(body)
                queue = self.event_queue
            elif kind == MSG_QUERY:
                rebroadcast = self._handle_query(body)
                queue = self.query_queue
            elif kind == MSG_QUERY_RESPONSE:
                self._handle_query_response(body)
                return
            else:
                self.metrics["drop.unknown_type"] += 1
                return
            if rebroadcast:
                queue.queue(data)
        except BadMessage:
            self.metrics["drop.malformed"] += 1
        except (ValueError, TypeError):
            self.metrics["drop.malformed"] += 1

    def local_state(self, join: bool) -> bytes:
        events = [[ltime, [[n, p] for n, p in evs]] for ltime, evs in self.event_buffer.values()]
        return PushPull(
            ltime=self.clock.time(),
            status_ltimes={n: m.status_ltime for n, m in self.member_states.items()},
            left_members=sorted(self.left),
            event_ltime=self.event_clock.time(),
            events=events,
            query_ltime=self.query_clock.time(),
        ).encode()

    def merge_remote_state(self, data: bytes, join: bool) -> None:
        try:
            pp = PushPull.decode(data)
        except (BadMessage, ValueError):
            self.metrics["drop.malformed"] += 1
            return
        if pp.ltime > 0:
            self.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        left_set = {n for n in pp.left_members if isinstance(n, str)}
        for name, st in pp.status_ltimes.items():
            if not isinstance(name, str) or not isinstance(st, int):
                continue
            if name in left_set:
                self._handle_leave_intent(st, name)
            else:
                self._handle_join_intent(st, name)
        if join and self.ignore_old_events:
            # Events up to the remote's clock are history; its next event uses that time.
            self.event_min_time = max(self.event_min_time, pp.event_ltime)
            self.query_min_time = max(self.query_min_time, pp.query_ltime)
        for entry in pp.events:
            try:
                ev_ltime, pairs = entry
                for name, payload in pairs:
                    self._handle_user_event(
                        {"LTime": ev_ltime, "Name": name, "Payload": payload, "CC": False}
                    )
            except (TypeError, ValueError, BadMessage):
                self.metrics["drop.malformed"] += 1

    def notify_conflict(self, existing: NodeState, addr: str, port: int) -> None:
        """Two addresses claim one name (serf handleNodeConflict). About another node: a
        warning. About us: ask everyone, with the `_serf_conflict` query, which address they
        know for our name; if the majority of answers is not ours, we are the impostor and
        leave the cluster (the runner shuts the pool down), as Serf does with
        EnableNameConflictResolution (on by default, and in Consul)."""
        if existing.name != self.node_name:
            log.warning(
                "Name conflict for '%s' both %s:%d and %s:%d are claiming",
                existing.name,
                existing.addr,
                existing.port,
                addr,
                port,
            )
            return
        log.error(
            "Node name conflicts with another node at %s:%d. Names must be unique! "
            "(Resolution enabled: true)",
            addr,
            port,
        )
        if self.conflict_query is not None or self.state != "alive":
            return  # one resolution at a time
        qid, _ = self.query(CONFLICT_QUERY, self.node_name.encode(), None)
        self.conflict_query = qid

    def _resolve_conflict(self, responses: dict[str, bytes]) -> None:
        self.conflict_query = None
        me = self.memberlist.local()
        answers = matching = 0
        for data in responses.values():
            try:
                ours = conflict_response_is(data, me.addr, me.port)
            except BadMessage:
                self.metrics["drop.malformed"] += 1
                continue
            answers += 1
            if ours:
                matching += 1
        majority = answers // 2 + 1
        if matching >= majority:
            log.info("majority in name conflict resolution [%d / %d]", matching, answers)
            return
        log.warning("minority in name conflict resolution, quiting [%d / %d]", matching, answers)
        self.shutdown_reason = "name conflict"
        self.state = "shutdown"
        self.memberlist.shut_down = True

    def notify_merge(self, nodes: list[NodeState]) -> str | None:
        if self.merge_check is None:
            return None
        members = []
        for n in nodes:
            try:
                tags = decode_tags(n.meta)
            except BadMessage:
                tags = {}
            members.append(Member(n.name, n.addr, n.port, tags, "alive"))
        return self.merge_check(members)

    def notify_join(self, node: NodeState) -> None:
        try:
            tags = decode_tags(node.meta)
        except BadMessage:
            self.metrics["drop.malformed"] += 1
            tags = {}
        ms = self._owned(node.name)
        if ms is None:
            ms = MemberState(Member(node.name, node.addr, node.port, tags, "alive"))
            intent = self.recent_intents.pop(node.name, None)
            if intent is not None:
                ms.status_ltime = intent.ltime
                if intent.kind == MSG_LEAVE:
                    ms.member.status = "leaving"
            self.member_states[node.name] = ms
        else:
            m = ms.member
            m.addr, m.port, m.tags, m.status = node.addr, node.port, tags, "alive"
            ms.leave_time = 0.0
            intent = self.recent_intents.pop(node.name, None)
            if intent is not None and intent.ltime > ms.status_ltime:
                ms.status_ltime = intent.ltime
                if intent.kind == MSG_LEAVE:
                    m.status = "leaving"
        self.failed.discard(node.name)
        self.left.discard(node.name)
        m = ms.member
        if len(node.vsn) == 6:
            (
                m.protocol_min,
                m.protocol_max,
                m.protocol_cur,
                m.delegate_min,
                m.delegate_max,
                m.delegate_cur,
            ) = node.vsn
        log.info("EventMemberJoin: %s %s", m.name, m.addr)
        self._emit_member("member-join", m)

    def notify_leave(self, node: NodeState) -> None:
        ms = self._owned(node.name)
        if ms is None:
            return
        m = ms.member
        if m.status == "leaving" or (m.status == "alive" and node.state == State.LEFT):
            m.status = "left"
            self.left.add(m.name)
        elif m.status == "alive":
            m.status = "failed"
            self.failed.add(m.name)
        else:
            return
        ms.leave_time = self.now
        if m.status == "left":
            log.info("EventMemberLeave: %s %s", m.name, m.addr)
            self._emit_member("member-leave", m)
        else:
            log.info("EventMemberFailed: %s %s", m.name, m.addr)
            self._emit_member("member-failed", m)

    def notify_update(self, node: NodeState) -> None:
        ms = self._owned(node.name)
        if ms is None:
            return
        try:
            ms.member.tags = decode_tags(node.meta)
        except BadMessage:
            self.metrics["drop.malformed"] += 1
        ms.member.addr, ms.member.port = node.addr, node.port
        log.info("EventMemberUpdate: %s", node.name)
        self._emit_member("member-update", ms.member)

    def ack_payload(self) -> bytes:
        return msgpack.packb(self.coord_client.coord.to_wire(), use_bin_type=True)

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        if not payload:
            return
        try:
            other = Coordinate.from_wire(unpack(payload))
            self.coord_client.update(node.name, other, rtt)
            self.coord_cache[node.name] = other
        except (CoordinateError, BadMessage):
            self.metrics["drop.bad_coordinate"] += 1
        self.coord_cache[self.node_name] = self.coord_client.coord

    # ------------------------------------------------------------------ handlers

    def _owned(self, name: str) -> MemberState | None:
        """The member state of `name` for changing it; a simulation's shared map copies
        on write (see Memberlist._owned)."""
        own = getattr(self.member_states, "own", None)
        return own(name) if own is not None else self.member_states.get(name)

    def _emit_member(self, kind: str, m: Member) -> None:
        self._events.append(MemberEvent(kind, (replace(m, tags=dict(m.tags)),)))

    def _upsert_intent(self, node: str, kind: int, ltime: int) -> bool:
        old = self.recent_intents.get(node)
        if old is None or ltime > old.ltime:
            self.recent_intents[node] = Intent(kind, ltime, self.now)
            return True
        return False

    def _handle_leave_intent(self, ltime: int, node: str, prune: bool = False) -> bool:
        self.clock.witness(ltime)
        ms = self.member_states.get(node)
        if ms is None:
            return self._upsert_intent(node, MSG_LEAVE, ltime)
        if prune and node != self.node_name and ms.member.status in ("failed", "left"):
            self._forget(node, ms)  # serf's handlePrune: reaped now, not after the timeout
            return True
        if ltime <= ms.status_ltime:
            return False
        ms = self._owned(node) or ms
        m = ms.member
        if node == self.node_name and self.state == "alive":
            # Someone says we leave; we don't. Refute with a join intent.
            self.intent_queue.queue(pack(MSG_JOIN, {"LTime": self.clock.increment(), "Node": node}))
            return False
        if m.status == "alive":
            m.status = "leaving"
            ms.status_ltime = ltime
            return True
        if m.status == "failed":
            m.status = "left"
            ms.status_ltime = ltime
            self.failed.discard(node)
            self.left.add(node)
            log.info("EventMemberLeave (forced): %s %s", m.name, m.addr)
            self._emit_member("member-leave", m)
            return True
        return False

    def _handle_join_intent(self, ltime: int, node: str) -> bool:
        self.clock.witness(ltime)
        ms = self.member_states.get(node)
        if ms is None:
            return self._upsert_intent(node, MSG_JOIN, ltime)
        if ltime <= ms.status_ltime:
            return False
        ms = self._owned(node) or ms
        ms.status_ltime = ltime
        if ms.member.status == "leaving":
            ms.member.status = "alive"
        return True

    def _handle_user_event(self, body: dict[str, Any]) -> bool:
        ltime = get_int(body, "LTime")
        name = get_str(body, "Name")
        payload = get_bytes(body, "Payload")
        cc = bool(body.get("CC", False))
        self.event_clock.witness(ltime)
        if ltime < self.event_min_time:
            return False
        size = self.profile.event_buffer
        now_ltime = self.event_clock.time()
        if now_ltime > size and ltime < now_ltime - size:
            log.warning("received old event %s from time %d (current: %d)", name, ltime, now_ltime)
            return False
        idx = ltime % size
        seen = self.event_buffer.get(idx)
        if seen is not None and seen[0] == ltime:
            if (name, payload) in seen[1]:
                return False
            seen[1].append((name, payload))
        else:
            self.event_buffer[idx] = (ltime, [(name, payload)])
        self.metrics["events"] += 1
        event = UserEvent(ltime, name, payload, cc)
        if cc and self.profile.user_coalesce_period > 0:
            self.coalesce.add(event, self.now)
        else:
            self._events.append(event)
        return True

    def _flush_coalesced(self, now: float) -> None:
        if self.coalesce.events and now >= self.coalesce.due(self.profile):
            self._events.extend(self.coalesce.events.values())
            self.coalesce = Coalesce()

    def _handle_query(self, body: dict[str, Any]) -> bool:
        ltime = get_int(body, "LTime")
        qid = get_int(body, "ID")
        addr = get_ip_port(body, "Addr")
        name = get_str(body, "Name")
        payload = get_bytes(body, "Payload")
        filters = body.get("Filters", {})
        if not isinstance(filters, dict):
            raise BadMessage("query filters must be a map")
        self.query_clock.witness(ltime)
        if ltime < self.query_min_time:
            return False
        size = self.profile.query_buffer
        now_ltime = self.query_clock.time()
        if now_ltime > size and ltime < now_ltime - size:
            return False
        idx = ltime % size
        seen = self.query_buffer.get(idx)
        if seen is not None and seen[0] == ltime:
            if qid in seen[1]:
                return False
            seen[1].add(qid)
        else:
            self.query_buffer[idx] = (ltime, {qid})
        if not query_matches(filters, self.node_name, self.tags):
            return True

        def respond(data: bytes, _ltime: int = ltime, _qid: int = qid, _addr: str = addr) -> None:
            if len(data) > self.profile.query_response_size_limit:
                raise UserEventError(
                    f"response exceeds limit of {self.profile.query_response_size_limit} bytes"
                )
            resp = {"LTime": _ltime, "ID": _qid, "From": self.node_name, "Payload": data}
            if _addr == self.memberlist.local().address:
                self._handle_query_response(resp)
            else:
                self.memberlist.send_user(_addr, pack(MSG_QUERY_RESPONSE, resp))

        if name.startswith(INTERNAL_QUERY_PREFIX):
            self._internal_query(name, payload, respond)
        else:
            self._events.append(Query(ltime, name, payload, respond))
        return True

    def _handle_query_response(self, body: dict[str, Any]) -> None:
        qid = get_int(body, "ID")
        ltime = get_int(body, "LTime")
        pending = self.pending_queries.get(qid)
        if pending is None or pending.ltime != ltime:
            return
        sender = get_str(body, "From")
        if sender not in pending.responses:
            pending.responses[sender] = get_bytes(body, "Payload")

    def _internal_query(self, name: str, payload: bytes, respond: Callable[[bytes], None]) -> None:
        op = name[len(INTERNAL_QUERY_PREFIX) :]
        if op == "ping":
            respond(b"")
            return
        if name == CONFLICT_QUERY:
            # Which address do we know for that name? Not asked of the name's claimant.
            claimed = payload.decode("utf-8", "replace")
            if claimed == self.node_name:
                return
            ms = self.member_states.get(claimed)
            respond(encode_conflict_response(None if ms is None else ms.member))
            return
        if op not in KEYRING_QUERIES:
            return
        result = answer_keyring_query(self.keyring, op, payload)
        try:
            respond(msgpack.packb(result, use_bin_type=True))
        except UserEventError as exc:  # too many keys to fit
            respond(msgpack.packb({"Result": False, "Message": str(exc), "Keys": []}))

    # ------------------------------------------------------------------ reap, reconnect

    def _reap(self) -> None:
        for names, timeout in (
            (self.failed, self.profile.reconnect_timeout),
            (self.left, self.profile.tombstone_timeout),
        ):
            for name in list(names):
                ms = self.member_states.get(name)
                if ms is None:
                    names.discard(name)
                    continue
                if self.now - ms.leave_time <= timeout:
                    continue
                self._forget(name, ms)
        cutoff = self.now - self.profile.recent_intent_timeout
        for name in [n for n, i in self.recent_intents.items() if i.wall < cutoff]:
            del self.recent_intents[name]

    def _forget(self, name: str, ms: MemberState) -> None:
        self.failed.discard(name)
        self.left.discard(name)
        del self.member_states[name]
        self.coord_cache.pop(name, None)
        self.coord_client.forget(name)
        log.info("EventMemberReap: %s", name)
        self._emit_member("member-reap", ms.member)

    def _reconnect(self) -> None:
        if not self.failed:
            return
        alive = sum(1 for m in self.member_states.values() if m.member.status == "alive")
        prob = len(self.failed) / max(1, alive - 1)
        if self.rng.random() > prob:
            return
        name = self.rng.choice(sorted(self.failed))
        m = self.member_states[name].member
        log.info("attempting reconnect to %s %s:%d", name, m.addr, m.port)
        self._reconnects.append(join_host_port(m.addr, m.port))


__all__ = ["Serf"]
