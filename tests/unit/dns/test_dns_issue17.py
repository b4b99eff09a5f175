"""Issue 17's DNS without a network: the new dns_config keys, EDNS0 on both paths, the
name forms, use_cache's read cache, and random packets that never make handle() raise."""

from __future__ import annotations

import asyncio
import random
from typing import Any, cast

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSLabel, DNSRecord
from fake_catalog import FakeCatalogAgent

from agent.api import AgentAPI
from agent.config import ConfigError, load_files
from agent.dns.cache import ReadCache
from agent.dns.config import DNSConfigError, SOAConfig, build_dns_config
from agent.dns.edns import TYPE_OPT
from agent.dns.names import (
    AddrQuery,
    InvalidQuery,
    NodeQuery,
    ServiceQuery,
    VirtualQuery,
    classify,
    domain_labels,
)
from agent.dns.records import rfc1464
from agent.dns.server import DNSServer
from agent.errors import RPCError

CONSUL, ALT = domain_labels("consul."), domain_labels("alt.")


def make(agent: FakeCatalogAgent, **kw: Any) -> DNSServer:
    return DNSServer(cast(AgentAPI, agent), datacenter="dc1", **kw)


async def ask(server: DNSServer, q: DNSRecord, tcp: bool = False) -> DNSRecord:
    wire = await server.handle(q.pack(), tcp=tcp)
    assert wire is not None
    return DNSRecord.parse(wire)


def edns_question(name: str, qtype: str = "A", size: int = 4096) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    q.add_ar(EDNS0(udp_len=size))
    return q


def opts(r: DNSRecord) -> list[Any]:
    return [rr for rr in r.ar if rr.rtype == TYPE_OPT]


def test_new_keys_and_their_errors(tmp_path: Any) -> None:
    c = build_dns_config(
        alt_domain="Alt",
        dns_config={
            "a_record_limit": 2,
            "recursor_strategy": "random",
            "use_cache": True,
            "cache_max_age": "5s",
            "enable_additional_node_meta_txt": False,
            "soa": {"refresh": 1, "min_ttl": 9},
        },
    )
    assert (c.alt_domain, c.a_record_limit, c.recursor_strategy) == ("alt.", 2, "random")
    assert (c.use_cache, c.cache_max_age, c.enable_additional_node_meta_txt) == (True, 5.0, False)
    assert c.soa == SOAConfig(refresh=1, retry=600, expire=86400, min_ttl=9)
    for block, words in (
        ({"a_record_limit": -1}, "a_record_limit"),
        ({"recursor_strategy": "fastest"}, "recursor_strategy"),
        ({"use_cache": "yes"}, "use_cache"),
        ({"cache_max_age": "soon"}, "cache_max_age"),
        ({"soa": {"refresh": "1h"}}, "soa.refresh"),
        ({"soa": {"serial": 1}}, "soa"),
    ):
        with pytest.raises(DNSConfigError, match=words):
            build_dns_config(dns_config=block)
    path = tmp_path / "c.json"
    path.write_text('{"alt_domain": "x..y", "data_dir": "/tmp/x"}')
    with pytest.raises(ConfigError, match="alt_domain"):
        load_files([str(path)])
    path.write_text(
        '{"data_dir": "/tmp/x", "alt_domain": "alt", "dns_config": {"soa": {"min_ttl": 3}}}'
    )
    cfg = load_files([str(path)])
    assert cfg.dns_config.alt_domain == "alt." and cfg.dns_config.soa.min_ttl == 3
    assert not [w for w in cfg.warnings if "soa" in w or "alt_domain" in w]


@pytest.mark.parametrize(
    ("name", "srv", "want"),
    [
        ("0a000001.addr.consul.", False, AddrQuery("10.0.0.1")),
        ("0a000001.addr.dc2.consul.", False, AddrQuery("10.0.0.1")),
        ("fd000000000000000000000000000006.addr.consul.", False, AddrQuery("fd00::6")),
        ("0a00001.addr.consul.", False, InvalidQuery("0a00001.addr")),
        ("zz000001.addr.consul.", False, InvalidQuery("zz000001.addr")),
        ("web.virtual.consul.", False, VirtualQuery("dc1", "web")),
        ("_web._tcp.consul.", True, ServiceQuery("dc1", "web", "")),
        ("_web._prod.dc2.consul.", True, ServiceQuery("dc2", "web", "prod")),
        ("_web._tcp.consul.", False, InvalidQuery("_web._tcp")),
        ("web.service.dc2.dc.consul.", False, ServiceQuery("dc2", "web", "")),
        ("web.service.p.peer.consul.", False, InvalidQuery("web.service.p.peer")),
        ("n1.node.alt.", False, NodeQuery("dc1", "n1")),
    ],
)
def test_name_forms(name: str, srv: bool, want: Any) -> None:
    labels = DNSLabel(name).label
    assert classify(labels, CONSUL, "dc1", alt_domain=ALT, srv=srv) == want


