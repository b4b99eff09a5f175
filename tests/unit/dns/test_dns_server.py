"""DNSServer.handle against a fake catalog: Consul 0.7's answers, packet by packet."""

from __future__ import annotations

import struct
from typing import Any, cast

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from fake_catalog import FakeCatalogAgent
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.api import AgentAPI
from agent.dns.names import reverse_name
from agent.dns.server import DNSServer


def make(agent: FakeCatalogAgent, **kw: Any) -> DNSServer:
    return DNSServer(cast(AgentAPI, agent), datacenter="dc1", **kw)


async def ask(server: DNSServer, name: str, qtype: str = "A", *, tcp: bool = False) -> DNSRecord:
    wire = await server.handle(DNSRecord.question(name, qtype).pack(), tcp=tcp)
    assert wire is not None
    return DNSRecord.parse(wire)


def answers(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr)


async def test_node_lookup_a_record(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    r = await ask(server, "n2.node.consul")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1 and r.header.qr == 1
    assert r.header.ra == 0  # no recursors
    assert [(str(rr.rname), rr.rtype, rr.ttl, str(rr.rdata)) for rr in r.rr] == [
        ("n2.node.consul.", QTYPE.A, 0, "10.0.0.2")
    ]
    method, args = catalog.calls[-1]
    assert method == "Catalog.NodeServices"
    # the agent's default token ("" here: anonymous), as Consul's DNS asks
    assert args == {"Datacenter": "dc1", "Node": "n2", "AllowStale": True, "Token": ""}


async def test_node_any_aaaa_and_other_datacenter(catalog: FakeCatalogAgent) -> None:
    server = make(catalog, node_ttl=10)
    r = await ask(server, "n1.node.consul", "ANY")
    assert answers(r) == ["127.0.0.1"] and r.rr[0].ttl == 10
    r = await ask(server, "v6.node.consul", "AAAA")
    assert answers(r) == ["fd00::6"]
    # An IPv4 node asked for AAAA: no data, NOERROR, SOA in authority.
    r = await ask(server, "n1.node.consul", "AAAA")
    assert r.header.rcode == RCODE.NOERROR and not r.rr and r.auth[0].rtype == QTYPE.SOA
    await ask(server, "n1.node.dc2.consul")
    assert catalog.calls[-1][1]["Datacenter"] == "dc2"


async def test_unknown_node_is_nxdomain_with_soa(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    r = await ask(server, "nope.node.consul")
    assert r.header.rcode == RCODE.NXDOMAIN and r.header.aa == 1 and not r.rr
    soa = r.auth[0]
    assert soa.rtype == QTYPE.SOA and str(soa.rname) == "consul." and soa.ttl == 0
    assert str(soa.rdata.mname) == "ns.consul." and str(soa.rdata.rname) == "hostmaster.consul."
    assert server.stats.nxdomain == 1


async def test_service_a_only_non_critical(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    r = await ask(server, "web.service.consul")
    # n1 (node address), n2 (its service address), n3 (warning is not critical)
    assert answers(r) == ["10.0.0.3", "10.9.9.2", "127.0.0.1"]
    assert all(str(rr.rname) == "web.service.consul." and rr.ttl == 0 for rr in r.rr)
    assert catalog.calls[-1] == (
        "Health.ServiceNodes",
        {
            "Datacenter": "dc1",
            "ServiceName": "web",
            "ServiceTag": "",
            "TagFilter": False,
            "AllowStale": True,
            "Token": "",
        },
    )
    r = await ask(server, "db.service.consul")  # only instance is critical
    assert r.header.rcode == RCODE.NXDOMAIN and r.auth[0].rtype == QTYPE.SOA
    only = make(catalog, only_passing=True)
    assert answers(await ask(only, "web.service.consul")) == ["10.9.9.2", "127.0.0.1"]


async def test_consul_service_finds_the_servers(catalog: FakeCatalogAgent) -> None:
    r = await ask(make(catalog), "consul.service.consul")
    assert answers(r) == ["127.0.0.1"]


async def test_tag_and_rfc2782_lookups(catalog: FakeCatalogAgent) -> None:
    server = make(catalog, service_ttl={"*": 5, "web": 30})
    r = await ask(server, "prod.web.service.consul")
    assert answers(r) == ["10.9.9.2", "127.0.0.1"] and r.rr[0].ttl == 30
    assert catalog.calls[-1][1]["ServiceTag"] == "prod" and catalog.calls[-1][1]["TagFilter"]
    r = await ask(server, "_web._canary.service.consul", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in r.rr] == [(80, "n3.node.dc1.consul.")]
    r = await ask(server, "_web._tcp.service.consul", "SRV", tcp=True)
    assert catalog.calls[-1][1]["TagFilter"] is False
    srv = sorted(
        (rr.rdata.priority, rr.rdata.weight, rr.rdata.port, str(rr.rdata.target)) for rr in r.rr
    )
    assert srv == [
        (1, 1, 80, "n1.node.dc1.consul."),
        (1, 1, 80, "n3.node.dc1.consul."),
        (1, 1, 8080, "0a090902.addr.dc1.consul."),  # its own address: Consul 1.x's target
    ]
    extra = {str(rr.rname): str(rr.rdata) for rr in r.ar}
    assert extra == {
        "n1.node.dc1.consul.": "127.0.0.1",
        "0a090902.addr.dc1.consul.": "10.9.9.2",
        "n3.node.dc1.consul.": "10.0.0.3",
    }
    assert all(rr.ttl == 30 for rr in r.rr + r.ar)
    r = await ask(server, "db.service.dc2.consul", "SRV")
    assert catalog.calls[-1][1]["Datacenter"] == "dc2"


async def test_answers_are_shuffled(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    firsts = set()
    for _ in range(60):
        r = await ask(server, "web.service.consul")
        firsts.add(str(r.rr[0].rdata))
        if len(firsts) == 3:
            break
    assert len(firsts) == 3


def _many(agent: FakeCatalogAgent, count: int, name_len: int = 4) -> None:
    for i in range(count):
        node = f"m{i:0{name_len}d}"
        agent.add_node(node, f"10.1.0.{i + 1}")
        agent.add_service(node, "big", 9000 + i)


async def test_udp_answer_limit_and_truncate(catalog: FakeCatalogAgent) -> None:
    _many(catalog, 10)
    server = make(catalog)
    r = await ask(server, "big.service.consul")
    assert len(r.rr) == 3 and r.header.tc == 0  # Consul 0.7: cut silently by default
    r = await ask(server, "big.service.consul", "SRV")
    assert len(r.rr) == 3 and {str(a.rname) for a in r.ar} == {str(a.rdata.target) for a in r.rr}
    r = await ask(server, "big.service.consul", tcp=True)
    assert len(r.rr) == 10 and r.header.tc == 0
    trunc = make(catalog, enable_truncate=True)
    r = await ask(trunc, "big.service.consul")
    assert len(r.rr) == 3 and r.header.tc == 1
    r = await ask(trunc, "prod.web.service.consul")
    assert r.header.tc == 0


async def test_udp_reply_never_exceeds_512_bytes(catalog: FakeCatalogAgent) -> None:
    _many(catalog, 8, name_len=60)
    server = make(catalog, udp_answer_limit=8)
    wire = await server.handle(DNSRecord.question("big.service.consul", "SRV").pack())
    assert wire is not None and len(wire) <= 512
    r = DNSRecord.parse(wire)
    assert 0 < len(r.rr) < 8 and r.header.tc == 1
    assert {str(a.rname) for a in r.ar} <= {str(a.rdata.target) for a in r.rr}
    r = await ask(server, "big.service.consul", "SRV", tcp=True)
    assert len(r.rr) == 8 and len(r.ar) == 8


async def test_apex_and_invalid_names(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    r = await ask(server, "consul", "SOA")
    assert r.header.rcode == RCODE.NOERROR and r.rr[0].rtype == QTYPE.SOA
    catalog.calls.clear()  # the SOA's NS records named the servers
    for name in ("foo.bar.consul", "service.consul", "x.y.z.consul"):
        r = await ask(server, name)
        assert r.header.rcode == RCODE.NXDOMAIN and r.auth[0].rtype == QTYPE.SOA, name
    assert not catalog.calls


async def test_outside_name_without_recursors_is_servfail_as_seed(
    catalog: FakeCatalogAgent,
) -> None:
    server = make(catalog)
    req = DNSRecord.question("server1.mydc", "ANY")
    wire = await server.handle(req.pack())
    assert wire is not None
    # The seed's dig: status SERVFAIL, flags qr rd, ANSWER 0, MSG SIZE rcvd: 30.
    assert len(wire) == 30
    r = DNSRecord.parse(wire)
    assert r.header.rcode == RCODE.SERVFAIL and r.header.id == req.header.id
    assert (r.header.qr, r.header.rd, r.header.aa, r.header.ra) == (1, 1, 0, 0)
    assert str(r.q.qname) == "server1.mydc." and r.q.qtype == QTYPE.ANY


async def test_ptr_for_known_node(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    r = await ask(server, "2.0.0.10.in-addr.arpa", "PTR")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1
    assert [str(rr.rdata) for rr in r.rr] == ["n2.node.dc1.consul."]
    assert catalog.calls[-1][0] == "Catalog.ListNodes"
    r = await ask(server, reverse_name("fd00::6"), "PTR")
    assert [str(rr.rdata) for rr in r.rr] == ["v6.node.dc1.consul."]
    r = await ask(server, "9.9.9.10.in-addr.arpa", "PTR")
    assert r.header.rcode == RCODE.SERVFAIL  # unknown, and no recursor to ask


async def test_rpc_error_is_servfail(catalog: FakeCatalogAgent) -> None:
    catalog.error = "No cluster leader"
    server = make(catalog)
    for name in ("n1.node.consul", "web.service.consul"):
        r = await ask(server, name)
        assert r.header.rcode == RCODE.SERVFAIL and not r.rr
    assert server.stats.servfail == 2


async def test_too_stale_is_asked_again_of_the_leader(catalog: FakeCatalogAgent) -> None:
    catalog.last_contact = [6.0, 0.0]
    assert len((await ask(make(catalog), "web.service.consul")).rr) == 3  # default 87600h
    catalog.calls.clear()
    catalog.last_contact = [6.0, 0.0]
    server = make(catalog, max_stale=5.0)
    r = await ask(server, "web.service.consul")
    assert len(r.rr) == 3
    assert [c[1]["AllowStale"] for c in catalog.calls] == [True, False]
    catalog.calls.clear()
    await ask(make(catalog, allow_stale=False), "n1.node.consul")
    assert catalog.calls[-1][1]["AllowStale"] is False


async def test_unexpected_agent_failure_is_servfail_not_a_crash(catalog: FakeCatalogAgent) -> None:
    async def broken(method: str, args: dict[str, Any]) -> Any:
        raise KeyError("boom")

    catalog.rpc = broken  # type: ignore[method-assign]
    r = await ask(make(catalog), "n1.node.consul")
    assert r.header.rcode == RCODE.SERVFAIL


async def test_malformed_packets(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    assert await server.handle(b"") is None
    assert await server.handle(b"\x12\x34\x01") is None
    # A response (QR set) is dropped: answering it could loop between servers.
    resp = DNSRecord.question("n1.node.consul").reply().pack()
    assert await server.handle(resp) is None
    assert server.stats.dropped == 3
    # Header parses, body is garbage: FORMERR with the same ID, opcode and RD.
    bad = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07consu"
    wire = await server.handle(bad)
    assert wire is not None
    r = DNSRecord.parse(wire)
    assert (r.header.id, r.header.rcode, r.header.qr, r.header.rd) == (0xABCD, RCODE.FORMERR, 1, 1)
    # Two questions: FORMERR.
    two = DNSRecord.question("n1.node.consul")
    two.add_question(DNSRecord.question("n2.node.consul").q)
    wire = await server.handle(two.pack())
    assert wire is not None and DNSRecord.parse(wire).header.rcode == RCODE.FORMERR
    # A NOTIFY (opcode 4): NOTIMP.
    notify = bytearray(DNSRecord.question("consul", "SOA").pack())
    notify[2] = (notify[2] & 0x87) | (4 << 3)
    wire = await server.handle(bytes(notify))
    assert wire is not None and DNSRecord.parse(wire).header.rcode == RCODE.NOTIMP
    assert server.stats.formerr == 2
    # Still serving.
    assert answers(await ask(server, "n1.node.consul")) == ["127.0.0.1"]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80))
async def test_random_bytes_never_crash(data: bytes) -> None:
    agent = FakeCatalogAgent()
    agent.add_node("n1", "127.0.0.1")
    server = make(agent)
    packet = data[:2] + bytes([data[2] & 0x7F]) + data[3:] if len(data) > 2 else data
    wire = await server.handle(packet)
    if wire is not None:
        r = DNSRecord.parse(wire)
        assert r.header.qr == 1 and r.header.id == struct.unpack("!H", packet[:2])[0]


@pytest.mark.parametrize("name", ["n1.node.consul", "web.service.consul", "nope.node.consul"])
async def test_every_reply_parses_and_echoes_the_question(
    catalog: FakeCatalogAgent, name: str
) -> None:
    req = DNSRecord.question(name, "ANY")
    wire = await make(catalog).handle(req.pack())
    assert wire is not None
    r = DNSRecord.parse(wire)
    assert r.header.id == req.header.id and r.q == req.q


async def test_reply_flags_copy_rd_and_cd_never_ad(catalog: FakeCatalogAgent) -> None:
    # dig sets AD in its queries; Consul's replies (miekg SetReply) carry only ID, opcode,
    # RD and CD over from the query.
    req = DNSRecord.question("n1.node.consul")
    req.header.ad = 1
    req.header.cd = 1
    for name in ("n1.node.consul", "server1.mydc"):
        req.q.qname = name  # type: ignore[assignment]
        wire = await make(catalog).handle(req.pack())
        assert wire is not None
        h = DNSRecord.parse(wire).header
        assert (h.ad, h.cd, h.rd, h.qr) == (0, 1, 1, 1), name
    bad = bytearray(b"\x00\x07\x01\x30\x00\x01\x00\x00\x00\x00\x00\x00\x07x")
    wire = await make(catalog).handle(bytes(bad))
    assert wire is not None and wire[3] == 0x10 | RCODE.FORMERR


async def test_translate_wan_addrs_for_other_datacenters(catalog: FakeCatalogAgent) -> None:
    real_node = catalog._node

    def tagged(name: str) -> dict[str, Any]:
        node = real_node(name)
        node["TaggedAddresses"] = {"lan": node["Address"], "wan": "198.51.100.2"}
        return node

    catalog._node = tagged  # type: ignore[method-assign]
    server = make(catalog, translate_wan_addrs=True)
    assert answers(await ask(server, "n2.node.consul")) == ["10.0.0.2"]  # our dc: LAN
    assert answers(await ask(server, "n2.node.dc2.consul")) == ["198.51.100.2"]
    r = await ask(server, "consul.service.dc2.consul", "SRV")
    assert [str(a.rdata) for a in r.ar] == ["198.51.100.2"]
    # A service address of its own is kept, as Consul does.
    assert "10.9.9.2" in answers(await ask(server, "prod.web.service.dc2.consul"))
    plain = make(catalog)
    assert answers(await ask(plain, "n2.node.dc2.consul")) == ["10.0.0.2"]


async def test_debug_log_line_as_consul(
    catalog: FakeCatalogAgent, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    server = make(catalog)
    with caplog.at_level(logging.DEBUG, logger="dns"):
        await server.handle(DNSRecord.question("n1.node.consul").pack(), client="127.0.0.1:5000")
        await server.handle(DNSRecord.question("_web._tcp.service.consul", "SRV").pack(), tcp=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "dns"]
    assert lines[0].startswith("request for {n1.node.consul. 1 1} (")
    assert lines[0].endswith(") from client 127.0.0.1:5000 (udp)")
    assert (
        lines[1].startswith("request for {_web._tcp.service.consul. 33 1} (")
        and "(tcp)" in lines[1]
    )


async def test_names_match_the_catalog_case_insensitively(catalog: FakeCatalogAgent) -> None:
    catalog.add_node("Web-Box", "10.7.0.1")
    catalog.add_service("Web-Box", "Billing", 81)
    server = make(catalog)
    assert answers(await ask(server, "web-box.node.consul")) == ["10.7.0.1"]
    assert answers(await ask(server, "N2.NODE.CONSUL")) == ["10.0.0.2"]
    assert answers(await ask(server, "BILLING.service.consul")) == ["10.7.0.1"]
    r = await ask(server, "_billing._tcp.service.consul", "SRV")
    assert [str(a.rdata.target) for a in r.rr] == ["Web-Box.node.dc1.consul."]
    assert (await ask(server, "nobody.node.consul")).header.rcode == RCODE.NXDOMAIN
