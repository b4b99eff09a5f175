"""The one small client every `senate` command uses: HTTP API v1 and Consul 0.7's CLI RPC.

Synchronous on purpose: a CLI command makes a handful of calls and exits, so plain sockets
(http.client, msgpack over TCP) start faster than an event loop. Errors a user can cause
(agent not running, bad address, an error from the agent) raise `ClientError` with the text
the command prints.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from agent.netaddr import AddressError, InvalidPortError, join_host_port
from agent.netaddr import split_host_port as _split
from agent.rpc_cli import PROTOCOL_VERSION, decode_addr

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
DEFAULT_RPC_ADDR = "127.0.0.1:8400"
HTTP_ENV = ("SENATE_HTTP_ADDR", "CONSUL_HTTP_ADDR")
RPC_ENV = ("SENATE_RPC_ADDR", "CONSUL_RPC_ADDR")


class ClientError(Exception):
    """A call to the agent failed; str() is what the user should read."""


class APIError(ClientError):
    """The agent answered with an HTTP error status; `status` and `body` are its answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Unexpected response code: {status} ({body.strip()})")
        self.status = status
        self.body = body.strip()


def env_addr(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def dial_error(host: str, port: int, exc: OSError) -> str:
    """A failed connect worded as Go's net package words it, as Consul's CLI prints it."""
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    reason = (exc.strerror or str(exc)).lower()
    return f"dial tcp {join_host_port(host, port)}: connect: {reason}"


def split_host_port(addr: str, default_port: int) -> tuple[str, int]:
    """ "host:port", "host", "[::1]:port" or "http://host:port" -> (host, port)."""
    text = addr.strip()
    if "://" in text:
        parsed = urllib.parse.urlsplit(text)
        if parsed.scheme not in ("http", "tcp"):
            raise ClientError(f"Unsupported address scheme {parsed.scheme!r} in {addr!r}")
        text = parsed.netloc
    if not text:
        raise ClientError(f"Invalid address {addr!r}")
    try:
        return _split(text, default_port)
    except InvalidPortError:
        raise ClientError(f"Invalid port in address {addr!r}") from None
    except AddressError:
        raise ClientError(f"Invalid address {addr!r}") from None


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError as exc:
            raise ClientError(f"Failed to decode the agent's response: {exc}") from None

    @property
    def index(self) -> int:
        return int(self.headers.get("x-consul-index", "0") or 0)


@dataclass
class HTTPClient:
    """HTTP API v1 client for one agent address."""

    addr: str = DEFAULT_HTTP_ADDR
    timeout: float = 60.0
    _conn: http.client.HTTPConnection | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.host, self.port = split_host_port(self.addr, 8500)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        body: bytes | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Response:
        """`params` as a dict, or as pairs when a parameter repeats (`?tag=a&tag=b`)."""
        query = ""
        if params:
            items = []
            pairs = params.items() if isinstance(params, dict) else params
            for k, v in pairs:
                if v is None or v is False:
                    continue
                items.append(k if v is True else f"{k}={urllib.parse.quote(str(v), safe='')}")
            query = "?" + "&".join(items) if items else ""
        url = urllib.parse.quote(path, safe="/:@") + query
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout
            )
            self._conn = conn
            try:
                conn.request(method, url, body=body)
                raw = conn.getresponse()
                data = raw.read()
            except (ConnectionRefusedError, socket.gaierror) as exc:
                self.close()
                where = f"{method} http://{join_host_port(self.host, self.port)}{url}"
                raise ClientError(f"{where}: {dial_error(self.host, self.port, exc)}") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 0 and reused:
                    continue  # a kept-alive connection the agent had closed: retry once
                raise ClientError(str(exc)) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ClientError(str(exc) or type(exc).__name__) from None
            resp = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
            if resp.status not in ok:
                raise APIError(resp.status, data.decode(errors="replace"))
            return resp
        raise AssertionError("unreachable")

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params).json()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RPCClient:
    """Consul 0.7's CLI RPC client (see agent/rpc_cli.py for the protocol)."""

    def __init__(self, addr: str = DEFAULT_RPC_ADDR, timeout: float = 60.0) -> None:
        self.addr = addr
        host, port = split_host_port(addr, 8400)
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ClientError(dial_error(host, port, exc)) from None
        self.unpacker = msgpack.Unpacker(
            raw=False, unicode_errors="surrogateescape", strict_map_key=False
        )
        self.seq = 0
        self.call("handshake", {"Version": PROTOCOL_VERSION}, reply_body=False)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise ClientError(f"RPC connection failed: {exc}") from None
            if not data:
                raise ClientError("RPC connection closed by the agent")
            self.unpacker.feed(data)

    def send(self, command: str, body: Any = None, has_body: bool = False) -> int:
        self.seq += 1
        out = msgpack.packb({"Command": command, "Seq": self.seq})
        if has_body:
            out += msgpack.packb(body)
        try:
            self.sock.sendall(out)
        except OSError as exc:
            raise ClientError(f"RPC connection failed: {exc}") from None
        return self.seq

    def call(self, command: str, body: Any = None, reply_body: bool = True) -> Any:
        seq = self.send(command, body, body is not None)
        header = self._next()
        if not isinstance(header, dict) or header.get("Seq") != seq:
            raise ClientError(f"RPC protocol error: unexpected reply {header!r}")
        error = header.get("Error") or ""
        result = None
        if reply_body and (not error or command in _ALWAYS_BODY):
            result = self._next()
        if error:
            raise ClientError(error)
        return result

    # Typed helpers -----------------------------------------------------------------------

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        reply = self.call("members-wan" if wan else "members-lan")
        members = reply.get("Members") or []
        for m in members:
            m["Addr"] = decode_addr(m.get("Addr"))
        return list(members)

    def join(self, addrs: list[str], wan: bool = False) -> int:
        return int(self.call("join", {"Existing": addrs, "WAN": wan})["Num"])

    def leave(self) -> None:
        self.call("leave", reply_body=False)

    def force_leave(self, node: str) -> None:
        self.call("force-leave", {"Node": node}, reply_body=False)

    def stats(self) -> dict[str, dict[str, str]]:
        return dict(self.call("stats"))

    def reload(self) -> None:
        self.call("reload", reply_body=False)

    def keyring(self, op: str, key: str | None = None) -> dict[str, Any]:
        command = {"list": "list-keys", "install": "install-key", "use": "use-key"}.get(
            op, "remove-key"
        )
        return dict(self.call(command, {"Key": key} if op != "list" else None))

    def monitor(self, level: str) -> Iterator[str]:
        seq = self.send("monitor", {"LogLevel": level}, True)
        header = self._next()
        if header.get("Error"):
            raise ClientError(header["Error"])
        while True:
            header = self._next()
            if header.get("Seq") != seq:
                continue
            record = self._next()
            yield str(record.get("Log", ""))


#: Commands whose reply carries a body even when Error is set.
_ALWAYS_BODY = frozenset(
    {
        "members-lan",
        "members-wan",
        "join",
        "stats",
        "list-keys",
        "install-key",
        "use-key",
        "remove-key",
    }
)
