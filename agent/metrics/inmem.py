"""The in-memory sink behind /v1/agent/metrics (go-metrics' InmemSink as Consul sets it up:
10 s intervals kept for a minute).

Each interval aggregates what was recorded in it: a gauge's last value, a counter's and a
sample's count, sum, sum of squares, min and max. The endpoint shows the last completed
interval (the current one while it is the only one), in go-metrics' MetricsSummary JSON:
Timestamp, Gauges, Points, Counters, Samples.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.metrics.registry import Labels

INTERVAL = 10.0
RETAIN = 60.0


class Aggregate:
    """go-metrics' AggregateSample: what an interval knows of a counter or a sample."""

    __slots__ = ("count", "max", "min", "sum", "sum_sq")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.sum_sq = 0.0
        self.min = 0.0
        self.max = 0.0

    def ingest(self, value: float) -> None:
        if self.count == 0 or value < self.min:
            self.min = value
        if self.count == 0 or value > self.max:
            self.max = value
        self.count += 1
        self.sum += value
        self.sum_sq += value * value

    def __str__(self) -> str:
        """go-metrics' AggregateSample.String()."""
        if self.count == 0:
            return "Count: 0"
        if self.stddev() == 0:
            return f"Count: {self.count} Sum: {self.sum:0.3f}"
        return (
            f"Count: {self.count} Min: {self.min:0.3f} Mean: {self.sum / self.count:0.3f} "
            f"Max: {self.max:0.3f} Stddev: {self.stddev():0.3f} Sum: {self.sum:0.3f}"
        )

    def stddev(self) -> float:
        div = self.count * (self.count - 1)
        if div == 0:
            return 0.0
        return math.sqrt(max(0.0, (self.count * self.sum_sq - self.sum * self.sum) / div))

    def view(self, rate_denominator: float) -> dict[str, Any]:
        return {
            "Count": self.count,
            "Rate": self.sum / rate_denominator,
            "Sum": self.sum,
            "Min": self.min,
            "Max": self.max,
            "Mean": self.sum / self.count if self.count else 0.0,
            "Stddev": self.stddev(),
        }


@dataclass(slots=True)
class Interval:
    start: float
    gauges: dict[tuple[str, Labels], float] = field(default_factory=dict)
    counters: dict[tuple[str, Labels], Aggregate] = field(default_factory=dict)
    samples: dict[tuple[str, Labels], Aggregate] = field(default_factory=dict)


def go_time_utc(seconds: float) -> str:
    """Go's time.Time.String() of a UTC time rounded to the second:
    `2017-08-08 02:55:10 +0000 UTC`, as MetricsSummary.Timestamp."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(round(seconds)))


class InmemSink:
    def __init__(
        self,
        interval: float = INTERVAL,
        retain: float = RETAIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.max_intervals = max(1, int(retain / interval))
        self.clock = clock
        self.intervals: deque[Interval] = deque(maxlen=self.max_intervals)
        self._current_end = 0.0

    def current(self) -> Interval:
        now = self.clock()
        if now < self._current_end and self.intervals:
            return self.intervals[-1]
        start = now - now % self.interval
        self._current_end = start + self.interval
        interval = Interval(start=start)
        self.intervals.append(interval)
        return interval

    def set_gauge(self, key: str, value: float, labels: Labels) -> None:
        self.current().gauges[(key, labels)] = value

    def incr_counter(self, key: str, value: float, labels: Labels) -> None:
        table = self.current().counters
        agg = table.get((key, labels))
        if agg is None:
            agg = table[(key, labels)] = Aggregate()
        agg.ingest(value)

    def add_sample(self, key: str, value: float, labels: Labels) -> None:
        table = self.current().samples
        agg = table.get((key, labels))
        if agg is None:
            agg = table[(key, labels)] = Aggregate()
        agg.ingest(value)

    def displayed(self) -> Interval:
        """The interval /v1/agent/metrics shows: the last completed one, or the current one
        while it is the only one (go-metrics' DisplayMetrics)."""
        self.current()
        return self.intervals[-2] if len(self.intervals) > 1 else self.intervals[-1]

    def closing(self) -> tuple[float, float]:
        """The current interval's start and end (time.time()): what a stream waits for."""
        current = self.current()
        return current.start, self._current_end

    def interval_at(self, start: float) -> Interval | None:
        for iv in self.intervals:
            if iv.start == start:
                return iv
        return None

    def dump(self) -> list[str]:
        """What SIGUSR1 prints (go-metrics' InmemSignal): every completed interval's gauges,
        counters and samples, a label's value appended to the name as a dotted part."""
        self.current()
        lines: list[str] = []
        for iv in list(self.intervals)[:-1]:
            stamp = go_time_utc(iv.start)
            for (k, lb), v in iv.gauges.items():
                lines.append(f"[{stamp}][G] '{_flat(k, lb)}': {v:0.3f}")
            for kind, table in (("C", iv.counters), ("S", iv.samples)):
                for (k, lb), agg in table.items():
                    lines.append(f"[{stamp}][{kind}] '{_flat(k, lb)}': {agg}")
        return lines

    def summary(self, interval: Interval | None = None) -> dict[str, Any]:
        """go-metrics' MetricsSummary of `interval` (default: the one displayed)."""
        iv = interval or self.displayed()
        return {
            "Timestamp": go_time_utc(iv.start),
            "Gauges": [
                {"Name": k, "Value": v, "Labels": dict(lb)}
                for (k, lb), v in sorted(iv.gauges.items())
            ],
            "Points": [],
            "Counters": _aggregates(iv.counters, self.interval),
            "Samples": _aggregates(iv.samples, self.interval),
        }


def _aggregates(table: dict[tuple[str, Labels], Aggregate], denom: float) -> list[dict[str, Any]]:
    return [
        {"Name": k, **agg.view(denom), "Labels": dict(lb)}
        for (k, lb), agg in sorted(table.items(), key=lambda kv: kv[0])
    ]


def _flat(key: str, labels: Labels) -> str:
    return key + "".join("." + v.replace(" ", "_").replace(":", "_") for _n, v in labels)
