"""Raft over TCP: msgpack frames on the shared server port, first byte `RPCType.RAFT` (inside
TLS when the server port's TLS says verify_outgoing; see agent/mux.py).

Messages are one-way: a server sends every message to a peer over its own outbound
connection to that peer, and replies travel over the replier's outbound connection. Each
connection starts with a hello frame `{"Version": 1, "ID": raft_id, "Address": "ip:port"}`:
the receiver learns where that server is now (agent/raft/addresses.py), so it can answer a
server restarted on a new address, or one its configuration does not list yet. A malformed or
oversized frame closes that connection and is logged; the server keeps serving. Messages to a
peer that cannot be reached are dropped (raft retransmits), and the connection is retried with
backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agent.codec import MAX_FRAME_SIZE, FrameError, RPCType, encode_frame, read_frame
from agent.mux import PortMux, dial
from agent.raft.messages import Message
from agent.raft.wire import PROTOCOL_VERSION, WireError, decode, encode
from agent.tlsutil import TLSError

log = logging.getLogger("raft")

#: Frames queued for one peer before the oldest are dropped (raft tolerates loss).
MAX_QUEUED = 20_000


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid raft address {address!r}: expected ip:port")
    return host.strip("[]"), int(port)


class _Peer:
    def __init__(self, transport: RaftTransport, address: str) -> None:
        self.t = transport
        self.address = address
        self.queue: list[bytes] = []
        self.wake = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.StreamReader | None = None
        self.closed = False
        self.last_tls_error = ""
        self.task = asyncio.create_task(self._run(), name=f"raft-peer-{address}")

    def send(self, frame: bytes) -> None:
        w = self.writer
        if w is not None and (w.is_closing() or self.reader is None or self.reader.at_eof()):
            self.writer = None  # the peer went away: let the task reconnect
        elif w is not None and not self.queue and w.transport.get_write_buffer_size() < 1 << 20:
            w.write(frame)  # connected and not backed up: no task switch on the hot path
            return
        if len(self.queue) >= MAX_QUEUED:
            del self.queue[: len(self.queue) // 2]
        self.queue.append(frame)
        self.wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.02
        while not self.closed:
            try:
                split_address(self.address)
                # asyncio.timeout inside dial, not wait_for: on 3.11 wait_for can swallow a
                # cancel. Over TLS when the server port's TLS says verify_outgoing.
                reader, writer = await dial(self.address, RPCType.RAFT, self.t.mux.tls, timeout=2.0)
            except TLSError as exc:
                self.queue.clear()
                if str(exc) != self.last_tls_error:  # once per distinct failure, not per retry
                    self.last_tls_error = str(exc)
                    log.error('failed to contact peer: peer=%s error="%s"', self.address, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except (TimeoutError, OSError, ValueError) as exc:
                self.queue.clear()
                log.debug("failed to connect to %s: %s", self.address, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            self.last_tls_error = ""
            connected_at = loop.time()
            try:
                hello = {
                    "Version": PROTOCOL_VERSION,
                    "ID": self.t.node_id,
                    "Address": self.t.address,
                }
                writer.write(encode_frame(hello))
                self.writer, self.reader = writer, reader
                while not self.closed:
                    if not self.queue:
                        self.wake.clear()
                        await self.wake.wait()
                    if reader.at_eof() or writer.is_closing():
                        raise ConnectionError("connection closed by peer")
                    frames, self.queue = self.queue, []
                    writer.write(b"".join(frames))
                    await writer.drain()
            except (OSError, ConnectionError) as exc:
                log.warning("failed to send to %s: %s", self.address, exc)
                self.queue.clear()
            finally:
                self.writer = self.reader = None
                writer.transport.abort()
            # A peer that accepts and drops at once (shutting down) is retried with backoff.
            if loop.time() - connected_at < 1.0:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            else:
                backoff = 0.02

    def close(self) -> None:
        self.closed = True
        self.wake.set()
        self.task.cancel()


class RaftTransport:
    def __init__(
        self,
        node_id: str,
        address: str,
        mux: PortMux,
        on_message: Callable[[Message], None],
        resolve: Callable[[str], str | None],
        on_hello: Callable[[str, str], None] | None = None,
        max_frame: int = MAX_FRAME_SIZE,
    ) -> None:
        self.node_id = node_id
        self.address = address
        self.on_hello = on_hello
        self.mux = mux
        self.on_message = on_message
        self.resolve = resolve
        self.max_frame = max_frame
        self._peers: dict[str, _Peer] = {}
        self._inbound: set[asyncio.Task[None]] = set()
        self._inbound_writers: set[asyncio.StreamWriter] = set()
        self._closed = False
        self.bad_frames = 0

    def start(self) -> None:
        self.mux.register(RPCType.RAFT, self._serve, servers_only=True)

    def send(self, m: Message) -> None:
        address = self.resolve(m.to) or m.to
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _Peer(self, address)
        peer.send(encode_frame(encode(m)))

    def prune(self, keep: set[str]) -> None:
        """Stop the outbound connections to addresses no longer in the configuration."""
        for address in [a for a in self._peers if a not in keep]:
            self._peers.pop(address).close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        peername = writer.get_extra_info("peername")
        if self._closed:
            writer.transport.abort()
            return
        self._inbound_writers.add(writer)
        try:
            hello = await read_frame(reader, self.max_frame)
            if not isinstance(hello, dict) or hello.get("Version") != PROTOCOL_VERSION:
                raise WireError(f"bad handshake {hello!r:.80}")
            self._hello(hello)
            while not self._closed:
                obj = await read_frame(reader, self.max_frame)
                self.on_message(decode(obj))
        except EOFError:
            pass
        except (FrameError, WireError) as exc:
            self.bad_frames += 1
            log.error("failed to decode incoming command from %s: %s", peername, exc)
        finally:
            self._inbound_writers.discard(writer)
            if task is not None:
                self._inbound.discard(task)

    def _hello(self, hello: dict[object, object]) -> None:
        """Note where the server that opened this connection says it is (a hello from an
        older senate names no address)."""
        sid, address = hello.get("ID"), hello.get("Address")
        if self.on_hello is None or not isinstance(sid, str) or not isinstance(address, str):
            return
        try:
            split_address(address)
        except ValueError:
            return
        if 0 < len(sid) <= 256:
            self.on_hello(sid, address)

    async def close(self) -> None:
        self._closed = True
        # Drop inbound connections too: peers keep theirs open, and raft stopping must not
        # leave them served until the mux closes.
        for w in list(self._inbound_writers):
            w.transport.abort()
        tasks = [p.task for p in self._peers.values()]
        for p in self._peers.values():
            p.close()
        self._peers.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
