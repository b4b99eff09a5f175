"""User-event helpers shared by /v1/event/list and `senate watch` (no aiohttp import)."""

from __future__ import annotations

import zlib


def event_id_index(event_id: str) -> int:
    """Consul's IDToIndex: the upper and lower 64 bits of the event's UUID, XORed."""
    hexid = event_id.replace("-", "")
    try:
        value = int(hexid, 16) if len(hexid) == 32 else zlib.crc32(event_id.encode())
    except ValueError:
        value = zlib.crc32(event_id.encode())
    return (value >> 64) ^ (value & 0xFFFFFFFFFFFFFFFF)