def test_rfc1464() -> None:
    assert rfc1464("a=b", "c`d") == "a`=b=c``d"
    assert rfc1464("  k ", "v") == "` ` k` =v"


async def test_edns_on_fast_and_general_paths(catalog: FakeCatalogAgent) -> None:
    for i in range(20):
        catalog.add_node(f"x{i}", f"10.1.0.{i}")
        catalog.add_service(f"x{i}", "big", 80)
    server = make(catalog)
    r = await ask(server, edns_question("big.service.consul"))  # fast path
    assert len(r.rr) == 20 and len(opts(r)) == 1 and opts(r)[0].rclass == 4096
    r = await ask(server, DNSRecord.question("big.service.consul"))
    assert len(r.rr) == 3 and not opts(r)
    r = await ask(server, edns_question("big.service.consul", size=512))
    assert len(r.rr) == 3 and len(opts(r)) == 1
    r = await ask(server, edns_question("big.service.consul", "AAAA"))  # general path
    assert not r.rr and len(opts(r)) == 1 and r.auth[0].rtype == QTYPE.SOA
    r = await ask(server, edns_question("big.service.consul", "SRV"))
    assert len(r.rr) == 20 and len(r.ar) == 21 and len(opts(r)) == 1
    r = await ask(server, edns_question("big.service.consul", "SRV", size=600))
    assert 3 < len(r.rr) < 20 and r.header.tc == 1 and len(opts(r)) == 1
    assert (
        len((await server.handle(edns_question("big.service.consul", "SRV", 600).pack())) or b"")
        <= 600
    )
    limited = make(catalog, a_record_limit=4)
    assert len((await ask(limited, edns_question("big.service.consul"))).rr) == 4
    q = edns_question("n1.node.consul")
    q.ar[0].ttl = 1 << 16  # version 1
    r = await ask(server, q)
    assert r.header.rcode == 0 and opts(r)[0].ttl >> 24 == 1  # BADVERS = 16
    q = edns_question("n1.node.consul")
    q.add_ar(EDNS0(udp_len=1232))
    assert (await ask(server, q)).header.rcode == RCODE.FORMERR


async def test_random_packets_never_raise(catalog: FakeCatalogAgent) -> None:
    server = make(catalog)
    rng = random.Random(17)
    seeds = [
        DNSRecord.question(n, t).pack()
        for n, t in (("n1.node.consul", "A"), ("web.service.consul", "SRV"), ("consul", "SOA"))
    ]
    for _ in range(3000):
        packet = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            packet[rng.randrange(len(packet))] = rng.randrange(256)
        if rng.random() < 0.3:
            packet = packet[: rng.randrange(len(packet) + 1)]
        if len(packet) > 2:
            packet[2] &= 0x7F  # queries, not responses
        wire = await server.handle(bytes(packet))
        if wire is not None:
            assert wire[:2] == packet[:2]
    assert server.stats.formerr > 0 and server.stats.errors == 0


async def test_read_cache_follows_the_catalog() -> None:
    calls: list[dict[str, Any]] = []
    index = [5]
    changed = asyncio.Event()
    down = [False]

    async def rpc(method: str, args: dict[str, Any]) -> Any:
        calls.append(args)
        if down[0]:
            raise RPCError("No known Consul servers")
        if args.get("MinQueryIndex", 0) >= index[0]:
            await changed.wait()
        return {"Index": index[0], "Nodes": [index[0]]}

    now = [0.0]
    cache = ReadCache(rpc, max_age=10.0, clock=lambda: now[0])
    args = {"ServiceName": "web"}
    assert (await cache.get("Health.ServiceNodes", args))["Nodes"] == [5]
    assert (await cache.get("Health.ServiceNodes", args))["Nodes"] == [5]
    assert cache.hits == 1 and cache.misses == 1
    index[0] = 6
    changed.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if (cache.cached("Health.ServiceNodes", args) or {}).get("Index") == 6:
            break
    assert cache.cached("Health.ServiceNodes", args)["Index"] == 6
    down[0] = True
    changed.clear()
    index[0] = 7
    changed.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if cache._entries[cache.key("Health.ServiceNodes", args)].lost_contact is not None:
            break
    now[0] += 5.0
    assert cache.cached("Health.ServiceNodes", args) is not None  # within cache_max_age
    now[0] += 20.0
    assert cache.cached("Health.ServiceNodes", args) is None  # lost contact too long
    with pytest.raises(RPCError):
        await cache.get("Health.ServiceNodes", args)
    await cache.close()
