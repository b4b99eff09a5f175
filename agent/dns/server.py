"""The DNS server on 8600 (UDP and TCP): Consul 0.7's DNS interface over `AgentAPI.rpc`.

Theory of operation. `DNSServer.handle(packet, tcp=...)` turns one query packet into one
reply packet (or None: dropped). Everything else here is transport:

* Packets shorter than a header, and responses (QR set), are dropped and counted in
  `stats.dropped` — answering a response could loop between two servers. A header that
  parses with a body that does not gets FORMERR (`stats.formerr`); so does a query with
  other than one question. Opcodes other than QUERY get NOTIMP. Nothing raises out of
  `handle`: an unexpected error is logged and answered SERVFAIL.
* Names are classified by `names.classify` (pure, so memoised); names in the domain are
  answered from the catalog with one RPC per query (Catalog.NodeServices,
  Health.ServiceNodes, Catalog.ListNodes for reverse lookups), AllowStale as dns_config says,
  re-asked without it when the answering server's LastContact exceeds max_stale. After an
  exact miss, a node or service spelled in another case is looked up (Consul's catalog
  is case-insensitive). No answer is cached: TTLs are 0 unless configured, as Consul's.
* The fast path: an A/ANY query for a node or service, or an SRV query for a service,
  whose addresses are all IPv4 is read and answered by `wire.py` without dnslib (most
  traffic; dnslib's parse and pack cost more than the catalog read). Every other query
  and answer, and any fast answer that would not fit, goes through dnslib.
* Names outside the domain, and reverse names no node has, go to the recursors (recursor.py) over the
  client's transport with recursor_timeout each; without recursors the reply is SERVFAIL
  with flags qr rd (no aa, no ra), as Consul's DNS mux answers a name it has no handler for.
* Over UDP answers are cut to udp_answer_limit (TC only with enable_truncate, as Consul),
  then to 512 bytes (TC always set when records were dropped to fit).
* Replies copy ID, opcode, RD and CD from the query (miekg/dns SetReply), never AD.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import random
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from dnslib import QTYPE, RCODE, DNSError, DNSHeader, DNSRecord

from agent.api import AgentAPI, RPCError
from agent.dns.config import (
    DEFAULT_MAX_STALE,
    DNSConfig,
    DNSConfigError,
    normalize_domain,
    parse_recursor,
)
from agent.dns.names import (
    ApexQuery,
    InvalidQuery,
    NodeQuery,
    OutsideQuery,
    PreparedQueryName,
    Query,
    ReverseQuery,
    ServiceQuery,
    classify,
    domain_labels,
)
from agent.dns.records import (
    MAX_UDP_ANSWER_LIMIT,
    UDP_MAX_SIZE,
    healthy,
    instance_address,
    limit_answers,
    node_records,
    pack_for_udp,
    ptr_record,
    service_address_records,
    service_srv_records,
    soa_record,
    srv_instances,
)
from agent.dns.recursor import exchange_tcp, exchange_udp
from agent.dns.wire import SimpleQuery, a_reply, encode_name, ipv4, parse_query, srv_reply
from agent.durations import parse_seconds
from agent.metrics import metrics

log = logging.getLogger("dns")

#: the server's error for a prepared query no ID or name names (answered NXDOMAIN)
ERR_QUERY_NOT_FOUND = "Query not found"

HEADER_SIZE = 12
TCP_MAX_SIZE = 65535
#: A TCP connection with no query for this long is closed.
TCP_IDLE_TIMEOUT = 10.0
#: Bounds on work in progress: UDP queries being answered and open TCP connections. Beyond
#: them a UDP query is dropped (and counted) and a TCP connection closed at once.
MAX_INFLIGHT_UDP = 1024
MAX_TCP_CONNECTIONS = 256

_SRV, _SOA, _ANY = QTYPE.SRV, QTYPE.SOA, QTYPE.ANY
_IN = 1
_FAST_QTYPES = (QTYPE.A, QTYPE.ANY, QTYPE.SRV)
#: Beyond this many A answers over TCP the general path packs (and bounds) the reply.
FAST_TCP_MAX_ANSWERS = 4000
CLASSIFY_CACHE_SIZE = 4096

#: A catalog lookup's outcome: (rcode, payload) — the node's address, or the instances.
Found = tuple[int, Any]
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
    servfail: int = 0
    nxdomain: int = 0
    recursed: int = 0


def _parse(packet: bytes) -> DNSRecord | None:
    """dnslib's parse; None when the packet is not a well-formed DNS message."""
    try:
        return DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError, UnicodeError, struct.error):
        return None


