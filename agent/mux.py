"""The server port (8300): one TCP port, protocols selected by the first byte, both ends.

`PortMux` listens. Raft registers `RPCType.RAFT`, server RPC `RPCType.CONSUL`. A connection
that opens with `RPCType.TLS` is upgraded to TLS with the server's certificate (requiring a
client certificate with verify_incoming), then its next byte selects the protocol as on a
plain connection (TLS inside TLS is refused, as Consul refuses it). With verify_incoming a
plain connection is refused; so is a raft connection whose client certificate does not name
server.<datacenter>.<domain> when verify_server_hostname is also on (Consul's
AuthorizeServerConn). The first byte and the handshake must come within HANDSHAKE_TIMEOUT
(Consul's rpc_handshake_timeout). A refused or unknown connection is logged and closed; the
listener keeps serving.

The listener accepts sockets itself and reads the first byte with one recv of one byte, so
the TLS ClientHello behind it is still in the kernel's buffer when the handshake starts.

`dial` is the other end: it opens a connection to a server, upgrades it to TLS when the
agent's internal RPC TLS says verify_outgoing, checks the server's name with
verify_server_hostname (the target datacenter's), and writes the protocol byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from agent.codec import RPCType
from agent.limits import ConnsPerClient
from agent.tlsutil import RPCTLS, TLSError, describe, verify_name

log = logging.getLogger("agent.server.rpc")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: Consul's rpc_handshake_timeout: the first byte (and a TLS handshake) must come this soon.
HANDSHAKE_TIMEOUT = 5.0


def _from(peer: object) -> str:
    """memberlist.LogConn's `from=ip:port`."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"from={peer[0]}:{peer[1]}"
    return "from=unknown"


