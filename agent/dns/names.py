"""What a query name asks for, as Consul 0.7's DNS dispatch reads it (pure; no I/O).

Inside the domain (labels compared case-insensitively):

    <node>.node[.<dc>].<domain>                 a node's address
    [<tag>.]<service>.service[.<dc>].<domain>   a service's healthy instances
    _<service>._<tag>.service[.<dc>].<domain>   RFC 2782 form; the tag "tcp" means no tag
    <query>.query[.<dc>].<domain>               a prepared query (its ID or name) executed
    <domain>                                    the apex (SOA)

Anything else inside the domain is invalid (NXDOMAIN). Names under arpa. are reverse
lookups; every other name is outside the domain and goes to the recursors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeQuery:
    datacenter: str
    node: str


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    datacenter: str
    service: str
    tag: str


@dataclass(frozen=True, slots=True)
class PreparedQueryName:
    datacenter: str
    query: str


@dataclass(frozen=True, slots=True)
class ApexQuery:
    pass


@dataclass(frozen=True, slots=True)
class InvalidQuery:
    name: str


@dataclass(frozen=True, slots=True)
class ReverseQuery:
    """A name under arpa.; `address` is the IPv4 or (compressed) IPv6 address it names, ""
    when it names none."""

    address: str


@dataclass(frozen=True, slots=True)
class OutsideQuery:
    pass


Query = (
    NodeQuery
    | ServiceQuery
    | PreparedQueryName
    | ApexQuery
    | InvalidQuery
    | ReverseQuery
    | OutsideQuery
)

_ARPA = (b"arpa",)
_IN_ADDR = (b"in-addr", b"arpa")
_IP6 = (b"ip6", b"arpa")
_HEX = frozenset(bytes([c]) for c in b"0123456789abcdef")


def domain_labels(domain: str) -> tuple[bytes, ...]:
    """The labels of a domain, lower case: consul. -> (b"consul",)."""
    return tuple(lab.encode() for lab in domain.lower().strip(".").split(".") if lab)


def classify(labels: tuple[bytes, ...], domain: tuple[bytes, ...], default_dc: str) -> Query:
    """Classify a query name given as its labels (dnslib's DNSLabel.label)."""
    n, d = len(labels), len(domain)
    lowered = tuple(lab.lower() for lab in labels)
    if n >= d and lowered[n - d :] == domain:
        return _in_domain(labels[: n - d], lowered[: n - d], default_dc)
    if lowered[-1:] == _ARPA:
        return _reverse(lowered)
    return OutsideQuery()


def _text(labels: tuple[bytes, ...]) -> str:
    return ".".join(lab.decode("utf-8", "replace") for lab in labels)


def _in_domain(labels: tuple[bytes, ...], lowered: tuple[bytes, ...], dc: str) -> Query:
    if not labels:
        return ApexQuery()
    name = _text(labels)
    kind = lowered[-1]
    if kind not in (b"node", b"service", b"query") and len(labels) >= 2:
        # The last label is a datacenter (one level, as Consul's names use it).
        dc = _text(labels[-1:])
        labels, lowered = labels[:-1], lowered[:-1]
        kind = lowered[-1]
    n = len(labels)
    if kind == b"node" and n >= 2:
        # A "." in a node name is allowed: join every label before "node".
        return NodeQuery(dc, _text(labels[:-1]))
    if kind == b"query" and n >= 2:
        # A "." in a query name is allowed, as Consul: join every label before "query".
        return PreparedQueryName(dc, _text(labels[:-1]))
    if kind == b"service" and n >= 2:
        if n == 3 and labels[0].startswith(b"_") and labels[1].startswith(b"_"):
            tag = _text((labels[1][1:],))
            return ServiceQuery(dc, _text((labels[0][1:],)), "" if tag.lower() == "tcp" else tag)
        return ServiceQuery(dc, _text(labels[n - 2 : n - 1]), _text(labels[: n - 2]))
    return InvalidQuery(name)


def _reverse(lowered: tuple[bytes, ...]) -> ReverseQuery:
    if len(lowered) == 6 and lowered[4:] == _IN_ADDR:
        octets = lowered[3::-1]
        if all(o.isdigit() and len(o) <= 3 and int(o) <= 255 for o in octets):
            return ReverseQuery(".".join(str(int(o)) for o in octets))
    if len(lowered) == 34 and lowered[32:] == _IP6:
        nibbles = lowered[31::-1]
        if all(len(n) == 1 and n in _HEX for n in nibbles):
            digits = b"".join(nibbles).decode()
            groups = ":".join(digits[i : i + 4] for i in range(0, 32, 4))
            return ReverseQuery(str(ipaddress.IPv6Address(groups)))
    return ReverseQuery("")


def reverse_name(address: str) -> str:
    """The reverse name of an address: 10.1.2.3 -> 3.2.1.10.in-addr.arpa.; IPv6 -> ip6.arpa."""
    return ipaddress.ip_address(address).reverse_pointer + "."
