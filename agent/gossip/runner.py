"""GossipPool: the asyncio shell around the Serf/memberlist core (one LAN or WAN pool).

The loop is: read a packet or stream -> decrypt -> feed the core -> `_pump()`, which sends
what the core queued, hands its events to `on_event`, starts reconnect joins and arms one
timer for the core's next deadline. The core decides everything; this file only moves
bytes, keeps time (`loop.time()`) and writes the known-members snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.api import JoinError as _APIJoinError
from agent.fsutil import write_atomic
from agent.gossip import snapshot as snap
from agent.gossip.config import Profile
from agent.gossip.coordinate import Coordinate
from agent.gossip.keyring import (
    DecryptError,
    Keyring,
    KeyringError,
    KeyringResponse,
    decode_key,
    keyring_request,
    parse_keyring_response,
)
from agent.gossip.nodes import Outgoing
from agent.gossip.serf import Serf
from agent.gossip.serf_types import Event, Member, MemberEvent, Query, UserEvent, UserEventError
from agent.gossip.transport import (
    MAX_PACKET,
    StreamError,
    UDPEndpoint,
    error_frame,
    read_stream_frame,
    remote_error,
    split_addr,
    stream_frame,
)
from agent.metrics import metrics
from agent.netaddr import join_host_port

log = logging.getLogger("serf")
mlog = logging.getLogger("memberlist")

#: serf's member event counters (consul.serf.member.join, ...)
_MEMBER_EVENT_KEYS = {
    "member-join": "serf.member.join",
    "member-leave": "serf.member.left",
    "member-failed": "serf.member.failed",
    "member-update": "serf.member.update",
    "member-reap": "serf.member.reap",
}

KEYRING_OPS = ("list", "install", "use", "remove")


class JoinError(_APIJoinError):
    """No address could be joined; one line per address, as Consul prints them."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


__all__ = [
    "Coordinate",
    "Event",
    "GossipPool",
    "JoinError",
    "Keyring",
    "KeyringError",
    "KeyringResponse",
    "Member",
    "MemberEvent",
    "Profile",
    "Query",
    "UserEvent",
    "UserEventError",
]


