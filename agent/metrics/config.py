"""The `telemetry { }` settings senate acts on (Consul 1.x's lib.TelemetryConfig)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    #: the first part of every metric name (Consul's default "consul")
    metrics_prefix: str = "consul"
    #: leave the host name out of gauge names (go-metrics puts it after the prefix)
    disable_hostname: bool = False
    #: what a metric no prefix_filter entry matches does: emitted (true) or dropped
    filter_default: bool = True
    #: the prefix_filter entries: ("+consul.raft", "-consul.http", ...), longest match wins
    prefix_filter: tuple[str, ...] = ()
    #: "host:port" of a statsd (UDP), statsite (TCP) and DogStatsD (UDP) server; "" for none
    statsd_address: str = ""
    statsite_address: str = ""
    dogstatsd_addr: str = ""
    #: tags every DogStatsD line carries ("env:prod")
    dogstatsd_tags: tuple[str, ...] = ()
    #: seconds a Prometheus series is kept without an update; 0 disables the format
    prometheus_retention_time: float = 0.0