class PortMux:
    def __init__(self, tls: RPCTLS | None = None, *, max_conns_per_client: int = 100) -> None:
        self.tls = tls
        #: limits.rpc_max_conns_per_client (0: no limit), as Consul's default
        self.per_client = ConnsPerClient(max_conns_per_client)
        self._handlers: dict[int, Handler] = {}
        self._servers_only: set[int] = set()
        self._sockets: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []
        self._conns: set[asyncio.Task[None]] = set()
        self.rejected = 0
        self.handshake_timeout = HANDSHAKE_TIMEOUT

    def register(self, kind: RPCType, handler: Handler, *, servers_only: bool = False) -> None:
        """Serve connections of `kind` with `handler`; `servers_only` for raft, whose TLS
        client must hold a server certificate of this datacenter under verify_server_hostname."""
        self._handlers[int(kind)] = handler
        if servers_only:
            self._servers_only.add(int(kind))

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when started with port 0)."""
        return int(self._sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, _, _, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, socket.SOCK_STREAM)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                if port == 0:  # every address family on the one port the OS chose
                    port = sock.getsockname()[1]
                sock.listen(1024)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._acceptors = [
            asyncio.create_task(self._accept_loop(s), name="server-port-accept")
            for s in self._sockets
        ]

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, peer = await loop.sock_accept(listener)
            except OSError as exc:
                log.error("failed to accept RPC conn: error=%s", exc)
                await asyncio.sleep(0.05)
                continue
            sock.setblocking(False)
            client = str(peer[0]) if isinstance(peer, tuple) else "?"
            if not self.per_client.admit(client):
                self.rejected += 1
                sock.close()
                if self.per_client.log_due.due(client):
                    log.error(
                        "rejecting RPC conn from %s because rpc_max_conns_per_client (%d) exceeded",
                        client,
                        self.per_client.limit,
                    )
                continue
            task = asyncio.create_task(self._serve(sock, peer))
            self._conns.add(task)
            task.add_done_callback(self._conns.discard)
            task.add_done_callback(functools.partial(self.per_client.release, client))

    async def _serve(self, sock: socket.socket, peer: object) -> None:
        conn = _from(peer)
        #: the streams once made: from then on they own the socket (closing it closes them)
        writers: list[asyncio.StreamWriter] = []
        try:
            try:
                async with asyncio.timeout(self.handshake_timeout):
                    kind, reader, tls = await self._open(sock, conn, writers)
            except TimeoutError:
                self.rejected += 1
                log.error("failed to read byte: conn=%s error=i/o timeout", conn)
                return
            if kind is None or reader is None:
                return
            writer = writers[0]
            if self._accepts(kind, writer, conn, tls=tls):
                await self._handlers[kind](reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels open connections; ending quietly is all there is to do.
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            if writers:
                writers[0].close()
            else:
                sock.close()

    async def _open(
        self, sock: socket.socket, conn: str, writers: list[asyncio.StreamWriter]
    ) -> tuple[int | None, asyncio.StreamReader | None, bool]:
        """Read the first byte, and for TLS do the handshake and read the byte inside it:
        (protocol byte or None when refused, reader, over TLS); the writer goes to `writers`."""
        loop = asyncio.get_running_loop()
        first = await loop.sock_recv(sock, 1)
        if not first:
            return None, None, False
        if first[0] != RPCType.TLS:
            if self.tls is not None and self.tls.verify_incoming:
                self.rejected += 1
                log.warning("Non-TLS connection attempted with VerifyIncoming set: conn=%s", conn)
                return None, None, False
            reader, writer = await _streams(sock, None, self.handshake_timeout)
            writers.append(writer)
            return first[0], reader, False
        ctx = self.tls.incoming if self.tls is not None else None
        if ctx is None:
            self.rejected += 1
            log.error("failed to read byte: conn=%s error=tls: no certificates configured", conn)
            return None, None, False
        try:
            # (the handshake's own timeout is a backstop: the caller's, shorter, ends it first)
            reader, writer = await _streams(sock, ctx, 2 * self.handshake_timeout)
        except (OSError, EOFError) as exc:
            self.rejected += 1
            log.error("failed to read byte: conn=%s error=%s", conn, describe(exc))
            return None, None, False
        writers.append(writer)
        try:
            inner = await reader.read(1)
        except (OSError, EOFError) as exc:
            self.rejected += 1
            log.error("failed to read byte: conn=%s error=%s", conn, describe(exc))
            inner = b""
        return (inner[0] if inner else None), reader, True

    def _accepts(self, kind: int, writer: asyncio.StreamWriter, conn: str, *, tls: bool) -> bool:
        if kind == RPCType.TLS and tls:
            self.rejected += 1
            log.error("TLS connection attempting to establish inner TLS connection: conn=%s", conn)
            return False
        if kind not in self._handlers:
            self.rejected += 1
            log.error("unrecognized RPC byte: byte=%d conn=%s", kind, conn)
            return False
        return not (tls and kind in self._servers_only and not self._authorized(writer, conn))

    def _authorized(self, writer: asyncio.StreamWriter, conn: str) -> bool:
        """Consul's AuthorizeServerConn: with verify_incoming and verify_server_hostname, the
        client certificate must name a server of this datacenter."""
        tls = self.tls
        if tls is None or not (tls.verify_incoming and tls.verify_server_hostname):
            return True
        expected = tls.server_name()
        try:
            verify_name(writer.get_extra_info("peercert"), expected)
        except TLSError as exc:
            self.rejected += 1
            log.warning(
                "AuthorizeServerConn failed certificate validation for certificate with a "
                "SAN.DNSName of %s: %s: %s operation=%s",
                expected,
                exc,
                conn,
                "raft RPC",
            )
            return False
        return True

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    async def close(self) -> None:
        for task in self._acceptors:
            task.cancel()
        self._close_sockets()
        tasks = [*self._acceptors, *self._conns]
        self._acceptors = []
        for task in list(self._conns):
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)


async def _streams(
    sock: socket.socket, ctx: ssl.SSLContext | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over an accepted socket, TLS (the server's side) with `ctx`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    if ctx is not None:
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, sock, ssl=ctx, ssl_handshake_timeout=timeout
        )
    else:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid address {address!r}: expected ip:port")
    return host.strip("[]"), int(port)


async def dial(
    address: str,
    kind: RPCType,
    tls: RPCTLS | None,
    *,
    datacenter: str | None = None,
    timeout: float = 5.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the server port at `address` for protocol `kind`, over TLS when `tls` says
    verify_outgoing. Raises OSError / TimeoutError when the server cannot be reached, TLSError
    (Go's words) when the handshake or the certificate check fails; never waits past
    `timeout`."""
    host, port = split_address(address)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        if tls is None or tls.outgoing is None:
            writer.write(bytes([kind]))
            return reader, writer
        try:
            writer.write(bytes([RPCType.TLS]))
            name = tls.server_name(datacenter) if tls.verify_server_hostname else None
            await writer.start_tls(tls.outgoing, server_hostname=name)
            if name is not None:
                verify_name(writer.get_extra_info("peercert"), name)
            writer.write(bytes([kind]))
        except TLSError:
            writer.transport.abort()
            raise
        except (OSError, EOFError) as exc:
            writer.transport.abort()
            raise TLSError(describe(exc)) from None
        except BaseException:
            with contextlib.suppress(Exception):
                writer.transport.abort()
            raise
    return reader, writer
