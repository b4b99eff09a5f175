"""Answers built from catalog replies, as Consul 0.7's DNS server builds them (pure; no I/O).

Every function takes the reply dicts of `agent/server/endpoints.py` (Node, CheckServiceNode)
and returns dnslib resource records; the server decides what to ask and where to send.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import Any

from dnslib import AAAA, CNAME, PTR, QTYPE, RR, SOA, SRV, A, DNSRecord

#: The hard limit on a UDP reply without EDNS (RFC 1035 4.2.1).
UDP_MAX_SIZE = 512
#: Consul 0.7: never more than this many answers over UDP, whatever udp_answer_limit says.
MAX_UDP_ANSWER_LIMIT = 8

_A, _AAAA, _ANY, _CNAME, _SRV = QTYPE.A, QTYPE.AAAA, QTYPE.ANY, QTYPE.CNAME, QTYPE.SRV


def soa_record(domain: str) -> RR:
    """Consul's SOA for its domain: TTL 0, serial = now, refresh 3600, retry 600, expire 86400."""
    return RR(
        domain,
        QTYPE.SOA,
        ttl=0,
        rdata=SOA("ns." + domain, "postmaster." + domain, (int(time.time()), 3600, 600, 86400, 0)),
    )


def healthy(nodes: Iterable[dict[str, Any]], only_passing: bool) -> list[dict[str, Any]]:
    """CheckServiceNodes.Filter: drop instances with a critical check (or, with only_passing,
    any check that is not passing)."""
    out = []
    for csn in nodes:
        for check in csn.get("Checks") or ():
            status = check.get("Status")
            if status == "critical" or (only_passing and status != "passing"):
                break
        else:
            out.append(csn)
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
    name: Any, qtype: int, nodes: list[dict[str, Any]], ttl: int
) -> list[RR]:
    """One A/AAAA record per distinct instance address, in the order given."""
    seen: set[str] = set()
    out: list[RR] = []
    for csn in nodes:
        addr = instance_address(csn)
        if addr in seen:
            continue
        seen.add(addr)
        out.extend(node_records(name, qtype, addr, ttl))
    return out


def srv_instances(nodes: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(node name, address, port) of each instance; Consul 0.7 answers one SRV record per
    distinct (node, service address, port)."""
    out = []
    for csn in nodes:
        service = csn.get("Service") or {}
        node = (csn.get("Node") or {}).get("Node", "")
        out.append((str(node), instance_address(csn), int(service.get("Port") or 0)))
    return out


def service_srv_records(
    name: Any, nodes: list[dict[str, Any]], datacenter: str, domain: str, ttl: int
) -> tuple[list[RR], list[RR]]:
    """SRV answers (priority 1, weight 1, target <node>.node.<dc>.<domain>) and the targets'
    addresses as additional records; one per distinct (node, address, port)."""
    seen: set[tuple[str, str, int]] = set()
    answers: list[RR] = []
    extra: list[RR] = []
    for node, addr, port in srv_instances(nodes):
        if (node, addr, port) in seen:
            continue
        seen.add((node, addr, port))
        target = f"{node}.node.{datacenter}.{domain}"
        answers.append(RR(name, _SRV, ttl=ttl, rdata=SRV(1, 1, port, target)))
        extra.extend(node_records(target, _ANY, addr, ttl))
    return answers, extra


def ptr_record(name: Any, node: str, datacenter: str, domain: str) -> RR:
    return RR(name, QTYPE.PTR, ttl=0, rdata=PTR(f"{node}.node.{datacenter}.{domain}"))


def _sync_extra(reply: DNSRecord) -> None:
    """Keep only the additional records that belong to a remaining SRV answer's target."""
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


def pack_for_udp(reply: DNSRecord) -> tuple[bytes, bool]:
    """Pack, dropping answers from the end until the reply fits 512 bytes.

    Returns the wire bytes and whether answers had to be dropped to fit (the caller sets TC:
    a reply that lost records for its size must say so, RFC 2181 9)."""
    wire = reply.pack()
    dropped = False
    while len(wire) > UDP_MAX_SIZE and reply.rr:
        reply.rr = reply.rr[:-1]
        if reply.ar:
            _sync_extra(reply)
        dropped = True
        reply.header.tc = 1
        wire = reply.pack()
    if len(wire) > UDP_MAX_SIZE:
        # Nothing left to drop from the answers (huge authority/additional): send the header
        # and question only, truncated, so the client retries over TCP.
        reply.auth, reply.ar = [], []
        reply.header.tc = 1
        dropped = True
        wire = reply.pack()
    return wire, dropped
