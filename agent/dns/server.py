"""The DNS server on 8600 (UDP and TCP): Consul 1.x's DNS interface over `AgentAPI.rpc`.

Theory of operation. `DNSServer.handle(packet, tcp=...)` turns one query packet into one
reply packet (or None: dropped). Everything else here is transport:

* Packets shorter than a header, and responses (QR set), are dropped and counted in
  `stats.dropped` — answering a response could loop between two servers. A header that
  parses with a body that does not (a compression pointer loop, a label past 63 bytes, a
  name past 255, a second OPT record) gets FORMERR (`stats.formerr`); so does a query
  with other than one question. Opcodes other than QUERY, and AXFR, get NOTIMP; an EDNS
  version other than 0 BADVERS. Nothing raises out of `handle`: an unexpected error is
  logged and answered SERVFAIL.
* Names are classified by `names.classify` (pure, so memoised); names in the domain (or
  alt_domain) are answered from the catalog by lookup.py, one RPC per query
  (Catalog.NodeServices, Health.ServiceNodes, PreparedQuery.Execute, Catalog.ListNodes for
  reverse lookups), or from its cache with use_cache. SOA and NS questions for any name in
  the domain answer the SOA and up to three servers, as Consul.
* The fast path: an A/ANY query for a node or service, or an SRV query for a service,
  whose addresses are all IPv4 is read and answered by `wire.py` without dnslib (most
  traffic; dnslib's parse and pack cost more than the catalog read). Every other query
  and answer, and any fast answer that would not fit, goes through dnslib.
* Names outside the domain, and reverse names no node has, go to the recursors
  (recursor.py) over the client's transport, in order or shuffled (recursor_strategy), with
  recursor_timeout each; an answer other than NOERROR/NXDOMAIN tries the next. Without
  recursors the reply is SERVFAIL with flags qr rd (no aa, no ra), as Consul's DNS mux
  answers a name it has no handler for.
* EDNS0 (edns.py): a query with an OPT record gets one back. Over UDP a reply is cut to
  the client's buffer (512 bytes without EDNS); only at 512 bytes are answers also cut to
  udp_answer_limit (TC only with enable_truncate, as Consul). TC is always set when records
  were dropped to fit the buffer.
* Replies copy ID, opcode, RD and CD from the query (miekg/dns SetReply), never AD.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from dnslib import QTYPE, RCODE, DNSError, DNSHeader, DNSRecord

from agent.api import AgentAPI
from agent.dns.config import DNSConfig, DNSConfigError, normalize_domain, parse_recursor
from agent.dns.edns import (
    EXT_RCODE_BADVERS,
    OPT_SIZE,
    UDP_MIN_SIZE,
    Edns,
    EDNSFormatError,
    request_edns,
    udp_limit,
    with_opt,
)
from agent.dns.lookup import CatalogReader, Found
from agent.dns.names import (
    AddrQuery,
    ApexQuery,
    InvalidQuery,
    NodeQuery,
    OutsideQuery,
    PreparedQueryName,
    Query,
    ReverseQuery,
    ServiceQuery,
    VirtualQuery,
    classify,
    domain_labels,
    response_domain,
)
from agent.dns.records import (
    MAX_UDP_ANSWER_LIMIT,
    instance_address,
    limit_answers,
    meta_txt_records,
    nameserver_records,
    node_records,
    pack_for_udp,
    ptr_record,
    service_address_records,
    service_srv_records,
    soa_record,
    srv_targets,
    valid_name,
)
from agent.dns.recursor import exchange_tcp, exchange_udp
from agent.dns.wire import SimpleQuery, a_reply, encode_name, ipv4, parse_query, srv_reply
from agent.metrics import metrics

log = logging.getLogger("dns")

HEADER_SIZE = 12
TCP_MAX_SIZE = 65535
#: A TCP connection with no query for this long is closed.
TCP_IDLE_TIMEOUT = 10.0
#: Bounds on work in progress: UDP queries being answered and open TCP connections. Beyond
#: them a UDP query is dropped (and counted) and a TCP connection closed at once.
MAX_INFLIGHT_UDP = 1024
MAX_TCP_CONNECTIONS = 256

_A, _AAAA, _SRV, _SOA, _ANY, _NS, _TXT = (
    QTYPE.A,
    QTYPE.AAAA,
    QTYPE.SRV,
    QTYPE.SOA,
    QTYPE.ANY,
    QTYPE.NS,
    QTYPE.TXT,
)
_NOT_SERVED = frozenset((QTYPE.AXFR,))
_NODE_QTYPES = frozenset((_A, _AAAA, _ANY, _TXT, QTYPE.CNAME))
_IN = 1
_FAST_QTYPES = (QTYPE.A, QTYPE.ANY, QTYPE.SRV)
#: Beyond this many A answers over TCP the general path packs (and bounds) the reply.
FAST_TCP_MAX_ANSWERS = 4000
CLASSIFY_CACHE_SIZE = 4096
_A_RR_SIZE = 16  # a compressed A record: name pointer, type, class, TTL, rdlength, address

_QR_BIT = 0x80
_OPCODE_RD_BITS = 0x79  # opcode (4 bits) and RD in the third header byte
_CD_BIT = 0x10  # in the fourth header byte
_COPIED_FLAGS = 0x7910  # opcode, RD and CD in dnslib's 16-bit flags


@dataclass(slots=True)
class DNSStats:
    """Counters since start; `dropped` counts packets that got no reply at all."""

    queries: int = 0
    dropped: int = 0
    formerr: int = 0
    notimp: int = 0
    servfail: int = 0
    nxdomain: int = 0
    recursed: int = 0
    #: queries that raised inside the server (answered SERVFAIL); a bug when not 0
    errors: int = 0


def _parse(packet: bytes) -> DNSRecord | None:
    """dnslib's parse; None when the packet is not a well-formed DNS message."""
    try:
        return DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError, UnicodeError, struct.error):
        return None


