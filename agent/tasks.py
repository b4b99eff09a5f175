"""Small asyncio helpers for the agent's parts: starting a listener with Consul's error,
bounded shutdown steps, and a set of background tasks that is cancelled as one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from agent.errors import StartError

log = logging.getLogger("agent")

#: Each part gets this long to stop at shutdown before the agent moves on without it.
SHUTDOWN_STEP_TIMEOUT = 5.0


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if any) and wait until it has unwound; whatever it raised on the way
    out is swallowed: the caller is shutting it down."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def listen(start: Awaitable[Any], what: str) -> None:
    """Await a listener's start; a socket that cannot be bound is a StartError naming it."""
    try:
        await start
    except OSError as exc:
        reason = exc.strerror or str(exc.__cause__ or exc)
        raise StartError(f"Error starting agent: cannot listen on {what}: {reason}") from None


async def stop_step(
    what: str, stop: Awaitable[Any], timeout: float = SHUTDOWN_STEP_TIMEOUT
) -> None:
    """Run one shutdown step, bounded: a part that does not stop is named, not waited on."""
    try:
        await asyncio.wait_for(stop, timeout)
    except TimeoutError:
        log.error("shutdown: %s did not stop within %gs, continuing", what, timeout)
    except Exception as exc:
        log.error("shutdown: stopping %s failed: %s", what, exc)


class Background:
    """The background tasks of one part: spawned by name, cancelled together at stop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self, what: str = "background tasks") -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await stop_step(what, asyncio.wait(tasks))
