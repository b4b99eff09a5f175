"""agent/server/rpc.py: server RPC frames over a real loopback PortMux, and the client pool."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from agent.api import RPCError
from agent.codec import RPCType, encode_frame, read_frame
from agent.mux import PortMux
from agent.server.rpc import ConnPool, RPCServer

HOST = "127.0.0.1"


async def _start(handler: Any) -> tuple[PortMux, RPCServer, int]:
    mux = PortMux()
    server = RPCServer(mux, handler)
    await mux.start(HOST, 0)
    port = mux.port
    return mux, server, port


async def test_calls_are_concurrent_and_matched_by_seq() -> None:
    release = asyncio.Event()

    async def handler(method: str, args: dict[str, Any]) -> Any:
        if method == "Slow":
            await release.wait()
            return "slow"
        if method == "Fail":
            raise RPCError("No cluster leader")
        return {"Echo": args["X"]}

    mux, _, port = await _start(handler)
    pool = ConnPool()
    try:
        addr = f"{HOST}:{port}"
        slow = asyncio.create_task(pool.call(addr, "Slow", {}))
        # Many fast calls complete while the slow one is still in flight on the same connection.
        fast = await asyncio.gather(*(pool.call(addr, "Echo", {"X": i}) for i in range(50)))
        assert [r["Echo"] for r in fast] == list(range(50))
        assert not slow.done()
        release.set()
        assert await slow == "slow"
        with pytest.raises(RPCError, match="No cluster leader"):
            await pool.call(addr, "Fail", {})
        assert len(pool._conns) == 1
    finally:
        await pool.close()
        await mux.close()


async def test_malformed_input_is_answered_or_closed_not_crashing() -> None:
    async def handler(method: str, args: dict[str, Any]) -> Any:
        return method

    mux, server, port = await _start(handler)
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(bytes([RPCType.CONSUL]))
        writer.write(encode_frame({"Seq": 1, "Method": 5}))  # wrong type
        reply = await asyncio.wait_for(read_frame(reader), 5)
        assert reply["Error"] == "malformed RPC request"
        writer.write(struct.pack(">I", 3) + b"\xc1\xc1\xc1")  # not msgpack -> closed
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert server.malformed == 2
        # A frame header claiming more than the size limit closes that connection too.
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(bytes([RPCType.CONSUL]) + struct.pack(">I", 0xFFFFFFFF))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        # Args that are not a map are treated as empty; a non-map frame gets an error reply.
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(bytes([RPCType.CONSUL]))
        writer.write(encode_frame({"Seq": 7, "Method": "X", "Args": [1, 2]}))
        writer.write(encode_frame([1, 2, 3]))
        first = await asyncio.wait_for(read_frame(reader), 5)
        second = await asyncio.wait_for(read_frame(reader), 5)
        replies = {first["Seq"]: first, second["Seq"]: second}
        assert replies[7]["Result"] == "X" and replies[None]["Error"] == "malformed RPC request"
        writer.close()
        # The server still serves new connections.
        pool = ConnPool()
        assert await pool.call(f"{HOST}:{port}", "Status.Leader", {}) == "Status.Leader"
        await pool.close()
    finally:
        await mux.close()


async def test_unreachable_server_raises_connection_error_and_pool_recovers() -> None:
    async def handler(method: str, args: dict[str, Any]) -> Any:
        return "ok"

    mux, _, port = await _start(handler)
    pool = ConnPool(connect_timeout=2.0)
    addr = f"{HOST}:{port}"
    assert await pool.call(addr, "A", {}) == "ok"
    await mux.close()
    # The pooled connection is now dead: in-flight and new calls fail with a connection error.
    with pytest.raises((ConnectionError, OSError)):
        await pool.call(addr, "A", {}, timeout=5)
    pool.drop(addr)
    with pytest.raises((ConnectionError, OSError)):
        await pool.call(addr, "A", {}, timeout=5)
    await pool.close()
