"""The `watches` of the agent's config files, run as Consul runs them: each watch plan in its
own thread, against this agent's own HTTP API, for as long as the agent runs; a failing
handler is logged and the watch goes on. A reload replaces them with the new config's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from agent.client import HTTPClient
from agent.watches import WatchSpec, parse_watch, run_handler, watch_loop

log = logging.getLogger("agent")


class ConfigWatches:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, http_addr: str, watches: Sequence[dict[str, Any]]) -> None:
        """Run each watch against the HTTP API at `http_addr` ("host:port")."""
        self._stop = threading.Event()
        stop = self._stop
        for n, params in enumerate(watches):
            spec = parse_watch(params)  # validated at load; cannot fail here
            t = threading.Thread(
                target=self._run,
                args=(spec, http_addr, stop),
                name=f"watch-{n}-{spec.type}",
                daemon=True,
            )
            self._threads.append(t)
            t.start()
        if watches:
            log.info("agent: started %d watch plan(s) from the config", len(watches))

    @staticmethod
    def _run(spec: WatchSpec, http_addr: str, stop: threading.Event) -> None:
        client = HTTPClient(http_addr)
        client.timeout = 360.0  # a blocking query holds for BLOCK_WAIT plus jitter

        def handle(index: int, data: Any) -> bool:
            if stop.is_set():
                return False
            problem = run_handler(spec, index, data)
            if problem is not None:
                log.error("agent: Failed to run watch handler (type: %s): %s", spec.type, problem)
            return not stop.is_set()

        try:
            watch_loop(
                spec,
                client,
                handle,
                should_stop=stop.is_set,
                sleep=stop.wait,
                on_error=lambda m: log.error("agent: %s", m),
            )
        finally:
            client.close()

    def stop(self) -> None:
        """Ask every watch to stop; each ends when its current query returns (the HTTP
        server closing ends them at shutdown). Threads are daemons: exit never waits."""
        self._stop.set()
        self._threads = []
