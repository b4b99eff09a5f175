"""Converters from a parsed config value (JSON or HCL) to a typed field value: each returns the
value or raises ValueError saying what was expected and what was given."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from agent.config import sockaddr
from agent.durations import config_seconds, json_seconds
from agent.logfmt import LEVEL_BY_NAME
from agent.version import PROTOCOL_MAX, PROTOCOL_MIN

Conv = Callable[[Any], Any]


def expect_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {json.dumps(v)}")
    return v


def expect_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected a boolean (true or false), got {json.dumps(v)}")
    return v


def expect_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected an integer, got {json.dumps(v)}")
    return v


def expect_port(v: Any) -> int:
    n = expect_int(v)
    if n < -1 or n > 65535:
        raise ValueError(f"expected a port number (0-65535, or -1 to disable), got {n}")
    return n


def expect_str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of strings, got {json.dumps(v)}")
    return tuple(v)


def expect_duration(v: Any) -> float:
    """A duration string (never negative) or a number of nanoseconds, as Consul accepts."""
    try:
        return json_seconds(v, config_seconds)
    except TypeError:
        if isinstance(v, bool):
            raise ValueError(f"expected a duration, got {json.dumps(v)}") from None
        raise ValueError(f"expected a string, got {json.dumps(v)}") from None


def expect_log_level(v: Any) -> str:
    s = expect_str(v)
    if s.lower() not in LEVEL_BY_NAME:
        raise ValueError(f"expected one of trace, debug, info, warn, err, got {json.dumps(v)}")
    return s.upper()


def expect_ip(v: Any) -> str:
    """One IP address, or a go-sockaddr template that renders to exactly one."""
    s = sockaddr.render(expect_str(v))
    if not s:
        raise ValueError(f"template {json.dumps(v)} resolved to no address")
    if len(s.split()) > 1:
        raise ValueError(
            f"template {json.dumps(v)} resolved to more than one address ({s}); "
            "narrow it down, e.g. with | limit 1"
        )
    try:
        ipaddress.ip_address(s)
    except ValueError:
        raise ValueError(f"expected an IP address, got {json.dumps(v)}") from None
    return s


def expect_client_addr(v: Any) -> str:
    """Space-separated IP addresses (Consul listens on each), templates rendered."""
    s = sockaddr.render(expect_str(v))
    if not s:
        raise ValueError(f"template {json.dumps(v)} resolved to no address")
    for part in s.split():
        try:
            ipaddress.ip_address(part)
        except ValueError:
            raise ValueError(f"expected an IP address, got {json.dumps(v)}") from None
    return s


def expect_node_id(v: Any) -> str:
    s = expect_str(v)
    try:
        uuid.UUID(s)
    except ValueError:
        raise ValueError(f"expected a UUID such as {uuid.uuid4()}, got {json.dumps(v)}") from None
    return s.lower()


def expect_protocol(v: Any) -> int:
    n = expect_int(v)
    if not PROTOCOL_MIN <= n <= PROTOCOL_MAX:
        raise ValueError(
            f"expected a protocol version between {PROTOCOL_MIN} and {PROTOCOL_MAX}, got {n}"
        )
    return n


def expect_raft_protocol(v: Any) -> int:
    """2 (raft IDs are addresses, for a datacenter being upgraded) or 3 (node IDs, Consul
    1.x's default)."""
    n = expect_int(v)
    if n not in (2, 3):
        raise ValueError(f"raft_protocol version {n} is not supported (2 or 3)")
    return n


def expect_nonneg(v: Any) -> int:
    n = expect_int(v)
    if n < 0:
        raise ValueError(f"expected a non-negative integer, got {n}")
    return n


def expect_datacenter(v: Any) -> str:
    s = expect_str(v)
    if not re.fullmatch(r"[a-zA-Z0-9_-]+", s):
        raise ValueError(
            f"expected a datacenter name of letters, digits, '-' and '_', got {json.dumps(v)}"
        )
    return s.lower()


def expect_encrypt(v: Any) -> str:
    s = expect_str(v)
    try:
        key = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected a base64-encoded key (see `senate keygen`)") from None
    if len(key) not in (16, 24, 32):
        raise ValueError(f"expected a key of 16, 24 or 32 bytes, got {len(key)} bytes")
    return s


def expect_obj(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {json.dumps(v)}")
    return v


def expect_service(v: Any) -> dict[str, Any]:
    from agent.local.registry import validate_config_service

    svc = expect_obj(v)
    if not isinstance(svc.get("name"), str) or not svc["name"]:
        raise ValueError('expected a service object with a "name" string')
    if "port" in svc:
        expect_port(svc["port"])
    if "tags" in svc:
        expect_str_list(svc["tags"])
    validate_config_service(svc)  # its checks: type, durations, status
    return svc


def expect_check(v: Any) -> dict[str, Any]:
    from agent.local.registry import validate_config_check

    chk = expect_obj(v)
    if not isinstance(chk.get("name"), str) or not chk["name"]:
        raise ValueError('expected a check object with a "name" string')
    validate_config_check(chk)
    return chk
