"""The hand-written fast path (agent/dns/wire.py) against dnslib and the general path."""

from __future__ import annotations

from typing import Any, cast

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from fake_catalog import FakeCatalogAgent
from hypothesis import given, settings
from hypothesis import strategies as st

import agent.dns.server as server_mod
from agent.api import AgentAPI
from agent.dns.server import DNSServer
from agent.dns.wire import a_reply, ipv4, parse_query


def test_parse_plain_query() -> None:
    packet = DNSRecord.question("Web.Service.consul", "ANY").pack()
    q = parse_query(bytes(packet))
    assert q is not None
    assert (q.labels, q.qtype, q.qclass, q.end) == (
        (b"Web", b"Service", b"consul"),
        QTYPE.ANY,
        1,
        len(packet),
    )


def test_parse_accepts_edns_in_additional() -> None:
    req = DNSRecord.question("n1.node.consul")
    req.add_ar(EDNS0(udp_len=4096))
    q = parse_query(bytes(req.pack()))
    assert q is not None and q.labels == (b"n1", b"node", b"consul")


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00" * 16,  # zero questions
        b"\x00\x01\x81\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",  # a response
        b"\x00\x01\x28\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",  # UPDATE opcode
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab\x00\x01",  # label past the end
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00",  # no qtype/qclass
        b"\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",  # an answer
    ],
)
def test_parse_leaves_anything_unusual_to_dnslib(packet: bytes) -> None:
    assert parse_query(packet) is None


def test_a_reply_is_valid_dns() -> None:
    req = DNSRecord.question("web.service.consul")
    req.header.rd = 1
    packet = bytes(req.pack())
    q = parse_query(packet)
    assert q is not None
    wire = a_reply(packet, q, [b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"], 30, ra=False, tc=True)
    r = DNSRecord.parse(wire)
    assert (r.header.id, r.header.qr, r.header.aa, r.header.rd, r.header.tc, r.header.ra) == (
        req.header.id,
        1,
        1,
        1,
        1,
        0,
    )
    assert [(str(a.rname), a.rtype, a.ttl, str(a.rdata)) for a in r.rr] == [
        ("web.service.consul.", QTYPE.A, 30, "10.0.0.1"),
        ("web.service.consul.", QTYPE.A, 30, "10.0.0.2"),
    ]
    assert (
        ipv4("10.0.0.1") == b"\x0a\x00\x00\x01" and ipv4("fd00::1") is None and ipv4("host") is None
    )


def _general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_mod, "parse_query", lambda packet: None)


def _summary(wire: bytes | None) -> tuple[Any, ...]:
    assert wire is not None
    r = DNSRecord.parse(wire)
    h = r.header
    return (
        h.id,
        h.qr,
        h.aa,
        h.tc,
        h.rd,
        h.ra,
        h.rcode,
        r.q,
        sorted((str(a.rname), a.rtype, a.ttl, str(a.rdata)) for a in r.rr),
        [a.rtype for a in r.auth],
        sorted((str(a.rname), a.rtype, a.ttl, str(a.rdata)) for a in r.ar),
    )


NAMES = [
    "n1.node.consul",
    "n2.node.dc1.consul",
    "v6.node.consul",
    "nope.node.consul",
    "web.service.consul",
    "prod.web.service.consul",
    "db.service.consul",
    "big.service.consul",
    "consul.service.consul",
    "_web._tcp.service.consul",
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("qtype", ["A", "ANY", "SRV"])
@pytest.mark.parametrize("tcp", [False, True])
async def test_fast_path_answers_as_the_general_path(
    catalog: FakeCatalogAgent, monkeypatch: pytest.MonkeyPatch, name: str, qtype: str, tcp: bool
) -> None:
    for i in range(6):
        catalog.add_node(f"b{i}", f"10.5.0.{i}")
        catalog.add_service(f"b{i}", "big", 1000)
    # One healthy instance per service except "big", so the shuffle cannot reorder answers
    # differently between the two runs beyond what sorting hides; truncation picks a prefix,
    # so compare counts for "big".
    packet = bytes(DNSRecord.question(name, qtype).pack())
    srv = DNSServer(cast(AgentAPI, catalog), datacenter="dc1", enable_truncate=True)
    fast = _summary(await srv.handle(packet, tcp=tcp))
    _general_only(monkeypatch)
    slow = _summary(await srv.handle(packet, tcp=tcp))
    if name.startswith("big") and not tcp:
        assert fast[:8] == slow[:8] and len(fast[8]) == len(slow[8]) == 3
        assert len(fast[10]) == len(slow[10]) == (3 if qtype == "SRV" else 0)
    else:
        assert fast == slow
    assert fast[6] in (RCODE.NOERROR, RCODE.NXDOMAIN)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.binary(min_size=1, max_size=20).filter(lambda b: b"." not in b), min_size=1, max_size=5
    ),
    st.sampled_from(["node", "service"]),
)
async def test_any_label_bytes_answer_without_crash(labels: list[bytes], kind: str) -> None:
    agent = FakeCatalogAgent()
    agent.add_node("n1", "127.0.0.1")
    srv = DNSServer(cast(AgentAPI, agent), datacenter="dc1")
    name = (
        b"".join(bytes([len(lab)]) + lab for lab in [*labels, kind.encode(), b"consul"]) + b"\x00"
    )
    packet = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"
    wire = await srv.handle(packet)
    assert wire is not None
    r = DNSRecord.parse(wire)
    assert r.header.id == 0x1234 and r.header.rcode in (
        RCODE.NOERROR,
        RCODE.NXDOMAIN,
        RCODE.FORMERR,
    )


async def test_fast_srv_that_would_not_fit_goes_the_general_way(catalog: FakeCatalogAgent) -> None:
    for i in range(8):
        node = "n" + "x" * 55 + f"{i:02d}"
        catalog.add_node(node, f"10.6.0.{i}")
        catalog.add_service(node, "wide", 7000 + i)
    srv = DNSServer(cast(AgentAPI, catalog), datacenter="dc1", udp_answer_limit=8)
    packet = bytes(DNSRecord.question("wide.service.consul", "SRV").pack())
    q = parse_query(packet)
    assert q is not None
    wire = await srv.handle(packet)
    assert wire is not None and len(wire) <= 512
    r = DNSRecord.parse(wire)
    assert r.header.tc == 1 and 0 < len(r.rr) < 8
    r = DNSRecord.parse(await srv.handle(packet, tcp=True) or b"")
    assert len(r.rr) == 8 and len(r.ar) == 8 and r.header.tc == 0
    by_target = {str(a.rname): str(a.rdata) for a in r.ar}
    assert all(by_target[str(a.rdata.target)].startswith("10.6.0.") for a in r.rr)
