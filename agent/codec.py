"""msgpack framing shared by every TCP protocol of the agent.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack. Every
TCP connection to the server port (8300) starts with one byte that selects the protocol
(the values are Consul's `pool.RPCType`), so raft and server RPC share one port.
"""

from __future__ import annotations

import asyncio
import enum
import struct
from typing import Any

import msgpack

#: Largest frame any protocol accepts; larger ones close the connection.
MAX_FRAME_SIZE = 64 * 1024 * 1024
_LEN = struct.Struct(">I")


class RPCType(enum.IntEnum):
    """First byte of a connection to the server port, as Consul's pool.RPCType."""

    CONSUL = 0
    RAFT = 1
    MULTIPLEX = 2
    TLS = 3
    MULTIPLEX_V2 = 4
    SNAPSHOT = 5
    GOSSIP = 6


class FrameError(Exception):
    """A frame that is malformed, truncated or over the size limit."""


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"malformed msgpack: {exc}") from exc


def encode_frame(obj: Any) -> bytes:
    body = packb(obj)
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, max_size: int = MAX_FRAME_SIZE) -> Any:
    """Read one frame; raises EOFError on a clean close, FrameError on a bad frame."""
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise EOFError from exc
        raise FrameError("truncated frame header") from exc
    (size,) = _LEN.unpack(head)
    if size > max_size:
        raise FrameError(f"frame of {size} bytes exceeds limit {max_size}")
    large = size > LARGE_FRAME
    if large:
        if LARGE_FRAMES.in_flight + size > LARGE_FRAMES.budget:
            raise FrameError(
                f"frame of {size} bytes refused: {LARGE_FRAMES.in_flight} bytes of large frames"
                f" are being read already (limit {LARGE_FRAMES.budget})"
            )
        LARGE_FRAMES.in_flight += size
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise FrameError("truncated frame body") from exc
    finally:
        if large:
            LARGE_FRAMES.in_flight -= size
    return unpackb(body)


#: a frame past this size is read only while the process-wide budget below allows it
LARGE_FRAME = 1024 * 1024


class _FrameBudget:
    """What all connections' large frames may hold in memory at once while being read: a
    peer announcing huge frames (no TLS, so anyone who reaches the port) costs the process
    at most this much, not frame size times connections. One event loop: no lock needed."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.in_flight = 0


LARGE_FRAMES = _FrameBudget(2 * MAX_FRAME_SIZE)
