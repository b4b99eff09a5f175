"""Wire messages of the gossip layer: msgpack `[type, body]` pairs (memberlist net.go).

A UDP packet is a msgpack array of such pairs (a compound message); a TCP stream carries
one pair per 4-byte-length frame. Bodies are maps with short keys. Decoding validates
every field a handler reads and raises `BadMessage`, which callers count and drop.
"""

from __future__ import annotations

import enum
import socket
import struct
from typing import Any

import msgpack


class MessageType(enum.IntEnum):
    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    USER = 8
    NACK = 11


class BadMessage(Exception):
    """A message that is not valid msgpack, has the wrong shape, or a bad field."""


#: Bytes a compound packet spends on its array header and per message (conservative).
COMPOUND_HEADER_OVERHEAD = 5
COMPOUND_OVERHEAD = 1


def encode(kind: MessageType, body: dict[str, Any]) -> bytes:
    return msgpack.packb([int(kind), body], use_bin_type=True)


def compound(encoded: list[bytes]) -> bytes:
    """A msgpack array made of already-encoded messages."""
    n = len(encoded)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
    return head + b"".join(encoded)


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise BadMessage(f"malformed msgpack: {exc}") from exc


def unpack(data: bytes) -> Any:
    """Any msgpack value; every decoding failure (bad bytes, unhashable keys, depth)
    becomes BadMessage."""
    return _unpack(data)


def decode_one(item: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(item, list) or len(item) != 2:
        raise BadMessage("message is not a [type, body] pair")
    kind, body = item
    if not isinstance(kind, int) or isinstance(kind, bool) or not isinstance(body, dict):
        raise BadMessage("message type or body has the wrong type")
    return kind, body


def decode_packet(data: bytes) -> list[Any]:
    """The raw items of a compound packet; each still goes through `decode_one`."""
    obj = _unpack(data)
    if not isinstance(obj, list):
        raise BadMessage("packet is not a message array")
    return obj


def decode_stream(data: bytes) -> tuple[int, dict[str, Any]]:
    return decode_one(_unpack(data))


def get_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise BadMessage(f"field {key} must be a string")
    return value


def get_int(body: dict[str, Any], key: str, lo: int = 0, hi: int = 2**63) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadMessage(f"field {key} must be an integer in [{lo}, {hi}]")
    return value


def get_bytes(body: dict[str, Any], key: str) -> bytes:
    value = body.get(key, b"")
    if not isinstance(value, bytes):
        raise BadMessage(f"field {key} must be bytes")
    return value


def get_bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadMessage(f"field {key} must be a boolean")
    return value


def get_list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise BadMessage(f"field {key} must be a list")
    return value


def get_ip(body: dict[str, Any], key: str) -> str:
    """An IP address literal (never a host name: nothing on the wire may cause a lookup)."""
    value = get_str(body, key)
    if not is_ip(value):
        raise BadMessage(f"field {key} must be an IP address")
    return value


def is_ip(text: str) -> bool:
    """An IPv4 or IPv6 literal (inet_pton: C speed, push/pulls check thousands)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except (OSError, ValueError):
            continue
    return False


def get_ip_port(body: dict[str, Any], key: str) -> str:
    """An "ip:port" address with an IP literal."""
    value = get_str(body, key)
    host, _, port = value.rpartition(":")
    if not is_ip(host.strip("[]")):
        raise BadMessage(f"field {key} must be ip:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadMessage(f"field {key} has a bad port")
    return value
