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
import re
import socket
import ssl
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


class ConfigError(ClientError):
    """The client cannot be set up (bad address, scheme, TLS files, token file): Consul's
    commands print it as `Error connecting to Consul agent: <reason>`."""


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
    if isinstance(exc, TimeoutError):
        return f"dial tcp {join_host_port(host, port)}: i/o timeout"
    return f"dial tcp {join_host_port(host, port)}: connect: {_reason(exc)}"


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def tls_error(exc: ssl.SSLError) -> str:
    """An ssl error as one line: `tls: failed to verify certificate: <why>`, `tls: <reason>`."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or "certificate verify failed"
        return f"tls: failed to verify certificate: {why}"
    text = str(exc.reason or exc)
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    text = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
    return "tls: " + text.replace("_", " ").lower()


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


@dataclass(frozen=True)
class TLSOptions:
    """api.TLSConfig: what an https:// connection verifies and presents."""

    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    #: the SNI host and the name the server's certificate must carry (a port is dropped)
    server_name: str = ""
    #: CONSUL_HTTP_SSL_VERIFY=false: accept any certificate
    insecure_skip_verify: bool = False

    @property
    def any_files(self) -> bool:
        return bool(self.ca_file or self.ca_path or self.cert_file or self.key_file)


def tls_context(opts: TLSOptions) -> ssl.SSLContext:
    """api.SetupTLSConfig: the CA file and the CA directory (every file in it, as
    go-rootcerts reads one) replace the system roots when given; a client certificate needs
    its key, and the key its certificate."""
    if bool(opts.cert_file) != bool(opts.key_file):
        raise ConfigError("both client cert and client key must be provided")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if opts.ca_file:
        _load_ca(ctx, opts.ca_file, "CA File")
    if opts.ca_path:
        if not os.path.isdir(opts.ca_path):
            raise ConfigError(f"Error loading CA Path: open {opts.ca_path}: not a directory")
        for root, _dirs, files in sorted(os.walk(opts.ca_path)):
            for name in sorted(files):
                _load_ca(ctx, os.path.join(root, name), "CA Path")
    if not (opts.ca_file or opts.ca_path):
        ctx.load_default_certs()
    if opts.cert_file:
        try:
            ctx.load_cert_chain(opts.cert_file, opts.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"Error loading client certificate: {_file_error(opts.cert_file, exc)}"
            ) from None
    if opts.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_ca(ctx: ssl.SSLContext, path: str, what: str) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigError(f"Error loading {what}: couldn't parse PEM in: {path}") from None
    except OSError as exc:
        raise ConfigError(f"Error loading {what}: {_file_error(path, exc)}") from None


