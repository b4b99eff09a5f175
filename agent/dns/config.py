"""DNS settings: `domain`, `alt_domain`, `recursors` and the `dns_config` block, validated.

Defaults are Consul's: TTLs 0 (no caching downstream), allow_stale true with max_stale
87600h (0.7.1 raised it from 5 s so that DNS keeps answering from any server through a long
outage), only_passing false, enable_truncate false, udp_answer_limit 3, a_record_limit 0 (no
limit), recursor_strategy "sequential", recursor timeout 2 s, use_cache false with
cache_max_age 0, enable_additional_node_meta_txt true, soa {refresh 3600, retry 600,
expire 86400, min_ttl 0}, translate_wan_addrs false (a top-level key).
agent/config.py builds the agent's DNSConfig at load (AgentConfig.dns_config), so a bad value
stops `senate agent` and `senate validate` with its key named.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.durations import config_seconds, json_seconds
from agent.errors import ConfigError
from agent.netaddr import AddressError, InvalidPortError, split_host_port

DNS_PORT = 53
#: Consul 0.7.1+: "87600h", which lets any server answer however long it has been cut off.
DEFAULT_MAX_STALE = 87600 * 3600.0


RECURSOR_STRATEGIES = ("sequential", "random")
#: the SOA's fields as Consul's `soa` block names them, with Consul's defaults
SOA_DEFAULTS = (("refresh", 3600), ("retry", 600), ("expire", 86400), ("min_ttl", 0))
_UINT32 = 2**32 - 1


class DNSConfigError(ConfigError, ValueError):
    """A dns_config value, domain or recursor is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class SOAConfig:
    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@dataclass(frozen=True, slots=True)
class DNSConfig:
    domain: str = "consul."
    #: a second domain answered like `domain` ("" for none); answers name the one asked
    alt_domain: str = ""
    recursors: tuple[tuple[str, int], ...] = ()
    node_ttl: float = 0.0
    #: service name -> TTL in seconds; "*" is the default for services not listed
    service_ttl: tuple[tuple[str, float], ...] = ()
    allow_stale: bool = True
    max_stale: float = DEFAULT_MAX_STALE
    only_passing: bool = False
    enable_truncate: bool = False
    udp_answer_limit: int = 3
    #: at most this many A/AAAA answers to a service question (0: no limit)
    a_record_limit: int = 0
    recursor_strategy: str = "sequential"
    recursor_timeout: float = 2.0
    #: serve catalog reads from the agent's cache, kept fresh by blocking queries
    use_cache: bool = False
    #: with use_cache: an entry whose refresh has failed for longer than this is fetched
    #: again (0: served however long the servers are away)
    cache_max_age: float = 0.0
    #: nodes' metadata as TXT records in the additional section of A/AAAA/SRV answers
    enable_additional_node_meta_txt: bool = True
    soa: SOAConfig = SOAConfig()
    #: answer other datacenters' names with their nodes' WAN address (TaggedAddresses["wan"])
    translate_wan_addrs: bool = False

    def ttl_for_service(self, service: str) -> int:
        """Consul 0.7: the service's own TTL, else the "*" entry, else 0."""
        wildcard = 0.0
        for name, ttl in self.service_ttl:
            if name == service:
                return int(ttl)
            if name == "*":
                wildcard = ttl
        return int(wildcard)


def normalize_domain(domain: str) -> str:
    """The domain in canonical form: lower case, one trailing dot; rejects empty or bad labels."""
    d = domain.strip().lower()
    if not d.endswith("."):
        d += "."
    labels = d[:-1].split(".")
    if d == "." or any(not lab or len(lab) > 63 for lab in labels):
        raise DNSConfigError(
            f'domain: expected a DNS domain such as "consul.", got {json.dumps(domain)}'
        )
    return d


def _alt_domain(alt: str) -> str:
    if not isinstance(alt, str):
        raise DNSConfigError(f"alt_domain: expected a string, got {json.dumps(alt)}")
    if not alt.strip().strip("."):
        return ""
    try:
        return normalize_domain(alt)
    except DNSConfigError:
        raise DNSConfigError(
            f'alt_domain: expected a DNS domain such as "consul.", got {json.dumps(alt)}'
        ) from None


def parse_recursor(addr: str) -> tuple[str, int]:
    """A recursor address (8.8.8.8, 8.8.8.8:53, [::1]:53) as (host, port); host must be an IP."""
    try:
        host, port = split_host_port(addr.strip(), DNS_PORT)
    except InvalidPortError:
        raise DNSConfigError(f"recursors: invalid port in {json.dumps(addr)}") from None
    except AddressError:
        raise DNSConfigError(f"recursors: invalid address {json.dumps(addr)}") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise DNSConfigError(
            f"recursors: expected an IP address with an optional port, got {json.dumps(addr)}"
        ) from None
    return host, port


