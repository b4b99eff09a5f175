"""The agent's metrics, in the manner of go-metrics (the library Consul records with).

Theory of operation: code records with a key in Consul's words (`"raft.commitTime"`), a value
and optional labels; `Metrics` turns the key into its full name once (metrics_prefix in front,
and for gauges the host name after it, unless disable_hostname) and decides once whether the
prefix_filter lets it through (the longest matching entry wins, else filter_default), then
hands the name to every sink. Recording is a dictionary lookup and a few additions per sink:
no formatting, no allocation beyond the sinks' own.

The sinks (inmem.py, prom.py, statsd.py) each keep what they need of a record; the registry
holds no values itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

Labels = tuple[tuple[str, str], ...]


class Sink(Protocol):
    def set_gauge(self, name: str, value: float, labels: Labels) -> None: ...

    def incr_counter(self, name: str, value: float, labels: Labels) -> None: ...

    def add_sample(self, name: str, value: float, labels: Labels) -> None: ...


class PrefixFilter:
    """prefix_filter: `+prefix` allows, `-prefix` blocks; the longest matching prefix of the
    full name decides, else filter_default (go-metrics' allowMetric)."""

    def __init__(self, entries: Sequence[str], default: bool) -> None:
        self.default = default
        self.rules: list[tuple[str, bool]] = []
        for entry in entries:
            if len(entry) < 2 or entry[0] not in "+-":
                raise ValueError(
                    f"Filter rule must begin with either '+' or '-': {entry!r}"
                    if entry[:1] not in ("+", "-")
                    else f"Filter rule is empty: {entry!r}"
                )
            self.rules.append((entry[1:], entry[0] == "+"))
        self.rules.sort(key=lambda rule: len(rule[0]), reverse=True)

    def allows(self, name: str) -> bool:
        for prefix, allow in self.rules:
            if name.startswith(prefix):
                return allow
        return self.default


class Metrics:
    """What the agent records to. There is one per process, `METRICS` (go-metrics' global,
    as Consul has it: every part records without the registry being threaded through it),
    configured from the telemetry block when the agent starts (agent/metrics/telemetry.py).
    Keys are Consul's, without the prefix."""

    def __init__(
        self,
        *,
        prefix: str = "consul",
        hostname: str = "",
        sinks: Sequence[Sink] = (),
        prefix_filter: PrefixFilter | None = None,
    ) -> None:
        self._names: dict[str, str] = {}
        self._gauge_names: dict[str, str] = {}
        self.configure(prefix=prefix, hostname=hostname, sinks=sinks, prefix_filter=prefix_filter)

    def configure(
        self,
        *,
        prefix: str,
        hostname: str,
        sinks: Sequence[Sink],
        prefix_filter: PrefixFilter | None = None,
    ) -> None:
        """Name with `prefix` (and `hostname` in gauges, "" for none), record to `sinks`."""
        self.prefix = prefix
        self.hostname = hostname
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self._filter = prefix_filter or PrefixFilter((), True)
        self._names.clear()
        self._gauge_names.clear()

    def _resolve(self, key: str, gauge: bool) -> str:
        parts = [key]
        if gauge and self.hostname:
            parts.insert(0, self.hostname)
        if self.prefix:
            parts.insert(0, self.prefix)
        name = ".".join(parts)
        resolved = name if self._filter.allows(name) else ""
        (self._gauge_names if gauge else self._names)[key] = resolved
        return resolved

    def gauge(self, key: str, value: float, labels: Labels = ()) -> None:
        name = self._gauge_names.get(key)
        if name is None:
            name = self._resolve(key, True)
        if name:
            for sink in self.sinks:
                sink.set_gauge(name, value, labels)

    def incr(self, key: str, value: float = 1.0, labels: Labels = ()) -> None:
        name = self._names.get(key)
        if name is None:
            name = self._resolve(key, False)
        if name:
            for sink in self.sinks:
                sink.incr_counter(name, value, labels)

    def sample(self, key: str, value: float, labels: Labels = ()) -> None:
        name = self._names.get(key)
        if name is None:
            name = self._resolve(key, False)
        if name:
            for sink in self.sinks:
                sink.add_sample(name, value, labels)

    def measure_since(self, key: str, start: float, labels: Labels = ()) -> None:
        """A sample of the milliseconds since `start` (a time.perf_counter() reading)."""
        self.sample(key, (time.perf_counter() - start) * 1000.0, labels)


#: the process's registry; until the agent configures it, it records nowhere
METRICS = Metrics(sinks=())
