"""DNSServer on real loopback sockets: UDP, TCP (length-prefixed, several queries a
connection), recursors over UDP with a bounded timeout, and a clean stop."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from fake_catalog import FakeCatalogAgent

from agent.api import AgentAPI
from agent.dns.server import DNSServer

HOST = "127.0.0.1"


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)


async def udp_ask(addr: tuple[str, int], packet: bytes, timeout: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Client, remote_addr=addr)
    try:
        transport.sendto(packet)
        return await asyncio.wait_for(proto.replies.get(), timeout)
    finally:
        transport.close()


class _Upstream(asyncio.DatagramProtocol):
    """A recursor that answers every A query with 192.0.2.1 (or stays silent)."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.seen: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        req = DNSRecord.parse(data)
        self.seen.append(str(req.q.qname))
        if self.silent or self.transport is None:
            return
        reply = req.reply()
        reply.add_answer(RR(req.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.1")))
        self.transport.sendto(reply.pack(), addr)


@pytest.fixture
async def running(catalog: FakeCatalogAgent) -> AsyncIterator[DNSServer]:
    server = DNSServer(cast(AgentAPI, catalog), datacenter="dc1")
    await server.start(HOST, 0)
    try:
        yield server
    finally:
        await server.stop()


async def test_udp_and_tcp(running: DNSServer) -> None:
    assert running.address is not None
    req = DNSRecord.question("n2.node.consul")
    r = DNSRecord.parse(await udp_ask(running.address, req.pack()))
    assert r.header.id == req.header.id and [str(a.rdata) for a in r.rr] == ["10.0.0.2"]

    reader, writer = await asyncio.open_connection(*running.address)
    try:
        for name, want in (("n1.node.consul", "127.0.0.1"), ("n3.node.consul", "10.0.0.3")):
            packet = DNSRecord.question(name).pack()
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
            r = DNSRecord.parse(await reader.readexactly(size))
            assert [str(a.rdata) for a in r.rr] == [want]
    finally:
        writer.close()


async def test_garbage_over_udp_keeps_serving(running: DNSServer) -> None:
    assert running.address is not None
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=running.address)
    for junk in (b"\x00", b"\xff" * 11, b"\x00\x01\x80" + b"\x00" * 20):
        transport.sendto(junk)
    transport.close()
    r = DNSRecord.parse(await udp_ask(running.address, DNSRecord.question("n1.node.consul").pack()))
    assert r.header.rcode == RCODE.NOERROR
    assert running.stats.dropped == 3


async def _upstream(silent: bool = False) -> tuple[asyncio.DatagramTransport, _Upstream, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _Upstream(silent), local_addr=(HOST, 0)
    )
    return transport, proto, transport.get_extra_info("sockname")[1]


async def test_outside_names_go_to_the_recursor(catalog: FakeCatalogAgent) -> None:
    up_transport, upstream, port = await _upstream()
    server = DNSServer(cast(AgentAPI, catalog), datacenter="dc1", recursors=[f"{HOST}:{port}"])
    try:
        req = DNSRecord.question("example.org")
        r = DNSRecord.parse(await server.handle(req.pack()) or b"")
        assert r.header.id == req.header.id and [str(a.rdata) for a in r.rr] == ["192.0.2.1"]
        assert upstream.seen == ["example.org."]
        # In the domain, recursion is never used, and RA is advertised.
        r = DNSRecord.parse(await server.handle(DNSRecord.question("n1.node.consul").pack()) or b"")
        assert r.header.ra == 1 and upstream.seen == ["example.org."]
        # A reverse name no node has goes to the recursor too.
        await server.handle(DNSRecord.question("7.7.7.7.in-addr.arpa", "PTR").pack())
        assert upstream.seen[-1] == "7.7.7.7.in-addr.arpa."
    finally:
        up_transport.close()


async def test_silent_recursor_times_out_to_servfail(catalog: FakeCatalogAgent) -> None:
    up_transport, upstream, port = await _upstream(silent=True)
    server = DNSServer(
        cast(AgentAPI, catalog),
        datacenter="dc1",
        recursors=[f"{HOST}:{port}"],
        recursor_timeout=0.2,
    )
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = DNSRecord.parse(await server.handle(DNSRecord.question("example.org").pack()) or b"")
        assert r.header.rcode == RCODE.SERVFAIL and r.header.ra == 1
        assert loop.time() - started < 2.0 and upstream.seen == ["example.org."]
    finally:
        up_transport.close()


async def test_stop_releases_the_ports(catalog: FakeCatalogAgent) -> None:
    server = DNSServer(cast(AgentAPI, catalog), datacenter="dc1")
    await server.start(HOST, 0)
    assert server.address is not None
    port = server.address[1]
    reader, writer = await asyncio.open_connection(HOST, port)  # an idle TCP client
    await server.stop()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by stop()
    writer.close()
    again = DNSServer(cast(AgentAPI, catalog), datacenter="dc1")
    await again.start(HOST, port)
    await again.stop()


async def test_start_dns_hook_reads_the_agent_config(catalog: FakeCatalogAgent) -> None:
    from types import SimpleNamespace

    from agent.dns.config import build_dns_config
    from agent.dns.server import start_dns

    cfg = SimpleNamespace(
        datacenter="dc1",
        client_addr="127.0.0.2 127.0.0.3",
        addresses=SimpleNamespace(dns=""),
        ports=SimpleNamespace(dns=0),
        dns_config=build_dns_config(domain="senate.", dns_config={"node_ttl": "7s"}),
    )
    server = await start_dns(cast(AgentAPI, catalog), cfg)
    assert server.address is not None
    try:
        assert server.address[0] == "127.0.0.2"
        packet = DNSRecord.question("n2.node.senate").pack()
        r = DNSRecord.parse(await udp_ask(server.address, packet))
        assert [(str(a.rdata), a.ttl) for a in r.rr] == [("10.0.0.2", 7)]
    finally:
        await server.stop()


async def test_tcp_clients_reach_the_recursor_over_tcp(catalog: FakeCatalogAgent) -> None:
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        req = DNSRecord.parse(await reader.readexactly(size))
        seen.append(str(req.q.qname))
        reply = req.reply()
        reply.add_answer(RR(req.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.9")))
        wire = reply.pack()
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(serve, HOST, 0)
    port = upstream.sockets[0].getsockname()[1]
    server = DNSServer(cast(AgentAPI, catalog), datacenter="dc1", recursors=[f"{HOST}:{port}"])
    try:
        wire = await server.handle(DNSRecord.question("big.example").pack(), tcp=True)
        r = DNSRecord.parse(wire or b"")
        assert [str(a.rdata) for a in r.rr] == ["192.0.2.9"] and seen == ["big.example."]
    finally:
        upstream.close()
        await upstream.wait_closed()
