"""The line sinks: statsd (UDP), statsite (TCP) and dogstatsd (UDP, with tags), in go-metrics'
formats.

statsd and statsite: `<key>:<value>|g|c|ms`, a label's value appended to the key as one more
dotted part, `:` and ` ` in keys made `_`, the value with six decimals (`%f`). dogstatsd
(datadog-go): labels and `telemetry.dogstatsd_tags` as `|#name:value,...`, the host name
left out of the key, values in their shortest form, counters as integers.

Lines are buffered and flushed every 100 ms, or as soon as a UDP packet would pass 1432
bytes (go-metrics' statsdMaxLen), so a burst of records is one datagram, not one each; a
sink that cannot send drops what it has (metrics never hold the agent up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Final

from agent.metrics.registry import Labels
from agent.netaddr import split_host_port

log = logging.getLogger("agent.metrics")

FLUSH_INTERVAL: Final = 0.1
MAX_PACKET: Final = 1432
#: bytes a TCP sink keeps while its collector is unreachable
MAX_PENDING: Final = 1 << 20


def _flat(key: str) -> str:
    return key.replace(":", "_").replace(" ", "_")


def statsd_line(kind: str, key: str, value: float, labels: Labels) -> str:
    if labels:
        key = key + "." + ".".join(v for _n, v in labels)
    return f"{_flat(key)}:{value:f}|{kind}\n"


def _short(value: float) -> str:
    return repr(float(value)).removesuffix(".0") if value == value else "NaN"


class DogstatsdFormat:
    """datadog-go's lines; the host name is not part of the key (go-metrics' DogStatsdSink)."""

    def __init__(self, hostname: str, tags: Sequence[str]) -> None:
        self.host_part = f".{hostname}." if hostname else ""
        self.tags = tuple(tags)

    def __call__(self, kind: str, key: str, value: float, labels: Labels) -> str:
        if self.host_part and self.host_part in key:
            key = key.replace(self.host_part, ".", 1)
        text = str(int(value)) if kind == "c" else _short(value)
        tags = self.tags + tuple(f"{n}:{v}" for n, v in labels)
        tail = "|#" + ",".join(tags) if tags else ""
        return f"{_flat(key)}:{text}|{kind}{tail}\n"


Format = Callable[[str, str, float, Labels], str]


class LineSink:
    """A sink that writes one line per record to a UDP or TCP collector."""

    def __init__(self, address: str, *, tcp: bool = False, line: Format = statsd_line) -> None:
        host, port = split_host_port(address)  # checked when the config was read
        self.host, self.port = host, port
        self.tcp = tcp
        self.line = line
        self._buf: list[str] = []
        self._size = 0
        self._udp: socket.socket | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def set_gauge(self, key: str, value: float, labels: Labels) -> None:
        self._push(self.line("g", key, value, labels))

    def incr_counter(self, key: str, value: float, labels: Labels) -> None:
        self._push(self.line("c", key, value, labels))

    def add_sample(self, key: str, value: float, labels: Labels) -> None:
        self._push(self.line("ms", key, value, labels))

    def _push(self, line: str) -> None:
        if not self.tcp and self._size + len(line) > MAX_PACKET:
            self.flush()
        if self.tcp and self._size > MAX_PENDING:
            self.dropped += 1
            return
        self._buf.append(line)
        self._size += len(line)

    def flush(self) -> None:
        if not self._buf:
            return
        data = "".join(self._buf).encode()
        self._buf.clear()
        self._size = 0
        if self.tcp:
            if self._writer is not None and not self._writer.is_closing():
                self._writer.write(data)
            else:
                self.dropped += 1
            return
        if self._udp is not None:
            try:
                self._udp.send(data)
            except OSError:  # no collector listening (ECONNREFUSED) or a full buffer
                self.dropped += 1

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.tcp:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, kind, proto, _name, addr = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.connect(addr)
            self._udp = sock
        self._task = asyncio.create_task(self._run(), name=f"metrics sink {self.host}")

    async def _run(self) -> None:
        while True:
            if self.tcp and (self._writer is None or self._writer.is_closing()):
                await self._connect()
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()

    async def _connect(self) -> None:
        try:
            _reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), 5.0
            )
        except (OSError, TimeoutError) as exc:
            log.debug("metrics: statsite %s:%d unreachable: %s", self.host, self.port, exc)
            self._writer = None
            self._buf.clear()
            self._size = 0
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        if self._udp is not None:
            self._udp.close()
