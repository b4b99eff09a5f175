"""The fast path's wire format: a plain query in, an all-A answer out, without dnslib.

Most DNS traffic is an A (or ANY) question for a node or a service whose instances have
IPv4 addresses. dnslib's parse and pack cost more than the catalog read behind them, so
this module reads the common query shape by hand (with or without an EDNS0 OPT record) and
writes A and SRV answers as bytes. Anything it does not recognise (`parse_query` returns
None) goes the general dnslib path.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
QTYPE_CLASS = struct.Struct("!HH")
TTL = struct.Struct("!I")
MAX_NAME = 255
#: Answers point at the question's name (offset 12) instead of repeating it.
_A_RR_HEAD = b"\xc0\x0c\x00\x01\x00\x01"
_A_RDLENGTH = b"\x00\x04"
_QR, _AA, _TC, _RA = 0x8000, 0x0400, 0x0200, 0x0080
_RD_CD = 0x0110
#: an OPT record's fixed part after its root name: TYPE, CLASS (UDP size), TTL, RDLENGTH
_OPT = struct.Struct("!HHIH")
_TYPE_OPT = 41


@dataclass(frozen=True, slots=True)
class SimpleQuery:
    labels: tuple[bytes, ...]
    qtype: int
    qclass: int
    #: offset just past the question (QTYPE, QCLASS)
    end: int
    #: the client's EDNS0 UDP payload size; 0 when the query has no OPT record
    edns_size: int = 0


def parse_query(packet: bytes) -> SimpleQuery | None:
    """A standard query with one uncompressed question, no answer/authority records and at
    most an EDNS0 (version 0) OPT record; None for anything else (the caller parses it the
    general way)."""
    if len(packet) < 17 or packet[2] & 0xF8:  # QR set, or an opcode other than QUERY
        return None
    _, _, qd, an, ns, ar = HEADER.unpack_from(packet)
    if qd != 1 or an or ns or ar > 1:
        return None
    labels: list[bytes] = []
    pos = 12
    limit = min(len(packet), 12 + MAX_NAME)
    while pos < limit:
        n = packet[pos]
        if n == 0:
            pos += 1
            break
        if n > 63 or pos + 1 + n >= limit:  # compression pointer, bad length, or too long
            return None
        labels.append(packet[pos + 1 : pos + 1 + n])
        pos += 1 + n
    else:
        return None
    if pos + 4 > len(packet):
        return None
    qtype, qclass = QTYPE_CLASS.unpack_from(packet, pos)
    end = pos + 4
    edns_size = 0
    if ar:
        # One OPT record: the root name, then its fixed part, then options (ignored).
        if end + 11 > len(packet) or packet[end] != 0:
            return None
        rtype, udp_size, ttl, rdlength = _OPT.unpack_from(packet, end + 1)
        if rtype != _TYPE_OPT or (ttl >> 16) & 0xFF or end + 11 + rdlength != len(packet):
            return None
        edns_size = udp_size
    return SimpleQuery(tuple(labels), qtype, qclass, end, edns_size)


def ipv4(address: str) -> bytes | None:
    try:
        return socket.inet_aton(address) if address.count(".") == 3 else None
    except OSError:
        return None


def a_reply(
    packet: bytes, query: SimpleQuery, addresses: list[bytes], ttl: int, *, ra: bool, tc: bool
) -> bytes:
    """The authoritative reply to `packet` with one A record per 4-byte address."""
    flags = _QR | _AA | (HEADER.unpack_from(packet)[1] & _RD_CD)
    if ra:
        flags |= _RA
    if tc:
        flags |= _TC
    head = packet[:2] + struct.pack("!HHHHH", flags, 1, len(addresses), 0, 0)
    rr = _A_RR_HEAD + TTL.pack(ttl) + _A_RDLENGTH
    return b"".join((head, packet[12 : query.end], *(rr + a for a in addresses)))


def encode_name(text: str) -> bytes | None:
    """A domain name ("a.b.consul.") in wire form; None when a label or the name is too long
    or a label is empty."""
    raw = text.encode("utf-8")
    labels = raw[:-1].split(b".") if raw.endswith(b".") else raw.split(b".")
    out = bytearray()
    for label in labels:
        if not 0 < len(label) <= 63:
            return None
        out.append(len(label))
        out += label
    out.append(0)
    return bytes(out) if len(out) <= MAX_NAME else None


def srv_reply(
    packet: bytes,
    query: SimpleQuery,
    records: list[tuple[bytes, int, bytes]],
    ttl: int,
    *,
    ra: bool,
    tc: bool,
    max_size: int,
) -> bytes | None:
    """The authoritative SRV reply (priority 1, weight 1) to `packet`, one answer per
    (target in wire form, port, IPv4 address) with the target's A record as additional
    data pointing back at the target; None when it would exceed `max_size`."""
    flags = _QR | _AA | (HEADER.unpack_from(packet)[1] & _RD_CD)
    if ra:
        flags |= _RA
    if tc:
        flags |= _TC
    n = len(records)
    parts = [packet[:2] + struct.pack("!HHHHH", flags, 1, n, 0, n), packet[12 : query.end]]
    offset = query.end
    targets: list[int] = []
    ttl_bytes = TTL.pack(ttl)
    for target, port, _ in records:
        rdata = struct.pack("!HHH", 1, 1, port) + target
        parts.append(
            b"\xc0\x0c\x00\x21\x00\x01" + ttl_bytes + struct.pack("!H", len(rdata)) + rdata
        )
        targets.append(offset + 12 + 6)  # name pointer, type, class, TTL, rdlength; 3 shorts
        offset += 12 + len(rdata)
    for (_, _, address), at in zip(records, targets, strict=True):
        if at > 0x3FFF:
            return None
        parts.append(
            struct.pack("!H", 0xC000 | at) + b"\x00\x01\x00\x01" + ttl_bytes + _A_RDLENGTH + address
        )
    wire = b"".join(parts)
    return wire if len(wire) <= max_size else None
