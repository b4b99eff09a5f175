"""The asyncio network shell of the gossip layer: one UDP socket and one TCP listener.

UDP carries probes and gossip (one datagram = one compound message). TCP carries
push/pull, the fallback ping and messages too big for a datagram: one request frame and
at most one reply frame per connection, each a 4-byte big-endian length and the body.
Both are sealed by the keyring when encryption is on. Nothing here knows the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
from collections.abc import Callable
from typing import cast

from agent.netaddr import InvalidPortError, split_host_port

#: Largest stream frame accepted (a push/pull of ~10k members fits).
MAX_STREAM_FRAME = 16 * 1024 * 1024
#: Largest datagram accepted.
MAX_PACKET = 65536
_LEN = struct.Struct(">I")
# Linux's extended socket errors (ip(7) IP_RECVERR, ipv6(7) IPV6_RECVERR): with them on, an ICMP
# "port unreachable" for a datagram we sent is queued on the socket, with the datagram's
# destination, instead of being dropped as it is for unconnected UDP sockets.
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
#: struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, pad, ee_info, ee_data.
_EXT_ERR = struct.Struct("=IBBBBII")
_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3


class StreamError(Exception):
    """A stream frame that is truncated or over the size limit."""


def split_addr(addr: str, default_port: int) -> tuple[str, int]:
    """ "ip", "ip:port", "[v6]" or "[v6]:port" -> (host, port); ValueError with the reason."""
    addr = addr.strip()
    if not addr:
        raise ValueError("empty address")
    try:
        return split_host_port(addr, default_port)
    except InvalidPortError:
        raise ValueError(f"invalid port in address {addr!r}") from None


async def read_stream_frame(reader: asyncio.StreamReader) -> bytes:
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as exc:
        raise StreamError("truncated frame header") from exc
    (size,) = _LEN.unpack(head)
    if size > MAX_STREAM_FRAME:
        raise StreamError(f"frame of {size} bytes exceeds limit {MAX_STREAM_FRAME}")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise StreamError("truncated frame body") from exc


def stream_frame(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


#: how a stream's receiver tells the sender why it dropped the stream, in the clear (as
#: memberlist's errorResp): no encrypted frame (version byte 1) or message starts so
_ERROR_PREFIX = b"\xffmemberlist error: "


def error_frame(text: str) -> bytes:
    return stream_frame(_ERROR_PREFIX + text.encode("utf-8", "replace")[:512])


def remote_error(data: bytes) -> str | None:
    """The error text of a frame `error_frame` made, else None."""
    if not data.startswith(_ERROR_PREFIX):
        return None
    return data[len(_ERROR_PREFIX) :].decode("utf-8", "replace")


class UDPEndpoint(asyncio.DatagramProtocol):
    """The gossip datagram socket. `on_unreachable(host, port)` is told when a datagram we sent
    to host:port was answered with ICMP port unreachable (nothing listens there), where the
    OS reports it (Linux); elsewhere that is silence, as for any lost packet."""

    def __init__(
        self,
        on_packet: Callable[[bytes, tuple[str, int]], None],
        on_unreachable: Callable[[str, int], None] | None = None,
    ) -> None:
        self.on_packet = on_packet
        self.on_unreachable = on_unreachable
        self.transport: asyncio.DatagramTransport | None = None
        self._errq: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if self.on_unreachable is None or sock is None:
            return
        try:
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            # A duplicate of the descriptor to read the error queue with: event loops hand out
            # socket wrappers without recvmsg().
            self._errq = socket.fromfd(sock.fileno(), sock.family, socket.SOCK_DGRAM)
        except (OSError, AttributeError, ValueError):
            self._errq = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._errq is not None:
            with contextlib.suppress(OSError):
                self._errq.close()
            self._errq = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_packet(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # With IP_RECVERR on, a pending ICMP error shows up here; read the queue so the
        # socket stops reporting it, and pass on every "port unreachable".
        self._drain_errors()

    def _drain_errors(self) -> None:
        errq = self._errq
        if errq is None:
            return
        for _ in range(64):
            try:
                _, anc, _, addr = errq.recvmsg(0, 512, _MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            for _level, _type, data in anc:
                if len(data) < _EXT_ERR.size:
                    continue
                ee_errno, origin, *_ = _EXT_ERR.unpack_from(data)
                if (
                    ee_errno == errno.ECONNREFUSED
                    and origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6)
                    and isinstance(addr, tuple)
                    and self.on_unreachable is not None
                ):
                    self.on_unreachable(str(addr[0]), int(addr[1]))

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        errq = self._errq
        if errq is not None:
            # With IP_RECVERR on, an ICMP error for an earlier datagram (to a member that is
            # gone) is also reported by the next send on the socket, whatever its destination,
            # and that datagram is dropped: the loop's transport would lose a probe or a
            # gossip message to a live member. So send here, and when the send reports such an
            # error, read the error queue (which clears it) and send again.
            for _ in range(4):
                try:
                    errq.sendto(data, socket.MSG_DONTWAIT, addr)
                    return
                except ConnectionRefusedError:
                    self._drain_errors()
                except (BlockingIOError, InterruptedError):
                    break  # a full socket buffer: the transport queues it
                except OSError:
                    break  # e.g. unreachable network: the transport reports it as usual
        self.transport.sendto(data, addr)
