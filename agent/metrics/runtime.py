"""The process's own gauges, every second as go-metrics' runtime stats, in Consul's names
with Python's meaning: `num_goroutines` is the event loop's task count, `alloc_bytes` the
resident set, `sys_bytes` the virtual size, `total_gc_runs` / `total_gc_pause_ns` /
`gc_pause_ns` the cyclic collector's runs and pauses."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import psutil

from agent.metrics.registry import Metrics

PROFILE_INTERVAL = 1.0


class RuntimeStats:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.process = psutil.Process()
        self.total_pause_ns = 0
        self._gc_started = 0

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
        elif self._gc_started:
            pause = time.perf_counter_ns() - self._gc_started
            self._gc_started = 0
            self.total_pause_ns += pause
            self.metrics.sample("runtime.gc_pause_ns", float(pause))

    def emit(self) -> None:
        m = self.metrics
        mem = self.process.memory_info()
        m.gauge("runtime.num_goroutines", float(len(asyncio.all_tasks())))
        m.gauge("runtime.alloc_bytes", float(mem.rss))
        m.gauge("runtime.sys_bytes", float(mem.vms))
        m.gauge("runtime.total_gc_runs", float(sum(s["collections"] for s in gc.get_stats())))
        m.gauge("runtime.total_gc_pause_ns", float(self.total_pause_ns))

    async def run(self) -> None:
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                self.emit()
                await asyncio.sleep(PROFILE_INTERVAL)
        finally:
            gc.callbacks.remove(self._on_gc)