def _file_error(path: str, exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return tls_error(exc).removeprefix("tls: ")
    if isinstance(exc, FileNotFoundError):
        return f"open {path}: no such file or directory"
    return f"open {path}: {_reason(exc)}"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix domain socket (`unix:///path/to/sock`), as Consul's api dials one."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class TLSHTTPConnection(http.client.HTTPSConnection):
    """HTTPS whose SNI and certificate name is -tls-server-name when given, else the host."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        server_name: str,
        timeout: float | None = None,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.tls_context = context
        self.server_name = server_name or host

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.server_name)


class _DialError(Exception):
    """connect() failed: `text` is the whole reason (dial ..., tls: ...)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass
class HTTPClient:
    """HTTP API v1 client for one agent address, as Consul's api.Client reads one:
    `host:port` (https when `use_ssl`, i.e. CONSUL_HTTP_SSL=true), `http://host:port[/prefix]`,
    `https://host:port[/prefix]`, or `unix:///path/to/sock`. `token` goes out as the
    X-Consul-Token header. A bad address or TLS setup raises ConfigError here; a failed call
    raises ClientError from request()."""

    addr: str = DEFAULT_HTTP_ADDR
    timeout: float = 60.0
    token: str = ""
    tls: TLSOptions = field(default_factory=TLSOptions)
    use_ssl: bool = False
    _conn: http.client.HTTPConnection | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.scheme = "https" if self.use_ssl else "http"
        self.socket_path = ""
        self.path_prefix = ""
        self.host, self.port = "", 0
        text = self.addr.strip()
        rest = text
        if "://" in text:
            given, rest = text.split("://", 1)
            if given == "https":
                self.scheme = "https"
            elif given == "unix":
                self.scheme = "unix"
            elif given not in ("http", "tcp"):  # http never reverts an explicit CONSUL_HTTP_SSL
                raise ConfigError(f"Unknown protocol scheme: {given}")
        if self.scheme == "unix":
            if not rest:
                raise ConfigError(f"Invalid address {self.addr!r}")
            self.socket_path = rest
        else:
            hostport, slash, prefix = rest.partition("/")
            self.path_prefix = "/" + prefix.rstrip("/") if slash and prefix.strip("/") else ""
            if not hostport:
                raise ConfigError(f"Invalid address {self.addr!r}")
            try:
                self.host, self.port = _split(hostport, 8500)
            except InvalidPortError:
                raise ConfigError(f"Invalid port in address {self.addr!r}") from None
            except AddressError:
                raise ConfigError(f"Invalid address {self.addr!r}") from None
        self._ssl_context: ssl.SSLContext | None = None
        if self.scheme == "https" or self.tls.any_files:
            self._ssl_context = tls_context(self.tls)

    @property
    def base_url(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.socket_path}"
        return f"{self.scheme}://{join_host_port(self.host, self.port)}"

    def clone(self, timeout: float | None = None) -> HTTPClient:
        """Another client (its own connection) to the same agent with the same settings."""
        return HTTPClient(
            self.addr,
            timeout=self.timeout if timeout is None else timeout,
            token=self.token,
            tls=self.tls,
            use_ssl=self.use_ssl,
        )

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.scheme == "unix":
            return UnixHTTPConnection(self.socket_path, timeout=timeout)
        if self.scheme == "https":
            assert self._ssl_context is not None
            server_name = self.tls.server_name
            if server_name:
                server_name = _split(server_name, 0)[0] if ":" in server_name else server_name
            return TLSHTTPConnection(
                self.host, self.port, self._ssl_context, server_name, timeout=timeout
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _dial(self, conn: http.client.HTTPConnection) -> None:
        """Connect now, so a failure to reach the agent reads as Go's dial errors do."""
        try:
            conn.connect()
        except ssl.SSLError as exc:
            raise _DialError(tls_error(exc)) from None
        except OSError as exc:
            if self.scheme == "unix":
                raise _DialError(f"dial unix {self.socket_path}: connect: {_reason(exc)}") from None
            raise _DialError(dial_error(self.host, self.port, exc)) from None

    def _url(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None) -> str:
        query = ""
        if params:
            items = []
            pairs = params.items() if isinstance(params, dict) else params
            for k, v in pairs:
                if v is None or v is False:
                    continue
                items.append(k if v is True else f"{k}={urllib.parse.quote(str(v), safe='')}")
            query = "?" + "&".join(items) if items else ""
        return urllib.parse.quote(self.path_prefix + path, safe="/:@") + query

    def _headers(self, path: str, body: bytes | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.token:
            headers["X-Consul-Token"] = self.token
        if body is not None:  # as api sets it: KV values and snapshots are opaque bytes
            raw = path.startswith(("/v1/kv/", "/v1/snapshot"))
            headers["Content-Type"] = "application/octet-stream" if raw else "application/json"
        return headers

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        body: bytes | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Response:
        """`params` as a dict, or as pairs when a parameter repeats (`?tag=a&tag=b`)."""
        url = self._url(path, params)
        where = f"{method} {self.base_url}{url}"
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                conn = self._new_connection(self.timeout)
                try:
                    self._dial(conn)
                except _DialError as exc:
                    conn.close()
                    raise ClientError(f"{where}: {exc.text}") from None
                self._conn = conn
            conn = self._conn
            try:
                conn.request(method, url, body=body, headers=self._headers(path, body))
                raw = conn.getresponse()
                data = raw.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 0 and reused:
                    continue  # a kept-alive connection the agent had closed: retry once
                raise ClientError(f"{where}: {exc or type(exc).__name__}") from None
            except ssl.SSLError as exc:
                self.close()
                raise ClientError(f"{where}: {tls_error(exc)}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ClientError(f"{where}: {exc or type(exc).__name__}") from None
            resp = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
            if resp.status not in ok:
                raise APIError(resp.status, data.decode(errors="replace"))
            return resp
        raise AssertionError("unreachable")

    def stream(self, method: str, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        """A long-lived response (the agent's log stream) read line by line, on its own
        connection without a timeout."""
        url = self._url(path, params)
        where = f"{method} {self.base_url}{url}"
        conn = self._new_connection(None)
        try:
            try:
                self._dial(conn)
            except _DialError as exc:
                raise ClientError(f"{where}: {exc.text}") from None
            try:
                conn.request(method, url, headers=self._headers(path, None))
                resp = conn.getresponse()
                if resp.status != 200:
                    raise APIError(resp.status, resp.read().decode(errors="replace"))
                while True:
                    line = resp.readline()
                    if not line:
                        return
                    yield line.decode(errors="replace").rstrip("\n")
            except ssl.SSLError as exc:
                raise ClientError(f"{where}: {tls_error(exc)}") from None
            except (OSError, http.client.HTTPException) as exc:
                raise ClientError(f"{where}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()

    def get_json(
        self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None
    ) -> Any:
        return self.request("GET", path, params).json()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RPCClient:
    """Consul 0.7's CLI RPC client (see agent/rpc_cli.py for the protocol)."""

    def __init__(
        self, addr: str = DEFAULT_RPC_ADDR, timeout: float = 60.0, token: str = ""
    ) -> None:
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
        # senate's handshake may carry the ACL token the agent checks each command against
        hello: dict[str, Any] = {"Version": PROTOCOL_VERSION}
        if token:
            hello["Token"] = token
        self.call("handshake", hello, reply_body=False)

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

    def force_leave(self, node: str, prune: bool = False) -> None:
        body: dict[str, Any] = {"Node": node}
        if prune:
            body["Prune"] = True
        self.call("force-leave", body, reply_body=False)

    def stats(self) -> dict[str, dict[str, str]]:
        return dict(self.call("stats"))

    def reload(self) -> None:
        self.call("reload", reply_body=False)

    def keyring(self, op: str, key: str | None = None) -> dict[str, Any]:
        command = {"list": "list-keys", "install": "install-key", "use": "use-key"}.get(
            op, "remove-key"
        )
        return dict(self.call(command, {"Key": key} if op != "list" else None))

    def monitor(self, level: str, log_json: bool = False) -> Iterator[str]:
        seq = self.send("monitor", {"LogLevel": level, "LogJSON": log_json}, True)
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
