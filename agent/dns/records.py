"""Answers built from catalog replies, as Consul 1.x's DNS server builds them (pure; no I/O).

Every function takes the reply dicts of `agent/server/endpoints/` (Node, CheckServiceNode)
and returns dnslib resource records; the server decides what to ask and where to send.
A name from the catalog that DNS cannot carry (a label past 63 bytes, a name past 255)
gives no record rather than an exception.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RR, SOA, SRV, TXT, A, DNSLabel, DNSRecord

from agent.dns.config import SOAConfig
from agent.dns.names import address_label

#: The hard limit on a UDP reply without EDNS (RFC 1035 4.2.1).
UDP_MAX_SIZE = 512
#: Consul 0.7: never more than this many answers over UDP, whatever udp_answer_limit says.
MAX_UDP_ANSWER_LIMIT = 8

_A, _AAAA, _ANY, _CNAME, _SRV = QTYPE.A, QTYPE.AAAA, QTYPE.ANY, QTYPE.CNAME, QTYPE.SRV
_MAX_LABEL, _MAX_NAME = 63, 255
#: Consul answers NS with at most this many servers
MAX_NAMESERVERS = 3
_LEADING_SPACES, _TRAILING_SPACES = re.compile(r"^ +"), re.compile(r" +$")


def dns_name(text: str) -> DNSLabel | None:
    """`text` as a DNS name; None when it cannot be one (empty or long label, long name)."""
    try:
        label = DNSLabel(text)
    except (UnicodeError, ValueError):
        return None
    parts = label.label
    if any(not 0 < len(p) <= _MAX_LABEL for p in parts):
        return None
    if sum(len(p) + 1 for p in parts) + 1 > _MAX_NAME:
        return None
    return label


def valid_name(labels: Iterable[bytes]) -> bool:
    """Whether a parsed question name is one DNS allows (labels of 1-63 bytes, 255 in all)."""
    total = 1
    for label in labels:
        if not 0 < len(label) <= _MAX_LABEL:
            return False
        total += len(label) + 1
    return total <= _MAX_NAME


def soa_record(domain: str, soa: SOAConfig = SOAConfig()) -> RR:
    """Consul's SOA for its domain: ns.<domain>, hostmaster.<domain>, serial = now, the
    `soa` block's refresh/retry/expire/min_ttl, and min_ttl as the record's TTL."""
    return RR(
        domain,
        QTYPE.SOA,
        ttl=soa.min_ttl,
        rdata=SOA(
            "ns." + domain,
            "hostmaster." + domain,
            (int(time.time()), soa.refresh, soa.retry, soa.expire, soa.min_ttl),
        ),
    )


def nameserver_records(
    servers: list[dict[str, Any]], datacenter: str, domain: str, ttl: int
) -> tuple[list[RR], list[RR]]:
    """NS records for the domain naming up to three servers (instances of "consul"), and
    their addresses as glue, as Consul's getNameserversAndNodeRecord."""
    ns: list[RR] = []
    glue: list[RR] = []
    for csn in servers:
        node = csn.get("Node") or {}
        target = dns_name(f"{node.get('Node', '')}.node.{datacenter}.{domain}".lower())
        if target is None:
            continue
        ns.append(RR(domain, QTYPE.NS, ttl=ttl, rdata=NS(target)))
        glue.extend(node_records(target, _ANY, node.get("Address") or "", ttl))
        if len(ns) >= MAX_NAMESERVERS:
            break
    return ns, glue


def rfc1464(key: str, value: str) -> str:
    """A metadata pair as an RFC 1464 TXT string: key=value with `, = and the key's leading
    and trailing spaces quoted by a backquote."""
    key = key.replace("`", "``").replace("=", "`=")
    key = _LEADING_SPACES.sub(lambda m: "` " * len(m.group()), key)
    key = _TRAILING_SPACES.sub(lambda m: "` " * len(m.group()), key)
    return key + "=" + value.replace("`", "``")


def meta_txt_records(name: Any, meta: dict[str, str] | None, ttl: int) -> list[RR]:
    """One TXT record per metadata pair (an "rfc1035-" key gives its value alone)."""
    out = []
    for key, value in (meta or {}).items():
        text = str(value) if str(key).lower().startswith("rfc1035-") else rfc1464(key, value)
        raw = text.encode("utf-8")
        out.append(
            RR(
                name,
                QTYPE.TXT,
                ttl=ttl,
                rdata=TXT([raw[i : i + 255] for i in range(0, max(len(raw), 1), 255)]),
            )
        )
    return out


def address_kind(address: str) -> int:
    """4 or 6 for an IP address, 0 for anything else (a host name)."""
    try:
        socket.inet_pton(socket.AF_INET, address)
        return 4
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, address)
        return 6
    except OSError:
        return 0


def node_records(name: Any, qtype: int, address: str, ttl: int) -> list[RR]:
    """A for an IPv4 address, AAAA for IPv6, CNAME for a host name — when qtype asks for it."""
    kind = address_kind(address)
    if kind == 4:
        if qtype in (_A, _ANY):
            return [RR(name, _A, ttl=ttl, rdata=A(address))]
    elif kind == 6:
        if qtype in (_AAAA, _ANY):
            return [RR(name, _AAAA, ttl=ttl, rdata=AAAA(address))]
    elif address and qtype in (_A, _AAAA, _ANY, _CNAME):
        return [RR(name, _CNAME, ttl=ttl, rdata=CNAME(address))]
    return []


def instance_address(csn: dict[str, Any]) -> str:
    """The service's own address when it has one, else its node's (as Consul)."""
    return (csn.get("Service") or {}).get("Address") or (csn.get("Node") or {}).get("Address") or ""


