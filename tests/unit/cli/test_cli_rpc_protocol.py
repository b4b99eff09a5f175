"""Consul 0.7's CLI RPC on the wire: handshake, header/body pairs, errors, monitor/stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
from agent_double import AgentDouble, running

from agent.rpc_cli import CLIRPCServer, decode_addr

pytestmark = pytest.mark.timeout(60)


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.unpacker = msgpack.Unpacker(raw=False)

    def send(self, *objs: Any) -> None:
        self.writer.write(b"".join(msgpack.packb(o) for o in objs))

    async def recv(self) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                data = await asyncio.wait_for(self.reader.read(65536), 5)
                if not data:
                    raise EOFError from None
                self.unpacker.feed(data)


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Wire, AgentDouble]]:
    async with running(AgentDouble()) as agent:
        server = CLIRPCServer(agent)
        await server.start("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            yield Wire(reader, writer), agent
        finally:
            writer.close()
            await server.stop()


async def test_handshake_is_required_first(wire: tuple[Wire, AgentDouble]) -> None:
    w, _ = wire
    w.send({"Command": "stats", "Seq": 1})
    assert await w.recv() == {"Seq": 1, "Error": "Handshake required"}
    w.send({"Command": "handshake", "Seq": 2}, {"Version": 2})
    assert await w.recv() == {"Seq": 2, "Error": "Unsupported version"}
    w.send({"Command": "handshake", "Seq": 3}, {"Version": 1})
    assert await w.recv() == {"Seq": 3, "Error": ""}
    w.send({"Command": "handshake", "Seq": 4}, {"Version": 1})
    assert await w.recv() == {"Seq": 4, "Error": "Handshake already performed"}


async def test_members_stats_and_unknown_command(wire: tuple[Wire, AgentDouble]) -> None:
    w, _ = wire
    w.send({"Command": "handshake", "Seq": 1}, {"Version": 1})
    await w.recv()
    w.send({"Command": "members-lan", "Seq": 2})
    assert await w.recv() == {"Seq": 2, "Error": ""}
    members = (await w.recv())["Members"]
    assert members[0]["Name"] == "server1"
    assert members[0]["Status"] == "alive"
    assert decode_addr(members[0]["Addr"]) == "10.12.10.37"
    w.send({"Command": "stats", "Seq": 3})
    assert await w.recv() == {"Seq": 3, "Error": ""}
    assert (await w.recv())["build"]["version"] == "0.7.2"
    w.send({"Command": "explode", "Seq": 4})
    assert await w.recv() == {"Seq": 4, "Error": "Unsupported command"}


async def test_join_error_carries_a_body(wire: tuple[Wire, AgentDouble]) -> None:
    w, _ = wire
    w.send({"Command": "handshake", "Seq": 1}, {"Version": 1})
    await w.recv()
    w.send({"Command": "join", "Seq": 2}, {"Existing": ["10.99.1.1"], "WAN": False})
    header = await w.recv()
    assert header["Seq"] == 2 and "Failed to join 10.99.1.1" in header["Error"]
    assert await w.recv() == {"Num": 0}
    w.send({"Command": "join", "Seq": 3}, {"Existing": "not-a-list"})
    assert await w.recv() == {"Seq": 3, "Error": "Malformed request"}
    assert await w.recv() == {"Num": 0}


async def test_monitor_streams_until_stopped(wire: tuple[Wire, AgentDouble]) -> None:
    w, agent = wire
    agent.log_lines = ["first", "second"]
    w.send({"Command": "handshake", "Seq": 1}, {"Version": 1})
    await w.recv()
    w.send({"Command": "monitor", "Seq": 2}, {"LogLevel": "debug"})
    assert await w.recv() == {"Seq": 2, "Error": ""}
    assert [await w.recv() for _ in range(4)] == [
        {"Seq": 2, "Error": ""},
        {"Log": "first"},
        {"Seq": 2, "Error": ""},
        {"Log": "second"},
    ]
    w.send({"Command": "stop", "Seq": 3}, {"Stop": 2})
    assert await w.recv() == {"Seq": 3, "Error": ""}
    w.send({"Command": "monitor", "Seq": 4}, {"LogLevel": "LOUD"})
    assert await w.recv() == {"Seq": 4, "Error": "Unknown log level: LOUD"}


async def test_garbage_closes_only_that_connection(wire: tuple[Wire, AgentDouble]) -> None:
    w, _ = wire
    w.writer.write(b"\xc1\xc1\xc1")  # 0xc1 is never used in msgpack
    with pytest.raises((EOFError, ConnectionError)):
        await w.recv()


@pytest.mark.parametrize("addr", ["10.12.10.37", "192.168.200.1", "10.231.255.128", "fd00::1"])
def test_member_addresses_survive_the_wire_whatever_their_bytes(addr: str) -> None:
    """Addr travels as net.IP bytes in a msgpack raw string (Consul 0.7); octets >= 128 are not
    UTF-8, and the CLI's reader (raw=False, surrogateescape) must still give them back."""
    from agent.rpc_cli import encode_addr

    wire = msgpack.packb({"Addr": encode_addr(addr)}, use_bin_type=False)
    reader = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    reader.feed(wire)
    assert decode_addr(next(reader)["Addr"]) == addr