def _duration(key: str, v: Any) -> float:
    """A config duration string (never negative) or a number of nanoseconds (not negative)."""
    try:
        secs = json_seconds(v, config_seconds)
    except TypeError:
        raise DNSConfigError(
            f'dns_config.{key}: expected a duration such as "5s", got {json.dumps(v)}'
        ) from None
    except ValueError as exc:
        raise DNSConfigError(f"dns_config.{key}: {exc}") from None
    if secs < 0:
        raise DNSConfigError(f"dns_config.{key}: must not be negative")
    return secs


def _count(key: str, v: Any, *, minimum: int, maximum: int = _UINT32) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
        kind = "a positive integer" if minimum > 0 else "a non-negative integer"
        raise DNSConfigError(f"dns_config.{key}: expected {kind}, got {json.dumps(v)}")
    return v


def _soa(v: Any) -> SOAConfig:
    if not isinstance(v, Mapping):
        raise DNSConfigError('dns_config.soa: expected an object such as {"min_ttl": 60}')
    names = dict(SOA_DEFAULTS)
    for key in v:
        if key not in names:
            raise DNSConfigError(f"dns_config.soa: unknown key {json.dumps(key)}")
    return SOAConfig(
        **{
            name: _count(f"soa.{name}", v.get(name, default), minimum=0)
            for name, default in SOA_DEFAULTS
        }
    )


def _bool(key: str, v: Any, prefix: str = "dns_config.") -> bool:
    if not isinstance(v, bool):
        raise DNSConfigError(f"{prefix}{key}: expected true or false, got {json.dumps(v)}")
    return v


def build_dns_config(
    *,
    domain: str = "consul.",
    alt_domain: str = "",
    recursors: list[str] | tuple[str, ...] = (),
    dns_config: Mapping[str, Any] | None = None,
    translate_wan_addrs: bool = False,
) -> DNSConfig:
    """Validate everything the DNS server is configured with; DNSConfigError on bad input."""
    out: dict[str, Any] = {
        "domain": normalize_domain(domain),
        "alt_domain": _alt_domain(alt_domain),
        "recursors": tuple(parse_recursor(r) for r in recursors),
        "translate_wan_addrs": _bool("translate_wan_addrs", translate_wan_addrs, prefix=""),
    }
    if dns_config is not None and not isinstance(dns_config, Mapping):
        raise DNSConfigError("dns_config: expected a JSON object")
    raw = dict(dns_config or {})
    for key, v in raw.items():
        if key == "node_ttl":
            out["node_ttl"] = _duration(key, v)
        elif key == "service_ttl":
            if not isinstance(v, dict):
                raise DNSConfigError(
                    'dns_config.service_ttl: expected an object such as {"*": "5s"}'
                )
            out["service_ttl"] = tuple(
                (str(name), _duration(f"service_ttl.{name}", d)) for name, d in v.items()
            )
        elif key == "allow_stale":
            out["allow_stale"] = _bool(key, v)
        elif key == "max_stale":
            out["max_stale"] = _duration(key, v)
        elif key == "only_passing":
            out["only_passing"] = _bool(key, v)
        elif key == "enable_truncate":
            out["enable_truncate"] = _bool(key, v)
        elif key == "udp_answer_limit":
            out["udp_answer_limit"] = _count(key, v, minimum=1)
        elif key == "a_record_limit":
            out["a_record_limit"] = _count(key, v, minimum=0)
        elif key == "recursor_strategy":
            if v not in RECURSOR_STRATEGIES:
                raise DNSConfigError(
                    'dns_config.recursor_strategy: expected "sequential" or "random", '
                    f"got {json.dumps(v)}"
                )
            out["recursor_strategy"] = v
        elif key == "use_cache":
            out["use_cache"] = _bool(key, v)
        elif key == "cache_max_age":
            out["cache_max_age"] = _duration(key, v)
        elif key == "enable_additional_node_meta_txt":
            out["enable_additional_node_meta_txt"] = _bool(key, v)
        elif key == "soa":
            out["soa"] = _soa(v)
        elif key == "recursor_timeout":
            secs = _duration(key, v)
            if secs <= 0:
                raise DNSConfigError("dns_config.recursor_timeout: must be positive")
            out["recursor_timeout"] = secs
        else:
            raise DNSConfigError(f"dns_config: unknown key {json.dumps(key)}")
    return DNSConfig(**out)