def service_address_records(
    name: Any, qtype: int, nodes: list[dict[str, Any]], ttl: int, a_record_limit: int = 0
) -> list[RR]:
    """One A/AAAA record per distinct instance address, in the order given, at most
    `a_record_limit` of them (0: all); a host name's CNAME only when no instance has an IP."""
    seen: set[str] = set()
    out: list[RR] = []
    cname: list[RR] = []
    for csn in nodes:
        addr = instance_address(csn)
        if addr in seen:
            continue
        seen.add(addr)
        records = node_records(name, qtype, addr, ttl)
        if records and records[0].rtype == _CNAME:
            cname = cname or records
            continue
        out.extend(records)
        if records and len(out) == a_record_limit:
            break
    return out or cname


@dataclass(frozen=True, slots=True)
class SrvTarget:
    """One SRV answer: its target, the address the target has ("" for a host name, which
    is its own target), the port, and the node the instance runs on."""

    target: str
    address: str
    port: int
    node: dict[str, Any]


def srv_targets(
    nodes: list[dict[str, Any]], datacenter: str, domain: str, qname: str = ""
) -> list[SrvTarget]:
    """The SRV targets of instances as Consul 1.x names them, one per distinct (node,
    address, port): <node>.node.<dc>.<domain> for an instance on its node's IP address,
    <hex>.addr.<dc>.<domain> for one with an IP of its own, the host name itself otherwise
    (a service address naming the question itself means the node)."""
    seen: set[tuple[str, str, int]] = set()
    out: list[SrvTarget] = []
    for csn in nodes:
        service = csn.get("Service") or {}
        node = csn.get("Node") or {}
        name = str(node.get("Node", ""))
        node_addr = str(node.get("Address") or "")
        svc_addr = str(service.get("Address") or "")
        port = int(service.get("Port") or 0)
        key = (name, svc_addr or node_addr, port)
        if key in seen:
            continue
        seen.add(key)
        if (
            svc_addr
            and address_kind(svc_addr) == 0
            and svc_addr.rstrip(".").lower() == qname.rstrip(".").lower()
            and address_kind(node_addr)
        ):
            svc_addr = ""
        if not svc_addr:
            if address_kind(node_addr):
                out.append(SrvTarget(f"{name}.node.{datacenter}.{domain}", node_addr, port, node))
            elif node_addr:
                out.append(SrvTarget(node_addr.rstrip(".") + ".", "", port, node))
        elif address_kind(svc_addr):
            label = address_label(svc_addr)
            out.append(SrvTarget(f"{label}.addr.{datacenter}.{domain}", svc_addr, port, node))
        else:
            out.append(SrvTarget(svc_addr.rstrip(".") + ".", "", port, node))
    return out


def service_srv_records(
    name: Any,
    nodes: list[dict[str, Any]],
    datacenter: str,
    domain: str,
    ttl: int,
    meta_txt: bool = False,
) -> tuple[list[RR], list[RR]]:
    """SRV answers (priority 1, weight 1) and the targets' addresses as additional records
    (with each node's metadata as TXT under its node name when `meta_txt`)."""
    answers: list[RR] = []
    extra: list[RR] = []
    for t in srv_targets(nodes, datacenter, domain, str(name)):
        target = dns_name(t.target)
        if target is None:
            continue
        answers.append(RR(name, _SRV, ttl=ttl, rdata=SRV(1, 1, t.port, target)))
        if t.address:
            extra.extend(node_records(target, _ANY, t.address, ttl))
        if meta_txt and t.node.get("Meta"):
            node_name = dns_name(f"{t.node.get('Node', '')}.node.{datacenter}.{domain}")
            if node_name is not None:
                extra.extend(meta_txt_records(node_name, t.node.get("Meta"), ttl))
    return answers, extra


def ptr_record(name: Any, node: str, datacenter: str, domain: str) -> RR | None:
    target = dns_name(f"{node}.node.{datacenter}.{domain}")
    return None if target is None else RR(name, QTYPE.PTR, ttl=0, rdata=PTR(target))


def _sync_extra(reply: DNSRecord) -> None:
    """Keep only the additional records named by a remaining SRV answer's target (its
    address, and its node's metadata when the target is the node)."""
    targets = {str(rr.rdata.target).lower() for rr in reply.rr if rr.rtype == _SRV}
    reply.ar = [rr for rr in reply.ar if str(rr.rname).lower() in targets]


def limit_answers(reply: DNSRecord, limit: int) -> bool:
    """Cut the answers to min(limit, 8) as Consul does over UDP; True when some were cut."""
    limit = min(limit, MAX_UDP_ANSWER_LIMIT)
    if len(reply.rr) <= limit:
        return False
    reply.rr = reply.rr[:limit]
    if reply.ar:
        _sync_extra(reply)
    return True


def pack_for_udp(reply: DNSRecord, max_size: int = UDP_MAX_SIZE) -> tuple[bytes, bool]:
    """Pack, dropping answers from the end until the reply fits `max_size` bytes.

    Returns the wire bytes and whether answers had to be dropped to fit (the caller sets TC:
    a reply that lost records for its size must say so, RFC 2181 9)."""
    wire = reply.pack()
    dropped = False
    while len(wire) > max_size and reply.rr:
        reply.rr = reply.rr[:-1]
        if reply.ar:
            _sync_extra(reply)
        dropped = True
        reply.header.tc = 1
        wire = reply.pack()
    if len(wire) > max_size:
        # Nothing left to drop from the answers (huge authority/additional): send the header
        # and question only, truncated, so the client retries over TCP.
        reply.auth, reply.ar = [], []
        reply.header.tc = 1
        dropped = True
        wire = reply.pack()
    return wire, dropped