def _same_address(address: str, wanted: str) -> bool:
    """Whether a catalog address is the address a reverse name names (IPv6 in any form)."""
    if address == wanted:
        return True
    if ":" not in address:
        return False
    try:
        return str(ipaddress.IPv6Address(address)) == wanted
    except ValueError:
        return False


def _wan_node(node: dict[str, Any]) -> dict[str, Any]:
    """The node with its WAN address (TaggedAddresses["wan"]) as Address, when it has one."""
    wan = (node.get("TaggedAddresses") or {}).get("wan")
    return dict(node, Address=wan) if wan else node


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


class DNSServer:
    """Consul 0.7's DNS interface for one agent.

    DNSServer(agent, domain="consul.", recursors=["127.0.0.53:53"], datacenter="dc1",
              node_ttl=0.0, service_ttl={"*": 5.0}, allow_stale=True, max_stale=DEFAULT_MAX_STALE,
              only_passing=False, enable_truncate=False, udp_answer_limit=3,
              recursor_timeout=2.0, translate_wan_addrs=False)
    Bad domain or recursor values raise DNSConfigError.
    """

    def __init__(
        self,
        agent: AgentAPI,
        *,
        domain: str = "consul.",
        recursors: Sequence[str] = (),
        datacenter: str | None = None,
        node_ttl: float = 0.0,
        service_ttl: Mapping[str, float] | None = None,
        allow_stale: bool = True,
        max_stale: float = DEFAULT_MAX_STALE,
        only_passing: bool = False,
        enable_truncate: bool = False,
        udp_answer_limit: int = 3,
        recursor_timeout: float = 2.0,
        translate_wan_addrs: bool = False,
    ) -> None:
        if udp_answer_limit < 1:
            raise DNSConfigError("udp_answer_limit: expected a positive integer")
        if recursor_timeout <= 0:
            raise DNSConfigError("recursor_timeout: must be positive")
        config = DNSConfig(
            domain=normalize_domain(domain),
            recursors=tuple(parse_recursor(r) for r in recursors),
            node_ttl=float(node_ttl),
            service_ttl=tuple((k, float(v)) for k, v in (service_ttl or {}).items()),
            allow_stale=allow_stale,
            max_stale=float(max_stale),
            only_passing=only_passing,
            enable_truncate=enable_truncate,
            udp_answer_limit=udp_answer_limit,
            recursor_timeout=float(recursor_timeout),
            translate_wan_addrs=translate_wan_addrs,
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
        self._domain = config.domain
        self._domain_labels = domain_labels(config.domain)
        # What a name asks for depends only on the name and this configuration, so the
        # classification (not any answer) is memoised, bounded.
        dom, dc = self._domain_labels, self.datacenter
        self._classify: Callable[[tuple[bytes, ...]], Query] = functools.lru_cache(
            maxsize=CLASSIFY_CACHE_SIZE
        )(lambda labels: classify(labels, dom, dc))
        self._node_ttl = int(config.node_ttl)
        self._ra = 1 if config.recursors else 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self.address: tuple[str, int] | None = None

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
        simple: SimpleQuery | None = None
        wire: bytes | None = None
        try:
            simple = parse_query(packet)
            if simple is not None and simple.qclass == _IN and simple.qtype in _FAST_QTYPES:
                # The fast path: A/ANY for a node or a service, SRV for a service, answered
                # without dnslib when every address is IPv4 (else the same lookup result
                # goes the general way).
                query = self._classify(simple.labels)
                if isinstance(query, NodeQuery | ServiceQuery):
                    found = await self._lookup(query)
                    wire = self._fast_reply(packet, simple, query, found, tcp)
                    if wire is None:
                        req = _parse(packet)
                        if req is not None:
                            wire = await self._answer(req, packet, tcp, (query, found))
            if wire is None:
                req = _parse(packet)
                if req is None:
                    stats.formerr += 1
                    return header_error(packet, RCODE.FORMERR)
                if req.header.opcode != 0:
                    return header_error(packet, RCODE.NOTIMP)
                if len(req.questions) != 1:
                    stats.formerr += 1
                    return header_error(packet, RCODE.FORMERR)
                wire = await self._answer(req, packet, tcp, client=client)
        except Exception:
            log.exception("failed to answer a query")
            stats.servfail += 1
            wire = (
                self._servfail(req, aa=1, ra=self._ra).pack()
                if req is not None
                else header_error(packet, RCODE.SERVFAIL)
            )
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

    def _fast_reply(
        self, packet: bytes, simple: SimpleQuery, query: Query, found: Found, tcp: bool
    ) -> bytes | None:
        """All-A answers as bytes; None when the answer needs the general path."""
        rcode, payload = found
        if rcode != RCODE.NOERROR:
            return None
        ra = bool(self._ra)
        if isinstance(query, NodeQuery):
            if simple.qtype == _SRV:
                return None  # a node has no SRV records: the general path says so
            a = ipv4(payload)
            if a is None:
                return None
            return a_reply(packet, simple, [a], self._node_ttl, ra=ra, tc=False)
        assert isinstance(query, ServiceQuery)
        if simple.qtype == _SRV:
            return self._fast_srv(packet, simple, query, payload, tcp)
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
        tc = False
        if not tcp:
            limit = min(self.config.udp_answer_limit, MAX_UDP_ANSWER_LIMIT)
            if len(addresses) > limit:
                addresses = addresses[:limit]
                tc = self.config.enable_truncate
        elif len(addresses) > FAST_TCP_MAX_ANSWERS:
            return None
        ttl = self.config.ttl_for_service(query.service)
        return a_reply(packet, simple, addresses, ttl, ra=ra, tc=tc)

    def _fast_srv(
        self,
        packet: bytes,
        simple: SimpleQuery,
        query: ServiceQuery,
        nodes: list[dict[str, Any]],
        tcp: bool,
    ) -> bytes | None:
        suffix = f".node.{query.datacenter}.{self._domain}"
        records: list[tuple[bytes, int, bytes]] = []
        seen: set[tuple[str, str, int]] = set()
        for key in srv_instances(nodes):
            if key in seen:
                continue
            seen.add(key)
            node, addr, port = key
            a = ipv4(addr)
            target = encode_name(node + suffix)
            if a is None or target is None:
                return None
            records.append((target, port, a))
        tc = False
        if not tcp:
            limit = min(self.config.udp_answer_limit, MAX_UDP_ANSWER_LIMIT)
            if len(records) > limit:
                records = records[:limit]
                tc = self.config.enable_truncate
        ttl = self.config.ttl_for_service(query.service)
        size = TCP_MAX_SIZE if tcp else UDP_MAX_SIZE
        return srv_reply(packet, simple, records, ttl, ra=bool(self._ra), tc=tc, max_size=size)

    async def _answer(
        self,
        req: DNSRecord,
        packet: bytes,
        tcp: bool,
        looked_up: tuple[Query, Found] | None = None,
        client: str = "",
    ) -> bytes:
        q = req.q
        if looked_up is not None:
            query, found = looked_up
        else:
            query = self._classify(tuple(q.qname.label))
            found = None
        if isinstance(query, OutsideQuery):
            return await self._recurse(req, packet, tcp)
        if isinstance(query, ReverseQuery):
            reply = await self._reverse(req, query)
            if reply is None:
                return await self._recurse(req, packet, tcp)
        else:
            reply = DNSRecord(reply_header(req, aa=1, ra=self._ra), q=q)
            if isinstance(query, NodeQuery | ServiceQuery):
                if found is None:
                    found = await self._lookup(query)
                if isinstance(query, ServiceQuery):
                    ttl = self.config.ttl_for_service(query.service)
                    self._service(req, reply, tcp, found, query.datacenter, ttl)
                else:
                    self._node(req, reply, found)
            elif isinstance(query, PreparedQueryName):
                rcode, nodes, dc, ttl = await self._prepared_query(query, client)
                self._service(req, reply, tcp, (rcode, nodes), dc, ttl)
            elif isinstance(query, ApexQuery):
                if q.qtype in (_SOA, _ANY):
                    reply.add_answer(soa_record(self._domain))
                else:
                    reply.add_auth(soa_record(self._domain))
            else:
                assert isinstance(query, InvalidQuery)
                log.warning("QName invalid: %s", query.name)
                self._nxdomain(reply)
        if tcp:
            wire = reply.pack()
            if len(wire) > TCP_MAX_SIZE:
                wire, _ = pack_for_udp(reply)  # cannot happen with sane catalogs; stay valid
            return wire
        if len(reply.rr) <= 1 and not reply.ar:
            wire = reply.pack()
            if len(wire) <= UDP_MAX_SIZE:
                return wire
        return pack_for_udp(reply)[0]

    def _nxdomain(self, reply: DNSRecord) -> None:
        self.stats.nxdomain += 1
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(soa_record(self._domain))

    def _servfail(self, req: DNSRecord, *, aa: int, ra: int) -> DNSRecord:
        return DNSRecord(reply_header(req, aa=aa, ra=ra, rcode=RCODE.SERVFAIL), q=req.q)

    async def _read(self, method: str, args: dict[str, Any]) -> Any:
        """A catalog read with AllowStale as configured; too stale -> asked again of the leader."""
        stale = self.config.allow_stale
        args["AllowStale"] = stale
        # DNS answers as the agent's default token may see (Consul's DNS token)
        args["Token"] = self.agent.tokens.user_token()
        reply = await self.agent.rpc(method, args)
        if stale and float((reply or {}).get("LastContact") or 0.0) > self.config.max_stale:
            log.warning("Query results too stale, re-requesting")
            args = dict(args, AllowStale=False)
            reply = await self.agent.rpc(method, args)
        return reply

    async def _lookup(self, query: NodeQuery | ServiceQuery) -> Found:
        """The catalog read behind a node or service name: (rcode, payload).

        Node: payload is the node's address. Service: the instances that pass the health
        filter, shuffled. SERVFAIL when the RPC fails, NXDOMAIN when nothing is found."""
        try:
            if isinstance(query, NodeQuery):
                node_args = {"Datacenter": query.datacenter, "Node": query.node}
                out = await self._read("Catalog.NodeServices", node_args)
                node_services = (out or {}).get("NodeServices")
                if not node_services:
                    spelled = await self._other_case(query.datacenter, "node", query.node)
                    if spelled is not None:
                        out = await self._read(
                            "Catalog.NodeServices", dict(node_args, Node=spelled)
                        )
                        node_services = (out or {}).get("NodeServices")
                if not node_services:
                    return RCODE.NXDOMAIN, ""
                node = node_services.get("Node") or {}
                if self._translate(query.datacenter):
                    node = _wan_node(node)
                return RCODE.NOERROR, node.get("Address") or ""
            args = {
                "Datacenter": query.datacenter,
                "ServiceName": query.service,
                "ServiceTag": query.tag,
                "TagFilter": query.tag != "",
            }
            out = await self._read("Health.ServiceNodes", args)
            if not (out or {}).get("Nodes"):
                spelled = await self._other_case(query.datacenter, "service", query.service)
                if spelled is not None:
                    out = await self._read("Health.ServiceNodes", dict(args, ServiceName=spelled))
        except RPCError as exc:
            log.error("rpc error: %s", exc)
            return RCODE.SERVFAIL, None
        nodes = healthy((out or {}).get("Nodes") or (), self.config.only_passing)
        if not nodes:
            return RCODE.NXDOMAIN, None
        if self._translate(query.datacenter):
            nodes = [dict(csn, Node=_wan_node(csn.get("Node") or {})) for csn in nodes]
        random.shuffle(nodes)
        return RCODE.NOERROR, nodes

    async def _other_case(self, datacenter: str, kind: str, name: str) -> str | None:
        """The catalog's spelling of a node or service name that differs from `name` only in
        case, or None. Consul's catalog matches these names case-insensitively, as DNS
        names are; asked only after an exact lookup found nothing."""
        if kind == "node":
            out = await self._read("Catalog.ListNodes", {"Datacenter": datacenter})
            names: Any = [n.get("Node", "") for n in (out or {}).get("Nodes") or ()]
        else:
            out = await self._read("Catalog.ListServices", {"Datacenter": datacenter})
            names = (out or {}).get("Services") or {}
        folded = name.lower()
        for other in names:
            if other != name and other.lower() == folded:
                return str(other)
        return None

    def _translate(self, datacenter: str) -> bool:
        return self.config.translate_wan_addrs and datacenter != self.datacenter

    def _failed(self, reply: DNSRecord, rcode: int) -> bool:
        if rcode == RCODE.SERVFAIL:
            self.stats.servfail += 1
            reply.header.rcode = RCODE.SERVFAIL
            return True
        if rcode == RCODE.NXDOMAIN:
            self._nxdomain(reply)
            return True
        return False

    def _node(self, req: DNSRecord, reply: DNSRecord, found: Found) -> None:
        rcode, address = found
        if self._failed(reply, rcode):
            return
        records = node_records(req.q.qname, req.q.qtype, address, self._node_ttl)
        if records:
            reply.rr.extend(records)
        else:
            reply.add_auth(soa_record(self._domain))

    async def _prepared_query(
        self, query: PreparedQueryName, client: str
    ) -> tuple[int, Any, str, int]:
        """Execute a prepared query as Consul's DNS does (the asking agent and address as the
        source, for Near): (rcode, instances, the datacenter they are in, TTL)."""
        ip = client.rpartition(":")[0].strip("[]") if client else ""
        args: dict[str, Any] = {
            "Datacenter": query.datacenter,
            "QueryIDOrName": query.query,
            "Limit": 0,
            "Agent": {"Datacenter": self.datacenter, "Node": self.agent.node_name, "Segment": ""},
            "Source": {"Datacenter": query.datacenter, "Node": "", "Ip": ip},
        }
        try:
            out = await self._read("PreparedQuery.Execute", args)
        except RPCError as exc:
            if str(exc) == ERR_QUERY_NOT_FOUND:
                return RCODE.NXDOMAIN, None, query.datacenter, 0
            log.error("rpc error: %s", exc)
            return RCODE.SERVFAIL, None, query.datacenter, 0
        out = out if isinstance(out, dict) else {}
        datacenter = str(out.get("Datacenter") or query.datacenter)
        ttl_text = str((out.get("DNS") or {}).get("TTL") or "")
        ttl = self.config.ttl_for_service(str(out.get("Service") or ""))
        if ttl_text:
            try:
                ttl = int(parse_seconds(ttl_text))
            except ValueError:
                log.warning(
                    "Failed to parse TTL for prepared query , ignoring: ttl=%s prepared_query=%s",
                    ttl_text,
                    query.query,
                )
                ttl = 0
        nodes = list(out.get("Nodes") or ())
        if not nodes:
            return RCODE.NXDOMAIN, None, datacenter, ttl
        if self._translate(datacenter):
            nodes = [dict(csn, Node=_wan_node(csn.get("Node") or {})) for csn in nodes]
        return RCODE.NOERROR, nodes, datacenter, ttl

    def _service(
        self,
        req: DNSRecord,
        reply: DNSRecord,
        tcp: bool,
        found: Found,
        datacenter: str,
        ttl: int,
    ) -> None:
        rcode, nodes = found
        if self._failed(reply, rcode):
            return
        q = req.q
        if q.qtype == _SRV:
            answers, extra = service_srv_records(q.qname, nodes, datacenter, self._domain, ttl)
            reply.rr.extend(answers)
            reply.ar.extend(extra)
        else:
            reply.rr.extend(service_address_records(q.qname, q.qtype, nodes, ttl))
        if (
            not tcp
            and limit_answers(reply, self.config.udp_answer_limit)
            and self.config.enable_truncate
        ):
            reply.header.tc = 1
        if not reply.rr:
            reply.add_auth(soa_record(self._domain))

    async def _reverse(self, req: DNSRecord, query: ReverseQuery) -> DNSRecord | None:
        """PTR for a node's address in our datacenter; None when no node has it."""
        if not query.address:
            return None
        try:
            out = await self._read("Catalog.ListNodes", {"Datacenter": self.datacenter})
        except RPCError as exc:
            log.error("rpc error: %s", exc)
            return None
        for node in (out or {}).get("Nodes") or ():
            if _same_address(node.get("Address") or "", query.address):
                reply = DNSRecord(
                    reply_header(req, aa=1, ra=self._ra),
                    q=req.q,
                )
                reply.add_answer(
                    ptr_record(req.q.qname, node.get("Node", ""), self.datacenter, self._domain)
                )
                return reply
        return None

    async def _recurse(self, req: DNSRecord, packet: bytes, tcp: bool = False) -> bytes:
        """Ask each recursor in turn, over the client's transport (as Consul: a truncated UDP
        answer makes the client retry over TCP, which then reaches the recursor over TCP);
        the first answer is passed back unchanged."""
        if not self.config.recursors:
            self.stats.servfail += 1
            return self._servfail(req, aa=0, ra=0).pack()
        self.stats.recursed += 1
        for host, port in self.config.recursors:
            try:
                timeout = self.config.recursor_timeout
                if tcp:
                    return await exchange_tcp(host, port, packet, timeout)
                return await exchange_udp(host, port, packet, timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.error("recurse failed: %s", exc or "timeout")
        q = req.q
        log.error("all resolvers failed for {%s %d %d}", q.qname, q.qtype, q.qclass)
        self.stats.servfail += 1
        return self._servfail(req, aa=0, ra=1).pack()

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
