"""The server port listener: one TCP port, protocols selected by the first byte.

Raft registers `RPCType.RAFT`, server RPC `RPCType.CONSUL`, snapshots `RPCType.SNAPSHOT`.
A connection with an unknown first byte is logged and closed; the listener keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agent.codec import RPCType

log = logging.getLogger("consul.rpc")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class PortMux:
    def __init__(self) -> None:
        self._handlers: dict[int, Handler] = {}
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.rejected = 0

    def register(self, kind: RPCType, handler: Handler) -> None:
        self._handlers[int(kind)] = handler

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            first = await reader.read(1)
            if not first:
                return
            handler = self._handlers.get(first[0])
            if handler is None:
                self.rejected += 1
                log.warning("unrecognized RPC byte: %d", first[0])
                return
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels open connections; ending quietly keeps asyncio's stream
            # callback from logging the cancellation as an error at shutdown.
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._conns.discard(task)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await self._server.wait_closed()
            self._server = None
