"""`Telemetry`: the registry and its sinks as the `telemetry` block configures them, with the
tasks that keep them going (sink flushes, runtime stats), started and stopped as one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from agent.metrics.config import TelemetryConfig
from agent.metrics.inmem import InmemSink
from agent.metrics.prom import PrometheusSink
from agent.metrics.registry import METRICS, PrefixFilter, Sink
from agent.metrics.runtime import RuntimeStats
from agent.metrics.statsd import DogstatsdFormat, LineSink

log = logging.getLogger("agent")


class Telemetry:
    def __init__(self, cfg: TelemetryConfig, hostname: str | None = None) -> None:
        host = socket.gethostname() if hostname is None else hostname
        self.inmem = InmemSink()
        self.prometheus = (
            PrometheusSink(cfg.prometheus_retention_time)
            if cfg.prometheus_retention_time > 0
            else None
        )
        self.line_sinks: list[LineSink] = []
        if cfg.statsd_address:
            self.line_sinks.append(LineSink(cfg.statsd_address))
        if cfg.statsite_address:
            self.line_sinks.append(LineSink(cfg.statsite_address, tcp=True))
        if cfg.dogstatsd_addr:
            self.line_sinks.append(
                LineSink(cfg.dogstatsd_addr, line=DogstatsdFormat(host, cfg.dogstatsd_tags))
            )
        sinks: list[Sink] = [
            self.inmem,
            *([self.prometheus] if self.prometheus else []),
            *self.line_sinks,
        ]
        self.config = cfg
        self.metrics = METRICS
        self.metrics.configure(
            prefix=cfg.metrics_prefix,
            hostname="" if cfg.disable_hostname else host,
            sinks=sinks,
            prefix_filter=PrefixFilter(cfg.prefix_filter, cfg.filter_default),
        )
        self._runtime: asyncio.Task[None] | None = None

    def dump(self) -> None:
        """SIGUSR1: the completed intervals of the in-memory metrics to the log, as Consul."""
        for line in self.inmem.dump():
            log.info("%s", line)

    async def start(self) -> None:
        for sink in self.line_sinks:
            try:
                await sink.start()
            except OSError as exc:
                log.error("agent: metrics sink %s:%d not started: %s", sink.host, sink.port, exc)
        self._runtime = asyncio.create_task(RuntimeStats(self.metrics).run(), name="runtime stats")

    async def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runtime
        for sink in self.line_sinks:
            await sink.stop()
