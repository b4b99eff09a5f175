"""Random bytes on the CLI RPC port close that connection only; the server keeps serving."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from agent_double import AgentDouble
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.rpc_cli import CLIRPCServer

pytestmark = pytest.mark.timeout(60)


def test_random_bytes_never_take_the_server_down() -> None:
    loop = asyncio.new_event_loop()
    server = CLIRPCServer(AgentDouble())  # the handshake is all it is asked for
    loop.run_until_complete(server.start("127.0.0.1", 0))

    async def garbage_then_handshake(data: bytes) -> dict[str, object]:
        _, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(data)
        await w.drain()
        w.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            msgpack.packb({"Command": "handshake", "Seq": 9}) + msgpack.packb({"Version": 1})
        )
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(4096), 5)
                assert chunk, "server closed a fresh connection"
                unpacker.feed(chunk)
                for obj in unpacker:
                    return dict(obj)
        finally:
            writer.close()

    @settings(max_examples=60, deadline=None)
    @given(st.binary(max_size=200))
    def check(data: bytes) -> None:
        assert loop.run_until_complete(garbage_then_handshake(data)) == {"Seq": 9, "Error": ""}

    try:
        check()
    finally:
        loop.run_until_complete(server.stop())
        loop.close()
