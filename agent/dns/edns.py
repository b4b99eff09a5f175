"""EDNS0 (RFC 6891) as senate's DNS speaks it: the OPT record of a query read, and the OPT
record of the reply written as bytes onto an already packed reply (pure; no I/O).

A reply to a query with an OPT carries one OPT echoing the client's UDP payload size (as
Consul's setEDNS does); answers over UDP are then sized to that buffer (at least 512, at
most 65535 less IP and UDP headers) instead of 512 bytes and udp_answer_limit. A query
with an OPT of another version than 0 is answered BADVERS; one with two OPTs FORMERR.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dnslib import DNSRecord

TYPE_OPT = 41
#: RFC 1035's limit for a UDP reply to a query without EDNS
UDP_MIN_SIZE = 512
#: Consul's maxUDPDatagramSize: 65535 less the largest IP and UDP headers
UDP_MAX_DATAGRAM = 65535 - 68
#: the size of an OPT record without options
OPT_SIZE = 11
#: BADVERS (16) is carried as its upper 8 bits in the OPT's TTL, 0 in the header
EXT_RCODE_BADVERS = 1

_OPT_FIXED = struct.Struct("!BHHIH")


class EDNSFormatError(ValueError):
    """The query's EDNS is malformed (more than one OPT record): FORMERR."""


@dataclass(frozen=True, slots=True)
class Edns:
    #: the client's UDP payload size, as it sent it
    udp_size: int
    version: int = 0


def request_edns(req: DNSRecord) -> Edns | None:
    """The OPT of a parsed query; None without one."""
    opts = [rr for rr in req.ar if rr.rtype == TYPE_OPT]
    if not opts:
        return None
    if len(opts) > 1:
        raise EDNSFormatError("more than one OPT record")
    opt = opts[0]
    return Edns(int(opt.rclass), (int(opt.ttl) >> 16) & 0xFF)


def udp_limit(edns: Edns | int | None) -> int:
    """The largest UDP reply for a query with this EDNS (or client UDP size; 0/None: none)."""
    size = edns.udp_size if isinstance(edns, Edns) else (edns or 0)
    return min(max(size, UDP_MIN_SIZE), UDP_MAX_DATAGRAM)


def opt_record(udp_size: int, ext_rcode: int = 0) -> bytes:
    """An OPT record (root name, no options) with `udp_size` and the extended rcode."""
    return _OPT_FIXED.pack(0, TYPE_OPT, udp_size & 0xFFFF, (ext_rcode & 0xFF) << 24, 0)


def with_opt(wire: bytes, udp_size: int, ext_rcode: int = 0) -> bytes:
    """A packed reply with one OPT record added at the end of its additional section."""
    arcount = struct.unpack_from("!H", wire, 10)[0] + 1
    return wire[:10] + struct.pack("!H", arcount) + wire[12:] + opt_record(udp_size, ext_rcode)
