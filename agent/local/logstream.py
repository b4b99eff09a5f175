"""Log fan-out: the agent's log lines, held back until the banner is printed (Consul's
GatedWriter), kept in a small backlog, and streamed to `monitor` subscribers."""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from agent.logfmt import LEVEL_BY_NAME, ConsulFormatter, format_json, format_record, formatter

BACKLOG = 512


class LogHub(logging.Handler):
    """A logging handler that writes to a stream once opened, and feeds subscribers."""

    def __init__(self, stream: TextIO | None = None, level: int = logging.INFO) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(ConsulFormatter())
        self.stream = stream if stream is not None else sys.stdout
        self.stream_level = level
        self._gate_open = False
        self._held: list[tuple[int, str]] = []
        self.backlog: collections.deque[logging.LogRecord] = collections.deque(maxlen=BACKLOG)
        self._subscribers: set[tuple[int, bool, asyncio.Queue[str]]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.backlog.append(record)
        if record.levelno >= self.stream_level:
            if self._gate_open:
                self._write(line)
            else:
                self._held.append((record.levelno, line))
        for level, json_lines, queue in list(self._subscribers):
            if record.levelno >= level and queue.qsize() < 10_000:
                queue.put_nowait(_line(record, json_lines))

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def open_gate(self) -> None:
        """Flush the lines held back while the banner was being printed; write through after."""
        self._gate_open = True
        held, self._held = self._held, []
        for _, line in held:
            self._write(line)

    async def stream_lines(self, level: str, json_lines: bool = False) -> AsyncIterator[str]:
        """The backlog and then every new line at or above `level`, as Consul's format or
        (`json_lines`, monitor -log-json) hclog's JSON, whichever the stdout writer uses."""
        lvl = LEVEL_BY_NAME.get(level.lower(), logging.INFO)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for record in list(self.backlog):
            if record.levelno >= lvl:
                queue.put_nowait(_line(record, json_lines))
        sub = (lvl, json_lines, queue)
        self._subscribers.add(sub)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(sub)


def syslog_handler(facility: str, level_name: str, address: str = "/dev/log") -> logging.Handler:
    """-syslog: every line also to the local syslog (/dev/log), as Consul's
    `Syslog setup failed` says when there is none. OSError if it cannot connect."""
    from logging.handlers import SysLogHandler

    handler = SysLogHandler(address=address, facility=facility.lower())
    handler.setLevel(LEVEL_BY_NAME.get(level_name.lower(), logging.INFO))
    handler.setFormatter(
        logging.Formatter("consul[%(process)d]: [%(levelname)s] %(name)s: %(message)s")
    )
    return handler


def _line(record: logging.LogRecord, json_lines: bool) -> str:
    line = format_json(record) if json_lines else format_record(record)
    if record.exc_info and not json_lines:
        line += "\n" + logging.Formatter().formatException(record.exc_info)
    return line


def install(hub: LogHub, level_name: str, *, log_json: bool = False) -> None:
    """Route every logger of the agent through the hub, at the configured level; stdout
    in hclog's JSON with -log-json."""
    level = LEVEL_BY_NAME.get(level_name.lower(), logging.INFO)
    hub.stream_level = level
    hub.setFormatter(formatter(log_json))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(hub)
    root.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.INFO)
    for noisy in ("asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
