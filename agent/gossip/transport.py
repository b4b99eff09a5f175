"""The asyncio network shell of the gossip layer: one UDP socket and one TCP listener.

UDP carries probes and gossip (one datagram = one compound message). TCP carries
push/pull, the fallback ping and messages too big for a datagram: one request frame and
at most one reply frame per connection, each a 4-byte big-endian length and the body.
Both are sealed by the keyring when encryption is on. Nothing here knows the protocol.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

#: Largest stream frame accepted (a push/pull of ~10k members fits).
MAX_STREAM_FRAME = 16 * 1024 * 1024
#: Largest datagram accepted.
MAX_PACKET = 65536
_LEN = struct.Struct(">I")


class StreamError(Exception):
    """A stream frame that is truncated or over the size limit."""


def split_addr(addr: str, default_port: int) -> tuple[str, int]:
    """ "ip", "ip:port" or "[v6]:port" -> (host, port); ValueError with the reason."""
    addr = addr.strip()
    if not addr:
        raise ValueError("empty address")
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif addr.count(":") == 1:
        host, port_text = addr.split(":")
    else:
        host, port_text = addr, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in address {addr!r}")
    return host, int(port_text)


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


class UDPEndpoint(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_packet = on_packet
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.on_packet(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the probe logic deals with silence.
        pass

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)