def _go_duration(seconds: float) -> str:
    """A duration as Go prints it in Consul's log lines (153.2µs, 1.5ms)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3f}ms"
    return f"{seconds:.3f}s"


def header_error(packet: bytes, rcode: int) -> bytes:
    """A reply carrying only the header of `packet` (its ID, opcode, RD and CD) and `rcode`."""
    flags = bytes((_QR_BIT | (packet[2] & _OPCODE_RD_BITS), (packet[3] & _CD_BIT) | rcode))
    return packet[:2] + flags + bytes(8)


def reply_header(req: DNSRecord, *, aa: int, ra: int, rcode: int = 0) -> DNSHeader:
    """The header of a reply to `req`, as miekg/dns SetReply makes it: the ID, opcode, RD and
    CD copied; AD and Z never echoed (dig sets AD in queries; Consul's replies do not)."""
    return DNSHeader(
        id=req.header.id, bitmap=req.header.bitmap & _COPIED_FLAGS, qr=1, aa=aa, ra=ra, rcode=rcode
    )


class _FormatError(Exception):
    """The query cannot be answered as asked: FORMERR."""


class DNSServer:
    """Consul 1.x's DNS interface for one agent.

    DNSServer(agent, domain="consul.", recursors=["127.0.0.53:53"], datacenter="dc1",
              service_ttl={"*": 5.0}, **settings) where settings are DNSConfig's other
    fields (node_ttl=0.0, udp_answer_limit=3, alt_domain="", ...). Bad domain or recursor
    values raise DNSConfigError.
    """

    def __init__(
        self,
        agent: AgentAPI,
        *,
        domain: str = "consul.",
        recursors: Sequence[str] = (),
        datacenter: str | None = None,
        service_ttl: Mapping[str, float] | None = None,
        **settings: Any,
    ) -> None:
        if settings.get("udp_answer_limit", 1) < 1:
            raise DNSConfigError("udp_answer_limit: expected a positive integer")
        if settings.get("recursor_timeout", 1.0) <= 0:
            raise DNSConfigError("recursor_timeout: must be positive")
        if settings.get("alt_domain"):
            settings["alt_domain"] = normalize_domain(settings["alt_domain"])
        config = DNSConfig(
            domain=normalize_domain(domain),
            recursors=tuple(parse_recursor(r) for r in recursors),
            service_ttl=tuple((k, float(v)) for k, v in (service_ttl or {}).items()),
            **settings,
        )
        self._init(agent, config, datacenter)

    @classmethod
    def from_config(
        cls, agent: AgentAPI, config: DNSConfig, datacenter: str | None = None
    ) -> DNSServer:
        server = cls.__new__(cls)
        server._init(agent, config, datacenter)
        return server

    def _init(self, agent: AgentAPI, config: DNSConfig, datacenter: str | None) -> None:
        self.agent = agent
        self.config = config
        self.datacenter = datacenter or agent.datacenter
        self.stats = DNSStats()
        self.catalog = CatalogReader(agent, config, self.datacenter)
        self._domain = config.domain
        # What a name asks for depends only on the name, whether it asks for SRV and this
        # configuration, so the classification (not any answer) is memoised, bounded.
        dom, alt, dc = (
            domain_labels(config.domain),
            domain_labels(config.alt_domain),
            self.datacenter,
        )
        self._classify: Callable[[tuple[bytes, ...], bool], Query] = functools.lru_cache(
            maxsize=CLASSIFY_CACHE_SIZE
        )(lambda labels, srv: classify(labels, dom, dc, alt_domain=alt, srv=srv))
        self._node_ttl = int(config.node_ttl)
        self._ra = 1 if config.recursors else 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self.address: tuple[str, int] | None = None

    def _response_domain(self, labels: tuple[bytes, ...]) -> str:
        if not self.config.alt_domain:
            return self._domain
        return response_domain(labels, self._domain, self.config.alt_domain)

    # ---- the query path ------------------------------------------------------------------
    async def handle(self, packet: bytes, tcp: bool = False, client: str = "") -> bytes | None:
        """One query packet -> one reply packet, or None when the packet is dropped."""
        stats = self.stats
        stats.queries += 1
        packet = bytes(packet)  # a bytearray would make unhashable labels
        if len(packet) < HEADER_SIZE or packet[2] & _QR_BIT:
            stats.dropped += 1
            return None
        started = time.perf_counter()
        req: DNSRecord | None = None
        edns: Edns | None = None
        simple: SimpleQuery | None = None
        wire: bytes | None = None
        try:
            simple = parse_query(packet)
            if simple is not None and simple.qclass == _IN and simple.qtype in _FAST_QTYPES:
                # The fast path: A/ANY for a node or a service, SRV for a service, answered
                # without dnslib when every address is IPv4 (else the same lookup result
                # goes the general way).
                query = self._classify(simple.labels, simple.qtype == _SRV)
                if isinstance(query, NodeQuery | ServiceQuery):
                    found = await self._lookup(query)
                    wire = self._fast_reply(packet, simple, query, found, tcp)
                    if wire is None:
                        req = _parse(packet)
                        if req is not None:
                            edns = request_edns(req)
                            wire = await self._answer(req, packet, tcp, edns, (query, found))
            if wire is None:
                req = _parse(packet)
                if req is None or not valid_name(req.q.qname.label if req.questions else ()):
                    raise _FormatError
                edns = request_edns(req)
                if req.header.opcode != 0:
                    stats.notimp += 1
                    return self._with_edns(header_error(packet, RCODE.NOTIMP), edns)
                if len(req.questions) != 1:
                    raise _FormatError
                if edns is not None and edns.version != 0:
                    wire = DNSRecord(reply_header(req, aa=0, ra=self._ra), q=req.q).pack()
                    return with_opt(wire, edns.udp_size, EXT_RCODE_BADVERS)
                wire = await self._answer(req, packet, tcp, edns, client=client)
        except (_FormatError, EDNSFormatError):
            stats.formerr += 1
            return header_error(packet, RCODE.FORMERR)
        except Exception:
            log.exception("failed to answer a query")
            stats.servfail += 1
            stats.errors += 1
            wire = header_error(packet, RCODE.SERVFAIL)
            with contextlib.suppress(Exception):
                if req is not None:
                    wire = self._servfail(req, aa=1, ra=self._ra, edns=edns)
        ptr = simple is not None and simple.qtype == QTYPE.PTR
        key = "dns.ptr_query" if ptr else "dns.domain_query"
        metrics.measure_since(key, started, (("node", self.agent.node_name),))
        if log.isEnabledFor(logging.DEBUG):
            self._log_request(packet, simple, started, client, tcp)
        return wire

    def _log_request(
        self, packet: bytes, simple: SimpleQuery | None, started: float, client: str, tcp: bool
    ) -> None:
        """Consul's debug line: request for {name. qtype qclass} (duration) from client a:p (udp)."""
        elapsed = _go_duration(time.perf_counter() - started)
        if simple is not None:
            name = b".".join(simple.labels).decode("utf-8", "replace") + "."
            qtype, qclass = simple.qtype, simple.qclass
        else:
            req = _parse(packet)
            if req is None or not req.questions:
                return
            name, qtype, qclass = str(req.q.qname), req.q.qtype, req.q.qclass
        log.debug(
            "request for {%s %d %d} (%s) from client %s (%s)",
            name,
            qtype,
            qclass,
            elapsed,
            client,
            "tcp" if tcp else "udp",
        )

    @staticmethod
    def _with_edns(wire: bytes, edns: Edns | None) -> bytes:
        return wire if edns is None else with_opt(wire, edns.udp_size)

    async def _lookup(self, query: NodeQuery | ServiceQuery) -> Found:
        if isinstance(query, NodeQuery):
            return await self.catalog.node(query)
        return await self.catalog.service(query)

    # ---- the fast path -----------------------------------------------------------------
    def _fast_reply(
        self, packet: bytes, simple: SimpleQuery, query: Query, found: Found, tcp: bool
    ) -> bytes | None:
        """All-A answers as bytes; None when the answer needs the general path."""
        rcode, payload = found
        if rcode != RCODE.NOERROR:
            return None
        ra = bool(self._ra)
        edns = simple.edns_size if packet[11] else 0  # ARCOUNT 1: the query had an OPT
        has_opt = bool(packet[11])
        if isinstance(query, NodeQuery):
            if simple.qtype == _SRV or (payload.get("Meta") and self._meta_txt()):
                return None  # no SRV records for a node; meta TXT: the general path
            a = ipv4(payload.get("Address") or "")
            if a is None:
                return None
            wire = a_reply(packet, simple, [a], self._node_ttl, ra=ra, tc=False)
            return with_opt(wire, edns) if has_opt else wire
        assert isinstance(query, ServiceQuery)
        if simple.qtype == _SRV:
            srv = self._fast_srv(packet, simple, query, payload, tcp, has_opt)
            return with_opt(srv, edns) if has_opt and srv is not None else srv
        addresses: list[bytes] = []
        seen: set[str] = set()
        for csn in payload:
            addr = instance_address(csn)
            if addr in seen:
                continue
            seen.add(addr)
            a = ipv4(addr)
            if a is None:
                return None
            addresses.append(a)
        if self.config.a_record_limit:
            addresses = addresses[: self.config.a_record_limit]
        tc = False
        if not tcp:
            size = udp_limit(edns)
            if size == UDP_MIN_SIZE:
                limit = min(self.config.udp_answer_limit, MAX_UDP_ANSWER_LIMIT)
                if len(addresses) > limit:
                    addresses = addresses[:limit]
                    tc = self.config.enable_truncate
            fits = (size - simple.end - (OPT_SIZE if has_opt else 0)) // _A_RR_SIZE
            if len(addresses) > fits:
                addresses, tc = addresses[: max(fits, 0)], True
        elif len(addresses) > FAST_TCP_MAX_ANSWERS:
            return None
        ttl = self.config.ttl_for_service(query.service)
        wire = a_reply(packet, simple, addresses, ttl, ra=ra, tc=tc)
        return with_opt(wire, edns) if has_opt else wire

    def _meta_txt(self) -> bool:
        return self.config.enable_additional_node_meta_txt

    def _fast_srv(
        self,
        packet: bytes,
        simple: SimpleQuery,
        query: ServiceQuery,
        nodes: list[dict[str, Any]],
        tcp: bool,
        has_opt: bool,
    ) -> bytes | None:
        domain = self._response_domain(simple.labels)
        meta_txt = self._meta_txt()
        records: list[tuple[bytes, int, bytes]] = []
        for t in srv_targets(nodes, query.datacenter, domain):
            if meta_txt and t.node.get("Meta"):
                return None
            a = ipv4(t.address)
            target = encode_name(t.target)
            if a is None or target is None:
                return None
            records.append((target, t.port, a))
        tc = False
        size = TCP_MAX_SIZE if tcp else udp_limit(simple.edns_size if has_opt else 0)
        if not tcp and size == UDP_MIN_SIZE:
            limit = min(self.config.udp_answer_limit, MAX_UDP_ANSWER_LIMIT)
            if len(records) > limit:
                records = records[:limit]
                tc = self.config.enable_truncate
        ttl = self.config.ttl_for_service(query.service)
        room = size - (OPT_SIZE if has_opt else 0)
        return srv_reply(packet, simple, records, ttl, ra=bool(self._ra), tc=tc, max_size=room)

    # ---- the general path --------------------------------------------------------------
    async def _answer(
        self,
        req: DNSRecord,
        packet: bytes,
        tcp: bool,
        edns: Edns | None,
        looked_up: tuple[Query, Found] | None = None,
        client: str = "",
    ) -> bytes:
        q = req.q
        labels = tuple(q.qname.label)
        if looked_up is not None:
            query, found = looked_up
        else:
            query = self._classify(labels, q.qtype == _SRV)
            found = None
        if isinstance(query, OutsideQuery):
            return await self._recurse(req, packet, tcp, edns)
        if isinstance(query, ReverseQuery):
            reply = await self._reverse(req, query)
            if reply is None:
                return await self._recurse(req, packet, tcp, edns)
        elif q.qtype in _NOT_SERVED:
            self.stats.notimp += 1
            reply = DNSRecord(reply_header(req, aa=1, ra=self._ra, rcode=RCODE.NOTIMP), q=q)
        else:
            reply = DNSRecord(reply_header(req, aa=1, ra=self._ra), q=q)
            await self._in_domain(req, reply, query, found, tcp, edns, client)
        size = TCP_MAX_SIZE if tcp else udp_limit(edns)
        room = size - (OPT_SIZE if edns is not None else 0)
        udp_512 = not tcp and size == UDP_MIN_SIZE
        if udp_512 and limit_answers(reply, self.config.udp_answer_limit):
            reply.header.tc = int(self.config.enable_truncate or reply.header.tc)
        if len(reply.rr) <= 1 and not reply.ar:
            wire = reply.pack()
            if len(wire) > room:
                wire, _ = pack_for_udp(reply, room)
        else:
            wire, _ = pack_for_udp(reply, room)
        return self._with_edns(wire, edns)

    async def _in_domain(
        self,
        req: DNSRecord,
        reply: DNSRecord,
        query: Query,
        found: Found | None,
        tcp: bool,
        edns: Edns | None,
        client: str,
    ) -> None:
        q = req.q
        labels = tuple(q.qname.label)
        domain = self._response_domain(labels)
        if q.qtype in (_SOA, _NS) and not isinstance(query, InvalidQuery):
            # Consul answers SOA and NS for any name in its domain the same way.
            ns, glue = nameserver_records(
                await self.catalog.servers(), self.datacenter, domain, self._node_ttl
            )
            if q.qtype == _SOA:
                reply.add_answer(soa_record(domain, self.config.soa))
                reply.auth.extend(ns)
            else:
                reply.rr.extend(ns)
            reply.ar.extend(glue)
            return
        if isinstance(query, NodeQuery | ServiceQuery):
            if found is None:
                found = await self._lookup(query)
            if isinstance(query, ServiceQuery):
                ttl = self.config.ttl_for_service(query.service)
                self._service(req, reply, found, query.datacenter, ttl, domain)
            else:
                self._node(req, reply, found, domain)
        elif isinstance(query, PreparedQueryName):
            rcode, nodes, dc, ttl = await self.catalog.prepared_query(query, client)
            self._service(req, reply, (rcode, nodes), dc, ttl, domain)
        elif isinstance(query, AddrQuery):
            # Consul: the address as an answer when asked for its type (or ANY), else as
            # additional data.
            records = node_records(q.qname, _ANY, query.address, self._node_ttl)
            if q.qtype in (_ANY, records[0].rtype):
                reply.rr.extend(records)
            else:
                reply.ar.extend(records)
                reply.add_auth(soa_record(domain, self.config.soa))
        elif isinstance(query, VirtualQuery):
            # Virtual IPs are allocated to Connect services, which senate does not run:
            # every service is one without (Consul answers it NOERROR with no records).
            reply.add_auth(soa_record(domain, self.config.soa))
        elif isinstance(query, ApexQuery):
            if q.qtype == _ANY:
                reply.add_answer(soa_record(domain, self.config.soa))
            else:
                reply.add_auth(soa_record(domain, self.config.soa))
        else:
            assert isinstance(query, InvalidQuery)
            log.warning("QName invalid: %s", query.name)
            self._nxdomain(reply, domain)

    def _nxdomain(self, reply: DNSRecord, domain: str) -> None:
        self.stats.nxdomain += 1
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(soa_record(domain, self.config.soa))

    def _servfail(self, req: DNSRecord, *, aa: int, ra: int, edns: Edns | None) -> bytes:
        wire = DNSRecord(reply_header(req, aa=aa, ra=ra, rcode=RCODE.SERVFAIL), q=req.q).pack()
        return self._with_edns(wire, edns)

    def _failed(self, reply: DNSRecord, rcode: int, domain: str) -> bool:
        if rcode == RCODE.SERVFAIL:
            self.stats.servfail += 1
            reply.header.rcode = RCODE.SERVFAIL
            return True
        if rcode == RCODE.NXDOMAIN:
            self._nxdomain(reply, domain)
            return True
        return False

    def _node(self, req: DNSRecord, reply: DNSRecord, found: Found, domain: str) -> None:
        rcode, node = found
        if self._failed(reply, rcode, domain):
            return
        q = req.q
        if q.qtype not in _NODE_QTYPES:
            reply.add_auth(soa_record(domain, self.config.soa))
            return
        if q.qtype != _TXT:
            reply.rr.extend(
                node_records(q.qname, q.qtype, node.get("Address") or "", self._node_ttl)
            )
        meta = node.get("Meta")
        if meta and q.qtype in (_TXT, _ANY):
            reply.rr.extend(meta_txt_records(q.qname, meta, self._node_ttl))
        elif meta and self._meta_txt():
            reply.ar.extend(meta_txt_records(q.qname, meta, self._node_ttl))
        if not reply.rr:
            reply.add_auth(soa_record(domain, self.config.soa))

    def _service(
        self,
        req: DNSRecord,
        reply: DNSRecord,
        found: Found,
        datacenter: str,
        ttl: int,
        domain: str,
    ) -> None:
        rcode, nodes = found
        if self._failed(reply, rcode, domain):
            return
        q = req.q
        if q.qtype == _SRV:
            answers, extra = service_srv_records(
                q.qname, nodes, datacenter, domain, ttl, self._meta_txt()
            )
            reply.rr.extend(answers)
            reply.ar.extend(extra)
        else:
            limit = self.config.a_record_limit
            reply.rr.extend(service_address_records(q.qname, q.qtype, nodes, ttl, limit))
        if not reply.rr:
            reply.add_auth(soa_record(domain, self.config.soa))

    async def _reverse(self, req: DNSRecord, query: ReverseQuery) -> DNSRecord | None:
        """PTR for a node's address in our datacenter; None when no node has it."""
        if not query.address:
            return None
        node = await self.catalog.node_at(query.address)
        if node is None:
            return None
        record = ptr_record(req.q.qname, node, self.datacenter, self._domain)
        if record is None:
            return None
        reply = DNSRecord(reply_header(req, aa=1, ra=self._ra), q=req.q)
        reply.add_answer(record)
        return reply

    async def _recurse(self, req: DNSRecord, packet: bytes, tcp: bool, edns: Edns | None) -> bytes:
        """Ask the recursors in turn (in order, or shuffled with recursor_strategy "random"),
        over the client's transport (as Consul: a truncated UDP answer makes the client retry
        over TCP, which then reaches the recursor over TCP); the first NOERROR or NXDOMAIN
        answer is passed back unchanged."""
        if not self.config.recursors:
            # Consul's DNS mux has no handler for the name: miekg/dns's HandleFailed, a bare
            # SERVFAIL without OPT (the seed's 30-byte reply to dig)
            self.stats.servfail += 1
            return self._servfail(req, aa=0, ra=0, edns=None)
        self.stats.recursed += 1
        recursors = list(self.config.recursors)
        if self.config.recursor_strategy == "random":
            random.shuffle(recursors)
        timeout = self.config.recursor_timeout
        for host, port in recursors:
            try:
                if tcp:
                    answer = await exchange_tcp(host, port, packet, timeout)
                else:
                    answer = await exchange_udp(host, port, packet, timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.error("recurse failed: %s", exc or "timeout")
                continue
            rcode = answer[3] & 0x0F
            if rcode in (RCODE.NOERROR, RCODE.NXDOMAIN):
                return answer
            log.debug(
                "recurse failed for question %s: rcode %d from %s:%d",
                req.q.qname,
                rcode,
                host,
                port,
            )
        q = req.q
        log.error("all resolvers failed for {%s %d %d}", q.qname, q.qtype, q.qclass)
        self.stats.servfail += 1
        return self._servfail(req, aa=0, ra=1, edns=edns)

    # ---- transports -------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        """Listen on host:port over UDP and TCP (port 0: one free port for both)."""
        loop = asyncio.get_running_loop()
        for attempt in range(5):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(host, port)
            )
            bound = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, host, bound, reuse_address=True
                )
            except OSError:
                udp.close()
                if port != 0 or attempt == 4:
                    raise
                continue
            self._udp = udp
            self.address = (host, bound)
            return

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._tcp_writers):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2.0)
            self._tcp = None
        await self.catalog.close()

    def _on_datagram(self, transport: asyncio.DatagramTransport, packet: bytes, addr: Any) -> None:
        if len(self._tasks) >= MAX_INFLIGHT_UDP:
            self.stats.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._answer_udp(transport, packet, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_udp(
        self, transport: asyncio.DatagramTransport, packet: bytes, addr: Any
    ) -> None:
        wire = await self.handle(packet, False, f"{addr[0]}:{addr[1]}")
        if wire is not None and not transport.is_closing():
            transport.sendto(wire, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tcp_writers) >= MAX_TCP_CONNECTIONS:
            self.stats.dropped += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._tcp_writers.add(writer)
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    packet = await reader.readexactly(size)
                wire = await self.handle(packet, True, client)
                if wire is None:
                    break
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, OSError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            self._tasks.discard(task)
            writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._transport is not None:
            self._server._on_datagram(self._transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away; nothing to do


async def start_dns(agent: AgentAPI, cfg: Any) -> DNSServer:
    """The agent's hook: start DNS on (addresses.dns or client_addr, ports.dns) with
    cfg.dns_config, which the config load validated; an address in use raises OSError for
    the agent to report."""
    server = DNSServer.from_config(agent, cfg.dns_config, datacenter=cfg.datacenter)
    host = (cfg.addresses.dns or cfg.client_addr).split()[0]
    await server.start(host, cfg.ports.dns)
    return server
