"""Queries forwarded to a recursor (names outside the domain), over UDP or TCP, each bounded
by recursor_timeout; the server decides which recursor and what to answer on failure."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

HEADER_SIZE = 12
_QR_BIT = 0x80


async def exchange_udp(host: str, port: int, packet: bytes, timeout: float) -> bytes:
    """One query to a recursor over UDP: its first reply with our ID."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Exchange(packet[:2], answer), remote_addr=(host, port)
    )
    try:
        transport.sendto(packet)
        async with asyncio.timeout(timeout):
            return await answer
    finally:
        transport.close()


async def exchange_tcp(host: str, port: int, packet: bytes, timeout: float) -> bytes:
    """One query to a recursor over TCP: its first reply with our ID."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
                if len(data) >= HEADER_SIZE and data[:2] == packet[:2]:
                    return data
        finally:
            writer.close()


class _Exchange(asyncio.DatagramProtocol):
    """One query to a recursor: the first reply with our ID resolves the future."""

    def __init__(self, query_id: bytes, answer: asyncio.Future[bytes]) -> None:
        self._id = query_id
        self._answer = answer

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if (
            len(data) >= HEADER_SIZE
            and data[:2] == self._id
            and data[2] & _QR_BIT
            and not self._answer.done()
        ):
            self._answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._answer.done():
            self._answer.set_exception(exc)
