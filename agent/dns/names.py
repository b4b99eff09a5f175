"""What a query name asks for, as Consul 1.x's DNS dispatch reads it (pure; no I/O).

Inside the domain or the alt domain (labels compared case-insensitively), the right-most
label that names a kind decides; what follows it up to the domain is the locality,
`<dc>` or `<dc>.dc` (`[.<dc>]` below):

    <node>.node[.<dc>].<domain>                 a node's address (a node ID too)
    [<tag>.]<service>.service[.<dc>].<domain>   a service's healthy instances
    _<service>._<tag>.service[.<dc>].<domain>   RFC 2782 form; the tag "tcp" means no tag
    _<service>._<tag>[.<dc>].<domain>           the same without "service" (SRV questions)
    <query>.query[.<dc>].<domain>               a prepared query (its ID or name) executed
    <hex>.addr[.<dc>].<domain>                  the address the hex spells (8 or 32 digits)
    <service>.virtual[.<dc>].<domain>           the service's virtual IP
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
class AddrQuery:
    """`address` is the IPv4 or IPv6 address the hex label spells."""

    address: str


@dataclass(frozen=True, slots=True)
class VirtualQuery:
    datacenter: str
    service: str


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
    | AddrQuery
    | VirtualQuery
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


_KINDS = frozenset((b"node", b"service", b"query", b"addr", b"virtual"))
#: hex digits per address: IPv4, IPv6
_ADDR_DIGITS = (8, 32)


def classify(
    labels: tuple[bytes, ...],
    domain: tuple[bytes, ...],
    default_dc: str,
    *,
    alt_domain: tuple[bytes, ...] = (),
    srv: bool = False,
) -> Query:
    """Classify a query name given as its labels (dnslib's DNSLabel.label); `srv` says the
    question is for SRV records, where `_<service>._<tag>.<domain>` needs no "service"."""
    lowered = tuple(lab.lower() for lab in labels)
    inside = _strip_domain(lowered, domain, alt_domain)
    if inside is not None:
        return _in_domain(labels[:inside], lowered[:inside], default_dc, srv)
    if lowered[-1:] == _ARPA:
        return _reverse(lowered)
    return OutsideQuery()


def _strip_domain(
    lowered: tuple[bytes, ...], domain: tuple[bytes, ...], alt: tuple[bytes, ...]
) -> int | None:
    """How many labels precede the (longer matching) domain; None outside both."""
    n = len(lowered)
    best: int | None = None
    for dom in (domain, alt):
        d = len(dom)
        if dom and n >= d and lowered[n - d :] == dom and (best is None or n - d < best):
            best = n - d
    return best


def response_domain(labels: tuple[bytes, ...], domain: str, alt_domain: str) -> str:
    """The domain answers name (SOA, NS, SRV targets): the alt domain when the question is
    under it, else the domain (Consul's getResponseDomain)."""
    if not alt_domain:
        return domain
    lowered = tuple(lab.lower() for lab in labels)
    alt = domain_labels(alt_domain)
    if _strip_domain(lowered, domain_labels(domain), ()) is None and (
        _strip_domain(lowered, (), alt) is not None
    ):
        return alt_domain
    return domain


def _text(labels: tuple[bytes, ...]) -> str:
    return ".".join(lab.decode("utf-8", "replace") for lab in labels)


def _locality(suffix: tuple[bytes, ...], dc: str) -> str | None:
    """The datacenter a locality names: none (the default), `<dc>` or `<dc>.dc`; None for
    anything else (peers and partitions are not served)."""
    if not suffix:
        return dc
    if len(suffix) == 1:
        return _text(suffix)
    if len(suffix) == 2 and suffix[1].lower() == b"dc":
        return _text(suffix[:1])
    return None


def _in_domain(labels: tuple[bytes, ...], lowered: tuple[bytes, ...], dc: str, srv: bool) -> Query:
    if not labels:
        return ApexQuery()
    name = _text(labels)
    kind = b""
    i = len(labels) - 1
    while i >= 0:
        if lowered[i] in _KINDS:
            kind = lowered[i]
            parts, suffix = labels[:i], labels[i + 1 :]
            break
        if srv and lowered[i].startswith(b"_"):
            # RFC 2782 without "service": _web._tcp[.dc].consul
            kind = b"service"
            parts, suffix = labels[: i + 1], labels[i + 1 :]
            break
        i -= 1
    if not kind or not parts:
        return InvalidQuery(name)
    if kind == b"query":
        if len(suffix) > 1:
            return InvalidQuery(name)
        where = _text(suffix) if suffix else dc
    else:
        located = _locality(suffix, dc)
        if located is None:
            return InvalidQuery(name)
        where = located
    n = len(parts)
    if kind == b"node":
        # A "." in a node name is allowed: join every label before "node".
        return NodeQuery(where, _text(parts))
    if kind == b"query":
        if n >= 2 and parts[0].startswith(b"_") and parts[-1].startswith(b"_"):
            # RFC 2782 form: _<query>._<protocol>; the protocol is ignored
            return PreparedQueryName(where, _text(parts[:-1])[1:])
        # A "." in a query name is allowed, as Consul: join every label before "query".
        return PreparedQueryName(where, _text(parts))
    if kind == b"service":
        if n == 2 and parts[0].startswith(b"_") and parts[1].startswith(b"_"):
            tag = _text((parts[1][1:],))
            return ServiceQuery(where, _text((parts[0][1:],)), "" if tag.lower() == "tcp" else tag)
        return ServiceQuery(where, _text(parts[-1:]), _text(parts[:-1]))
    if kind == b"virtual":
        return VirtualQuery(where, _text(parts[-1:]))
    assert kind == b"addr"
    address = _hex_address(parts) if n == 1 else None
    return AddrQuery(address) if address is not None else InvalidQuery(name)


def _hex_address(parts: tuple[bytes, ...]) -> str | None:
    digits = parts[0].lower()
    if len(digits) not in _ADDR_DIGITS or not all(bytes([c]) in _HEX for c in digits):
        return None
    return str(ipaddress.ip_address(bytes.fromhex(digits.decode())))


def address_label(address: str) -> str:
    """An IP address as the hex label of its `.addr.` name: 10.0.0.1 -> 0a000001."""
    return ipaddress.ip_address(address).packed.hex()


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