def _store_snapshot(path: Path, text: str) -> None:
    """On the snapshot thread: failures are logged, as gossip goes on without a snapshot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text, mode=0o600)  # mkstemp's mode, which it had before
    except OSError as exc:
        log.warning("Failed to write snapshot %s: %s", path, exc)
    except Exception:
        log.exception("Failed to write snapshot %s", path)


class GossipPool:
    def __init__(
        self,
        *,
        name: str,
        node_name: str,
        bind_addr: str,
        bind_port: int,
        advertise_addr: str,
        advertise_port: int,
        tags: dict[str, str],
        profile: Profile,
        keyring: Keyring | None,
        snapshot_path: Path | None,
        merge_check: Callable[[list[Member]], str | None] | None,
        on_event: Callable[[MemberEvent | UserEvent | Query], None],
        rejoin_after_leave: bool = False,
    ) -> None:
        self.name = name
        self._labels = (("network", name),)
        self.rejoin_after_leave = rejoin_after_leave
        self.node_name = node_name
        self.bind_addr = bind_addr
        self.bind_port = bind_port
        self.profile = profile
        self.keyring = keyring
        self.snapshot_path = snapshot_path
        self.on_event = on_event
        self.serf = Serf(
            node_name=node_name,
            addr=advertise_addr,
            port=advertise_port,
            tags=tags,
            profile=profile,
            rng=random.Random(),
            merge_check=merge_check,
            keyring=keyring,
        )
        self.metrics: Counter[str] = self.serf.metrics
        self._udp: UDPEndpoint | None = None
        self._tcp: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._snapshot_handle: asyncio.TimerHandle | None = None
        self._snapshot_writer: ThreadPoolExecutor | None = None
        self._previous: snap.SnapshotState | None = None
        self._running = False
        self._conflict_exit: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind UDP+TCP, become alive, and rejoin the nodes of the snapshot (if any)."""
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: UDPEndpoint(self._on_packet, self._on_unreachable),
            local_addr=(self.bind_addr, self.bind_port),
        )
        self._udp = protocol
        try:
            self._tcp = await asyncio.start_server(
                self._on_connection, self.bind_addr, self.bind_port, reuse_address=True
            )
        except OSError:
            transport.close()
            raise
        self._running = True
        previous = self._load_snapshot()
        self.serf.start(loop.time())
        self._pump()
        if previous is not None and previous.alive:
            self._spawn(self._rejoin(previous))
        else:
            log.warning("Failed to re-join any previously known node")

    async def shutdown(self) -> None:
        if not self._running:
            return
        self._running = False
        self.serf.state = "shutdown" if self.serf.state != "left" else "left"
        self.serf.memberlist.shut_down = True
        if self._timer is not None:
            self._timer.cancel()
        if self._snapshot_handle is not None:
            self._snapshot_handle.cancel()
        last_snapshot = self._write_snapshot()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)
        if last_snapshot is not None:
            await asyncio.wrap_future(last_snapshot)
        if self._snapshot_writer is not None:
            self._snapshot_writer.shutdown(wait=False)  # idle: the last write was awaited
            self._snapshot_writer = None

    async def join(self, addrs: list[str], ignore_old: bool = True) -> int:
        """Push/pull with each address; returns how many answered. JoinError if none."""
        # Only the push/pulls of this join skip old events (serf eventJoinIgnore); a later
        # reconnect or a peer's push/pull must still deliver what we missed.
        self.serf.ignore_old_events = ignore_old
        joined = 0
        errors: list[str] = []
        try:
            for addr in addrs:
                error = await self._join_one(addr)
                if error is None:
                    joined += 1
                else:
                    errors.append(error)
        finally:
            self.serf.ignore_old_events = False
        if joined:
            self.serf.joined()
            self._pump()
            return joined
        raise JoinError(errors or ["Failed to join: no addresses given"])

    async def leave(self) -> None:
        """Graceful leave: gossip the intent, then our own departure, and let it spread."""
        loop = asyncio.get_running_loop()
        self.serf.begin_leave(loop.time())
        self._pump()
        timeout = self.profile.broadcast_timeout
        if not await self._wait(lambda: self.serf.leave_intent_sent, timeout):
            log.warning("timeout while waiting for graceful leave")
        others = self.serf.memberlist.leave(loop.time())
        self._pump()
        if others:
            if not await self._wait(lambda: self.serf.memberlist.leave_broadcast_done, timeout):
                mlog.warning("timeout waiting for leave broadcast")
            await asyncio.sleep(self.profile.leave_propagate_delay)
        self.serf.state = "left"
        written = self._write_snapshot()
        if written is not None:
            await asyncio.wrap_future(written)  # the leave is on disk when leave() returns

    # ------------------------------------------------------------------ queries of state

    def force_leave(self, node: str, prune: bool = False) -> None:
        self.serf.force_leave(node, prune)
        self._pump()

    def members(self) -> list[Member]:
        return self.serf.members()

    def local_member(self) -> Member:
        return self.serf.local_member()

    def set_tags(self, tags: dict[str, str]) -> None:
        self.serf.set_tags(tags, asyncio.get_running_loop().time())
        self._pump()

    def user_event(self, name: str, payload: bytes, coalesce: bool = True) -> None:
        self.serf.user_event(name, payload, coalesce)
        self._pump()

    async def query(self, name: str, payload: bytes, timeout: float) -> dict[str, bytes]:
        qid, _ = self.serf.query(name, payload, timeout)
        pending = self.serf.pending_queries[qid]
        self._pump()
        expected = sum(1 for m in self.serf.members() if m.status == "alive")
        await self._wait(lambda: len(pending.responses) >= expected, timeout)
        return dict(pending.responses)

    def coordinate(self) -> Coordinate:
        return self.serf.coordinate()

    def cached_coordinate(self, node: str) -> Coordinate | None:
        if node == self.node_name:
            return self.serf.coordinate()
        return self.serf.coord_cache.get(node)

    async def keyring_op(self, op: str, key: str | None) -> KeyringResponse:
        """list/install/use/remove on every member's keyring, spread by a Serf query."""
        if op not in KEYRING_OPS:
            raise KeyringError(f"unknown keyring operation {op!r}: expected {KEYRING_OPS}")
        if op != "list":
            if not key:
                raise KeyringError(f"keyring operation {op} needs a key")
            decode_key(key)  # reject a malformed key before spreading it
        name = "_serf_list-keys" if op == "list" else f"_serf_{op}-key"
        timeout = self.profile.query_timeout(len(self.serf.member_states))
        responses = await self.query(name, keyring_request(key), timeout)
        out = KeyringResponse()
        out.num_nodes = sum(1 for m in self.serf.members() if m.status == "alive")
        out.num_resp = len(responses)
        for node, data in responses.items():
            ok, message, keys = parse_keyring_response(data)
            if not ok:
                out.num_err += 1
                out.messages[node] = message
            for k in keys:
                out.keys[k] = out.keys.get(k, 0) + 1
        return out

    def stats(self) -> dict[str, str]:
        return self.serf.stats()

    # ------------------------------------------------------------------ the pump

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _pump(self) -> None:
        """Perform the core's effects and re-arm the timer."""
        serf = self.serf
        for out in serf.take_outgoing():
            self._send(out)
        events = serf.take_events()
        for event in events:
            self._count(event)
            if isinstance(event, Query):
                event = self._wrap_query(event)
            try:
                self.on_event(event)
            except Exception:  # a consumer's bug must not stop gossip
                log.exception("event handler failed")
        if any(isinstance(e, MemberEvent) for e in events):
            self._schedule_snapshot()
        for addr in serf.take_reconnects():
            self._spawn(self._reconnect(addr))
        if serf.shutdown_reason is not None and self._running and self._conflict_exit is None:
            # Not one of self._tasks: shutdown() cancels and awaits those.
            self._conflict_exit = asyncio.get_running_loop().create_task(self.shutdown())
        self._changed.set()
        if not self._running:
            return
        at = serf.next_deadline()
        if self._timer is not None and at >= self._timer_at - 1e-6:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timer)

    def _count(self, event: MemberEvent | UserEvent | Query) -> None:
        """serf's counters of what it delivers, as Consul names them (network: lan/wan)."""
        if isinstance(event, MemberEvent):
            key = _MEMBER_EVENT_KEYS.get(event.type)
            if key is not None:
                metrics.incr(key, float(len(event.members)), self._labels)
        elif isinstance(event, UserEvent):
            metrics.incr("serf.events", 1.0, self._labels)
        else:
            metrics.incr("serf.queries", 1.0, self._labels)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        if not self._running:
            return
        try:
            self.serf.tick(self._now())
            metrics.gauge(
                "memberlist.health.score",
                float(self.serf.memberlist.awareness.score),
                self._labels,
            )
        except Exception:  # a core bug must not stop the protocol's clock
            self.metrics["tick_errors"] += 1
            mlog.exception("error in gossip timer")
        self._pump()

    def _wrap_query(self, query: Query) -> Query:
        inner = query.respond

        def respond(data: bytes) -> None:
            inner(data)
            self._pump()

        return Query(query.ltime, query.name, query.payload, respond)

    async def _wait(self, cond: Callable[[], bool], timeout: float) -> bool:
        deadline = self._now() + timeout
        while not cond():
            remaining = deadline - self._now()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ I/O

    def _seal(self, data: bytes) -> bytes:
        return self.keyring.encrypt(data) if self.keyring is not None else data

    def _open(self, data: bytes) -> bytes | None:
        if self.keyring is None:
            return data
        try:
            return self.keyring.decrypt(data)
        except DecryptError as exc:
            self.metrics["drop.decrypt"] += 1
            mlog.debug("Failed to decrypt message: %s", exc)
            return None

    def _send(self, out: Outgoing) -> None:
        if out.stream:
            self._spawn(self._send_stream(out))
            return
        try:
            host, port = split_addr(out.dest, self.bind_port)
        except ValueError:
            self.metrics["drop.bad_address"] += 1
            return
        if self._udp is not None:
            try:
                sealed = self._seal(out.data)
                self._udp.sendto(sealed, (host, port))
                metrics.incr("memberlist.udp.sent", float(len(sealed)), self._labels)
            except (OSError, ValueError) as exc:  # e.g. an unroutable address
                self.metrics["send_errors"] += 1
                mlog.debug("send to %s failed: %s", out.dest, exc)

    def _on_unreachable(self, host: str, port: int) -> None:
        self.metrics["udp_unreachable"] += 1
        if self._running:
            self.serf.packet_refused(f"{host}:{port}", self._now())
            self._pump()

    def _on_packet(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._running:
            return
        if len(data) > MAX_PACKET:
            self.metrics["drop.oversized"] += 1
            return
        metrics.incr("memberlist.udp.received", float(len(data)), self._labels)
        plain = self._open(data)
        if plain is None:
            return
        try:
            self.serf.receive_packet(f"{addr[0]}:{addr[1]}", plain, self._now())
        except Exception:  # never let one packet take the agent down
            self.metrics["drop.error"] += 1
            mlog.exception("error handling packet from %s:%d", *addr)
        self._pump()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        src = f"{peer[0]}:{peer[1]}" if peer else "?"
        metrics.incr("memberlist.tcp.accept", 1.0, self._labels)
        try:
            data = await asyncio.wait_for(read_stream_frame(reader), self.profile.tcp_timeout)
            plain = self._open(data)
            if plain is None and self._running:
                # as memberlist: say so in the log and to the sender (a joiner with the wrong
                # gossip key reads why it was refused, not a closed stream)
                why = "No installed keys could decrypt the message"
                mlog.error("failed to receive: %s from=%s", why, src)
                writer.write(error_frame(why))
                await asyncio.wait_for(writer.drain(), self.profile.tcp_timeout)
                return
            if plain is None or not self._running:
                return
            try:
                reply = self.serf.receive_stream(src, plain, self._now())
            except Exception:
                self.metrics["drop.error"] += 1
                mlog.exception("error handling stream from %s", src)
                reply = None
            self._pump()
            if reply is not None:
                writer.write(stream_frame(self._seal(reply)))
                await asyncio.wait_for(writer.drain(), self.profile.tcp_timeout)
        except StreamError as exc:
            self.metrics["drop.malformed_stream"] += 1
            mlog.debug("bad stream from %s: %s", src, exc)
        except (TimeoutError, OSError):
            self.metrics["stream_errors"] += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, dest: str, data: bytes, want_reply: bool) -> bytes | None:
        host, port = split_addr(dest, self.bind_port)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), self.profile.tcp_timeout
        )
        metrics.incr("memberlist.tcp.connect", 1.0, self._labels)
        try:
            frame = stream_frame(self._seal(data))
            writer.write(frame)
            metrics.incr("memberlist.tcp.sent", float(len(frame)), self._labels)
            await asyncio.wait_for(writer.drain(), self.profile.tcp_timeout)
            if not want_reply:
                return None
            reply = await asyncio.wait_for(read_stream_frame(reader), self.profile.tcp_timeout)
            refused = remote_error(reply)
            if refused is not None:
                raise StreamError(refused)
            return self._open(reply)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send_stream(self, out: Outgoing) -> None:
        try:
            reply = await self._exchange(out.dest, out.data, out.expect_reply)
        except ConnectionRefusedError:
            self.metrics["stream_errors"] += 1
            if self._running:
                self.serf.stream_refused(out.dest, self._now())
                self._pump()
            return
        except (TimeoutError, OSError, StreamError, ValueError) as exc:
            self.metrics["stream_errors"] += 1
            mlog.debug("stream to %s failed: %s", out.dest, exc)
            return
        if reply is not None and self._running:
            try:
                self.serf.receive_stream_reply(out.dest, reply, self._now())
            except Exception:
                self.metrics["drop.error"] += 1
                mlog.exception("error handling stream reply from %s", out.dest)
            self._pump()

    async def _join_one(self, addr: str) -> str | None:
        try:
            host, port = split_addr(addr, self.bind_port)
        except ValueError as exc:
            return f"Failed to join {addr}: {exc}"
        dest = join_host_port(host, port)
        try:
            reply = await self._exchange(dest, self.serf.memberlist.join_request(), True)
        except TimeoutError:
            return f"Failed to join {host}: dial tcp {dest}: i/o timeout"
        except ConnectionRefusedError:
            return f"Failed to join {host}: dial tcp {dest}: getsockopt: connection refused"
        except (OSError, StreamError) as exc:
            return f"Failed to join {host}: {exc}"
        if reply is None:
            return f"Failed to join {host}: No installed keys could decrypt the message"
        error = self.serf.memberlist.handle_join_reply(reply, self._now())
        self._pump()
        if error is not None:
            return f"Failed to join {host}: {error}"
        return None

    async def _reconnect(self, addr: str) -> None:
        error = await self._join_one(addr)
        if error is not None:
            mlog.debug("reconnect failed: %s", error)

    async def _rejoin(self, previous: snap.SnapshotState) -> None:
        for name, addr in sorted(previous.alive.items()):
            if name == self.node_name:
                continue
            error = await self._join_one(addr)
            if error is None:
                log.info("Re-joined to previously known node: %s: %s", name, addr)
                self.serf.joined()
                self._pump()
                return
        log.warning("Failed to re-join any previously known node")

    # ------------------------------------------------------------------ snapshot

    def _load_snapshot(self) -> snap.SnapshotState | None:
        if self.snapshot_path is None:
            return None
        try:
            text = self.snapshot_path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("Failed to read snapshot %s: %s", self.snapshot_path, exc)
            return None
        state = snap.parse(text, self.rejoin_after_leave)
        if state.left and self.rejoin_after_leave:
            log.info("Ignoring previous leave in snapshot")
        serf = self.serf
        serf.clock.witness(state.clock)
        serf.event_clock.witness(state.event_clock)
        serf.query_clock.witness(state.query_clock)
        # The clocks were saved as their next value: events at or after it are new.
        serf.event_min_time = state.event_clock
        serf.query_min_time = state.query_clock
        return state

    def _schedule_snapshot(self) -> None:
        if self.snapshot_path is None or self._snapshot_handle is not None or not self._running:
            return
        loop = asyncio.get_running_loop()
        self._snapshot_handle = loop.call_later(0.5, self._write_snapshot)

    def _write_snapshot(self) -> Future[None] | None:
        """Render the known-members snapshot now and hand it to the snapshot thread to write.

        write_atomic fsyncs the file and its directory: ~0.5 ms more than the unsynced write
        this was (p99 6-8 ms, measured on ext4), far more on a busy disk, and the gossip loop
        must not stall on a disk. One thread, so the files land in the order rendered."""
        self._snapshot_handle = None
        if self.snapshot_path is None:
            return None
        serf = self.serf
        state = snap.SnapshotState(
            alive={
                m.name: join_host_port(m.addr, m.port)  # as serf writes it: [v6]:port
                for m in serf.members()
                if m.status == "alive" and m.name != self.node_name
            },
            clock=serf.clock.time(),
            event_clock=serf.event_clock.time(),
            query_clock=serf.query_clock.time(),
            left=serf.state == "left",
        )
        if self._snapshot_writer is None:
            self._snapshot_writer = ThreadPoolExecutor(
                1, thread_name_prefix=f"snapshot-{self.name}"
            )
        return self._snapshot_writer.submit(_store_snapshot, self.snapshot_path, snap.render(state))
