"""The `telemetry` block (and the 0.7 top-level keys it replaced: statsd_addr, statsite_addr,
statsite_prefix, dogstatsd_addr, dogstatsd_tags) as handlers of the config document: values
land in `acc["telemetry"]`, which becomes a `TelemetryConfig`. The block's other keys
(circonus_*, enable_host_metrics, ...) have no effect and are warned as such."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config import convert as c
from agent.metrics.config import TelemetryConfig
from agent.metrics.registry import PrefixFilter
from agent.netaddr import split_host_port

Acc = dict[str, Any]
Handler = Callable[[Any, Acc], None]


def _address(value: Any) -> str:
    text = c.expect_str(value)
    split_host_port(text)  # AddressError (a ValueError) in Go's words
    return text


def _prefix_rules(value: Any) -> tuple[str, ...]:
    """Consul's rules (+allow, -block); one without its sign is refused at load (Consul warns
    and drops it, which leaves a metric the operator meant to block flowing)."""
    rules = c.expect_str_list(value)
    PrefixFilter(rules, True)  # ValueError in go-metrics' words
    return rules


def _tags(value: Any) -> tuple[str, ...]:
    return c.expect_str_list(value)


def _prefix(value: Any) -> str:
    return c.expect_str(value).strip(".")


def _set(name: str, conv: c.Conv) -> Handler:
    def handle(value: Any, acc: Acc) -> None:
        acc.setdefault("telemetry", {})[name] = conv(value)

    return handle


def _legacy(name: str, conv: c.Conv) -> Handler:
    """A 0.7 top-level key: fills what the telemetry block does not set."""

    def handle(value: Any, acc: Acc) -> None:
        acc.setdefault("telemetry_legacy", {})[name] = conv(value)

    return handle


TELEMETRY_HANDLERS: dict[str, Handler] = {
    "telemetry.disable_hostname": _set("disable_hostname", c.expect_bool),
    "telemetry.metrics_prefix": _set("metrics_prefix", _prefix),
    "telemetry.prefix_filter": _set("prefix_filter", _prefix_rules),
    "telemetry.filter_default": _set("filter_default", c.expect_bool),
    "telemetry.prometheus_retention_time": _set("prometheus_retention_time", c.expect_duration),
    "telemetry.statsd_address": _set("statsd_address", _address),
    "telemetry.statsite_address": _set("statsite_address", _address),
    "telemetry.dogstatsd_addr": _set("dogstatsd_addr", _address),
    "telemetry.dogstatsd_tags": _set("dogstatsd_tags", _tags),
    "statsd_addr": _legacy("statsd_address", _address),
    "statsite_addr": _legacy("statsite_address", _address),
    "statsite_prefix": _legacy("metrics_prefix", _prefix),
    "dogstatsd_addr": _legacy("dogstatsd_addr", _address),
    "dogstatsd_tags": _legacy("dogstatsd_tags", _tags),
}


def telemetry_config(values: Acc) -> TelemetryConfig:
    """Pop the accumulated telemetry values out of `values` into one TelemetryConfig."""
    merged = dict(values.pop("telemetry_legacy", {}))
    merged.update(values.pop("telemetry", {}))
    return TelemetryConfig(**merged)
