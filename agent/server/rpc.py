"""Server RPC on the server port (8300): msgpack request/reply frames with sequence numbers.

A connection opens with the byte `RPCType.CONSUL` (handled by `PortMux`), then carries frames
`{"Seq": n, "Method": "KVS.Apply", "Args": {...}}` one way and `{"Seq": n, "Error": str | None,
"Result": ...}` back. Requests on one connection are served concurrently and may be answered out
of order (the Seq matches them up), so one pooled connection per server carries any number of
requests in flight, as Consul's yamux-multiplexed pool does.

`RPCServer` answers with a handler (`Endpoints.handle`); `ConnPool` is the client side used by
clients (to reach a server of their datacenter) and by servers (to forward to the leader and to
other datacenters).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.codec import FrameError, RPCType, encode_frame, read_frame
from agent.errors import RPCError
from agent.mux import PortMux, dial
from agent.tlsutil import RPCTLS, TLSError

log = logging.getLogger("agent.rpc")

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]

#: Cap on requests in flight on one inbound connection (back-pressure on a flooding peer).
MAX_INFLIGHT_PER_CONN = 1024


class ConnectFailed(ConnectionError):
    """No connection could be made, so the request was never sent: safe to retry anywhere."""


class RPCServer:
    """Answers RPCType.CONSUL connections on the PortMux with `handler(method, args)`."""

    def __init__(self, mux: PortMux, handler: Handler) -> None:
        self._handler = handler
        self.malformed = 0
        mux.register(RPCType.CONSUL, self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sem = asyncio.Semaphore(MAX_INFLIGHT_PER_CONN)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                try:
                    frame = await read_frame(reader)
                except EOFError:
                    return
                except FrameError as exc:
                    self.malformed += 1
                    log.warning("closing RPC connection: %s", exc)
                    return
                if (
                    not isinstance(frame, dict)
                    or not isinstance(frame.get("Method"), str)
                    or not isinstance(frame.get("Seq"), int)
                ):
                    self.malformed += 1
                    seq = frame.get("Seq") if isinstance(frame, dict) else None
                    _write(
                        writer,
                        encode_frame(
                            {"Seq": seq, "Error": "malformed RPC request", "Result": None}
                        ),
                    )
                    continue
                args = frame.get("Args")
                if not isinstance(args, dict):
                    args = {}
                await sem.acquire()
                task = asyncio.create_task(self._one(frame["Seq"], frame["Method"], args, writer))
                tasks.add(task)
                task.add_done_callback(lambda t: _finished(tasks, sem, t))
        finally:
            for task in tasks:
                task.cancel()

    async def _one(
        self, seq: int, method: str, args: dict[str, Any], writer: asyncio.StreamWriter
    ) -> None:
        error: str | None = None
        result: Any = None
        try:
            result = await self._handler(method, args)
        except RPCError as exc:
            error = str(exc)
        except TimeoutError:
            error = "Timed out waiting for the request to be applied"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("RPC %s failed", method)
            error = f"internal error: {exc}"
        try:
            frame = encode_frame({"Seq": seq, "Error": error, "Result": result})
        except Exception as exc:  # an unencodable result must not kill the connection
            log.error("RPC %s: cannot encode reply: %s", method, exc)
            frame = encode_frame({"Seq": seq, "Error": f"internal error: {exc}", "Result": None})
        _write(writer, frame)


def _write(writer: asyncio.StreamWriter, frame: bytes) -> bool:
    """Write unless the connection is gone (uvloop raises RuntimeError on a closed transport)."""
    if writer.is_closing():
        return False
    try:
        writer.write(frame)
    except (RuntimeError, OSError):
        return False
    return True


def _finished(
    tasks: set[asyncio.Task[None]], sem: asyncio.Semaphore, task: asyncio.Task[None]
) -> None:
    tasks.discard(task)
    sem.release()


class _Conn:
    """One client connection to a server: many requests in flight, matched by Seq."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.seq = itertools.count(1)
        self.closed = False
        self.reader_task = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        exc: BaseException = ConnectionError("connection closed")
        try:
            while True:
                frame = await read_frame(self.reader)
                if not isinstance(frame, dict):
                    continue
                fut = self.pending.pop(frame.get("Seq"), None)  # type: ignore[arg-type]
                if fut is None or fut.done():
                    continue
                if frame.get("Error"):
                    fut.set_exception(RPCError(str(frame["Error"])))
                else:
                    fut.set_result(frame.get("Result"))
        except (EOFError, FrameError, ConnectionError, OSError) as e:
            exc = ConnectionError(str(e) or "connection closed")
        except asyncio.CancelledError:
            exc = ConnectionError("connection closed")
        finally:
            self.closed = True
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(exc)
            self.pending.clear()
            self.writer.close()

    async def call(self, method: str, args: dict[str, Any], timeout: float) -> Any:
        if self.closed:
            raise ConnectionError("connection closed")
        seq = next(self.seq)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[seq] = fut
        if not _write(self.writer, encode_frame({"Seq": seq, "Method": method, "Args": args})):
            self.pending.pop(seq, None)
            raise ConnectionError("connection closed")
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(seq, None)

    async def close(self) -> None:
        self.reader_task.cancel()
        with contextlib.suppress(BaseException):
            await self.reader_task


class ConnPool:
    """Pooled connections to servers, keyed by "ip:port", over TLS when the agent's internal
    RPC TLS says verify_outgoing (the server's name checked for the datacenter called)."""

    def __init__(
        self,
        connect_timeout: float = 5.0,
        *,
        tls: RPCTLS | None = None,
        log_name: str = "agent.client",
    ) -> None:
        self._conns: dict[str, _Conn] = {}
        self._connecting: dict[str, asyncio.Future[_Conn]] = {}
        self.connect_timeout = connect_timeout
        self.tls = tls
        self._log = logging.getLogger(log_name)

    async def _get(self, address: str, method: str, datacenter: str | None) -> _Conn:
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        pending = self._connecting.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[_Conn] = asyncio.get_running_loop().create_future()
        self._connecting[address] = fut
        try:
            try:
                reader, writer = await dial(
                    address,
                    RPCType.CONSUL,
                    self.tls,
                    datacenter=datacenter,
                    timeout=self.connect_timeout,
                )
            except TLSError as exc:
                # Consul's words: the handshake failed, so the request was never sent.
                error = f"rpc error getting client: failed to get conn: {exc}"
                self._log.error(
                    'RPC failed to server: method=%s server=%s error="%s"', method, address, error
                )
                raise ConnectFailed(error) from None
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConnectFailed(f"dial tcp {address}: {exc}") from None
            conn = _Conn(reader, writer)
            self._conns[address] = conn
            fut.set_result(conn)
            return conn
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("cancelled"))
            fut.exception()  # mark retrieved
            raise
        finally:
            self._connecting.pop(address, None)

    async def call(
        self,
        address: str,
        method: str,
        args: dict[str, Any],
        timeout: float = 30.0,
        *,
        datacenter: str | None = None,
    ) -> Any:
        """One RPC to the server at address, of `datacenter` (default: the agent's own).
        Raises RPCError (the server's answer), ConnectionError/OSError (the server could not
        be reached, or its TLS handshake failed) or TimeoutError."""
        conn = await self._get(address, method, datacenter)
        return await conn.call(method, args, timeout)

    def drop(self, address: str) -> None:
        conn = self._conns.pop(address, None)
        if conn is not None:
            conn.reader_task.cancel()

    async def close(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in conns:
            await conn.close()
