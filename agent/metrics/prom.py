"""The Prometheus sink behind /v1/agent/metrics?format=prometheus (go-metrics' PrometheusSink
as Consul configures it with `telemetry.prometheus_retention_time`).

Names are Consul's keys with `.`, `-`, ` `, `=` and `/` turned into `_`
(`consul.raft.commitTime` -> `consul_raft_commitTime`). Gauges keep their last value,
counters their running total (exposed without a `_total` suffix, as Go's client does),
samples become summaries with the 0.5/0.9/0.99 quantiles of the last 10 s and a running
count and sum. A series not updated for the retention time is dropped. The text exposition
is prometheus-client's.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from agent.metrics.registry import Labels

#: go-metrics' summary objectives and MaxAge
QUANTILES = (0.5, 0.9, 0.99)
SUMMARY_MAX_AGE = 10.0
#: observations a summary keeps for its quantiles (bounded: memory stays flat under load)
SUMMARY_WINDOW = 2048

_FORBIDDEN = re.compile(r"[ .=\-/]")
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def prometheus_name(key: str) -> str:
    name = _INVALID.sub("_", _FORBIDDEN.sub("_", key))
    return "_" + name if name[:1].isdigit() else name


def _label_name(name: str) -> str:
    return prometheus_name(name)


class _Summary:
    __slots__ = ("count", "recent", "sum", "updated")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.recent: deque[tuple[float, float]] = deque(maxlen=SUMMARY_WINDOW)
        self.updated = 0.0


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


class PrometheusSink:
    def __init__(self, retention: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.retention = retention
        self.clock = clock
        self.gauges: dict[tuple[str, Labels], list[float]] = {}  # -> [value, updated]
        self.counters: dict[tuple[str, Labels], list[float]] = {}  # -> [total, updated]
        self.summaries: dict[tuple[str, Labels], _Summary] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def set_gauge(self, key: str, value: float, labels: Labels) -> None:
        self.gauges[(key, labels)] = [value, self.clock()]

    def incr_counter(self, key: str, value: float, labels: Labels) -> None:
        entry = self.counters.get((key, labels))
        if entry is None:
            self.counters[(key, labels)] = [value, self.clock()]
        else:
            entry[0] += value
            entry[1] = self.clock()

    def add_sample(self, key: str, value: float, labels: Labels) -> None:
        summary = self.summaries.get((key, labels))
        if summary is None:
            summary = self.summaries[(key, labels)] = _Summary()
        now = self.clock()
        summary.count += 1
        summary.sum += value
        summary.recent.append((now, value))
        summary.updated = now

    def exposition(self) -> bytes:
        """The text exposition. prometheus-client names a counter family `<name>_total` in
        its HELP and TYPE lines; Go's client (Consul's) does not, and the samples are
        `<name>`, so those two lines get the family's own name back."""
        text = generate_latest(self.registry)
        for counter in {prometheus_name(key) for key, _labels in self.counters}:
            name = counter.encode()
            for head in (b"# HELP ", b"# TYPE "):
                text = text.replace(head + name + b"_total ", head + name + b" ", 1)
        return text

    def expire(self) -> None:
        """Drop the series not updated within the retention time."""
        cutoff = self.clock() - self.retention
        for table in (self.gauges, self.counters):
            for k in [k for k, (_v, updated) in table.items() if updated < cutoff]:
                del table[k]
        for k in [k for k, s in self.summaries.items() if s.updated < cutoff]:
            del self.summaries[k]

    def families(self) -> Iterator[Metric]:
        self.expire()
        yield from self._family("gauge", self.gauges)
        yield from self._family("counter", self.counters)
        now = self.clock()
        by_name: dict[str, Metric] = {}
        for (key, labels), summary in sorted(self.summaries.items()):
            name = prometheus_name(key)
            family = by_name.get(name)
            if family is None:
                family = by_name[name] = Metric(name, key, "summary")
            while summary.recent and summary.recent[0][0] < now - SUMMARY_MAX_AGE:
                summary.recent.popleft()
            ordered = sorted(v for _t, v in summary.recent)
            lb = {_label_name(k): v for k, v in labels}
            for q in QUANTILES:
                family.add_sample(name, {**lb, "quantile": str(q)}, _quantile(ordered, q))
            family.add_sample(name + "_sum", lb, summary.sum)
            family.add_sample(name + "_count", lb, summary.count)
        yield from by_name.values()

    def _family(self, kind: str, table: dict[tuple[str, Labels], list[float]]) -> Iterator[Metric]:
        by_name: dict[str, Metric] = {}
        for (key, labels), (value, _updated) in sorted(table.items()):
            name = prometheus_name(key)
            family = by_name.get(name)
            if family is None:
                family = by_name[name] = Metric(name, key, kind)
            family.add_sample(name, {_label_name(k): v for k, v in labels}, value)
        yield from by_name.values()


class _Collector(Collector):
    def __init__(self, sink: PrometheusSink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        return self.sink.families()
