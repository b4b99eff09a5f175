"""Progress and error output for `provision`: a line per host and step as it happens (rich), and
at the end the errors grouped per host with the failing command, its exit status and the tail
of its stderr."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provision.hosts import HostError, StepError

_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "skip": "dim", "...": "cyan"}


class Reporter:
    """Thread-safe: steps on many hosts report at once. `on_event` lets tests observe steps."""

    def __init__(
        self,
        console: Console | None = None,
        on_event: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.console = console or Console(highlight=False)
        self.on_event = on_event
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def line(self, host: str, step: str, status: str, detail: str = "") -> None:
        style = _STYLE.get(status, "")
        elapsed = time.monotonic() - self._t0
        text = (
            f"[dim]{elapsed:6.1f}s[/] [bold]{escape(host):<14}[/] {escape(step):<16} "
            f"[{style}]{escape(status)}[/]" + (f"  {escape(detail)}" if detail else "")
        )
        with self._lock:
            self.console.print(text)
        if self.on_event is not None:
            self.on_event(host, step, status)

    def info(self, message: str) -> None:
        with self._lock:
            self.console.print(escape(message))

    def warn(self, message: str) -> None:
        with self._lock:
            self.console.print(f"[yellow]warning:[/] {escape(message)}")

    def table(self, table: Table) -> None:
        with self._lock:
            self.console.print(table)

    def errors(self, errors: Mapping[str, BaseException]) -> None:
        """Errors grouped per host."""
        with self._lock:
            self.console.print(f"[bold red]{len(errors)} host(s) failed:[/]")
            for host, exc in errors.items():
                self.console.print(f"[bold]{escape(host)}[/]")
                for line in describe(exc).splitlines():
                    self.console.print(f"    {escape(line)}")


def describe(exc: BaseException) -> str:
    if isinstance(exc, StepError):
        status = "timed out" if exc.exit_code is None else f"exit status {exc.exit_code}"
        out = f"step: {exc.step}\ncommand: {exc.command}\n{status}"
        tail = exc.stderr_tail
        if tail:
            out += "\nstderr (tail):\n" + "\n".join(f"  {ln}" for ln in tail.splitlines())
        return out
    if isinstance(exc, HostError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
