"""Health checks that run on this agent: TTL, HTTP, TCP and script, as Consul's agent/checks.

Theory of operation. A check definition (`CheckType`, parsed from an HTTP body or a config file
by `parse_check_type`) says what to run; a runner runs it and reports every result to a
`Notify` callback (the `LocalRegistry`, which writes the status into LocalState so anti-entropy
pushes it to the catalog, and logs Consul's lines when the status changes).

- Interval checks (HTTP, TCP, script) run one asyncio task each. The first run waits a random
  part of the interval (Consul's RandomStagger, so checks registered together do not fire
  together), then one run per interval. Each run is a *probe*: a coroutine that never raises
  and returns (status, output); the probes are plain functions so tests call them directly.
- A TTL check owns no task: a timer that turns it critical ("TTL expired") unless
  `set_status` is called (`/v1/agent/check/pass|warn|fail|update`) before it fires.

Results as Consul's: HTTP 2xx passing, 429 warning, anything else (or an error) critical, with
output `HTTP GET <url>: 200 OK Output: <first 4 KiB of the body>`; TCP passing when a connection
opens (`TCP connect <addr>: Success`); script exit 0 passing, 1 warning, anything else
critical, the output's last 4 KiB kept, the process group killed on timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from agent.durations import SECOND, DurationError, format_duration, json_seconds
from agent.netaddr import join_host_port, split_host_port
from agent.tasks import cancel_and_wait

log = logging.getLogger("agent")

PASSING, WARNING, CRITICAL = "passing", "warning", "critical"
STATUSES = (PASSING, WARNING, CRITICAL)

#: Consul's checks.BufSize: the most output a check keeps.
BUF_SIZE = 4 * 1024
#: Consul's checks.MinInterval: shorter intervals are raised to it (with a warning).
MIN_INTERVAL = 1.0
#: Consul's default timeouts: HTTP and TCP 10 s, script (monitor) checks 30 s.
DEFAULT_TIMEOUT = 10.0
DEFAULT_SCRIPT_TIMEOUT = 30.0
USER_AGENT = "Consul Health Check"

SCRIPTS_DISABLED = (
    "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' to true"
)

Probe = Callable[[], Awaitable[tuple[str, str]]]


class CheckDecodeError(ValueError):
    """A check definition that cannot be read (wrong type, bad duration): the message is the
    reason alone, e.g. `time: invalid duration "10"`; callers add their context."""


class CheckInvalidError(ValueError):
    """A readable definition that is not a valid check; the message is Consul's reason
    (`Interval must be > 0 for Script, HTTP, or TCP checks`), without "Invalid check: "."""


class Notify(Protocol):
    def __call__(self, check_id: str, status: str, output: str, message: str | None = None) -> None:
        """A check's result; `message` replaces the usual status-change log line."""
        ...


# ---------------------------------------------------------------------------------------
# definitions
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckType:
    """One check definition: what to run and how often, plus the HealthCheck fields."""

    check_id: str = ""
    name: str = ""
    notes: str = ""
    status: str = ""
    service_id: str = ""
    script: str = ""
    args: tuple[str, ...] = ()
    http: str = ""
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    tcp: str = ""
    interval: float = 0.0
    timeout: float = 0.0
    ttl: float = 0.0
    tls_skip_verify: bool = False
    deregister_critical_service_after: float = 0.0
    #: the definition's own ACL token (`token`): the check syncs with it
    token: str = ""

    @property
    def kind(self) -> str:
        """ "script", "http", "tcp", "ttl" or "" (a plain check nothing updates)."""
        if self.script or self.args:
            return "script"
        if self.http:
            return "http"
        if self.tcp:
            return "tcp"
        if self.ttl > 0:
            return "ttl"
        return ""

    @property
    def is_script(self) -> bool:
        return self.kind == "script"

    def validate(self) -> None:
        """Consul's CheckType.Validate, plus what senate refuses up front (bad status, an
        HTTP URL that is not http(s), a TCP address without a port)."""
        interval_check = self.kind in ("script", "http", "tcp")
        if self.status and self.status not in STATUSES:
            raise CheckInvalidError("Bad check status")
        if self.interval > 0 and self.ttl > 0:
            raise CheckInvalidError("Interval and TTL cannot both be specified")
        if interval_check and self.interval <= 0:
            raise CheckInvalidError("Interval must be > 0 for Script, HTTP, or TCP checks")
        if not interval_check and self.ttl <= 0:
            raise CheckInvalidError("TTL must be > 0 for TTL checks")
        if self.timeout < 0:
            raise CheckInvalidError("Timeout must be >= 0")
        if self.http and not self.http.lower().startswith(("http://", "https://")):
            raise CheckInvalidError(f"HTTP must be an http:// or https:// URL, got {self.http!r}")
        if self.tcp:
            try:
                split_host_port(self.tcp)
            except ValueError as exc:
                raise CheckInvalidError(f"TCP: {exc}") from None

    def effective_timeout(self) -> float:
        if self.timeout > 0:
            return self.timeout
        return DEFAULT_SCRIPT_TIMEOUT if self.is_script else DEFAULT_TIMEOUT

    def to_json(self) -> dict[str, Any]:
        """Consul's CheckType JSON (durations as Go duration strings), for persistence."""
        out: dict[str, Any] = {
            "CheckID": self.check_id,
            "Name": self.name,
            "Notes": self.notes,
            "Status": self.status,
            "ServiceID": self.service_id,
        }
        if self.script:
            out["Script"] = self.script
        if self.args:
            out["ScriptArgs"] = list(self.args)
        if self.http:
            out.update(HTTP=self.http, Method=self.method, Header=self.header)
            out["TLSSkipVerify"] = self.tls_skip_verify
        if self.tcp:
            out["TCP"] = self.tcp
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("TTL", self.ttl),
            ("DeregisterCriticalServiceAfter", self.deregister_critical_service_after),
        ):
            if value:
                out[key] = format_duration(round(value * SECOND))
        return out


#: Accepted spellings, compared case-insensitively without underscores (Go's encoding/json
#: matches field names case-insensitively; config files use snake_case).
_FIELDS = {
    "token": "token",
    "id": "check_id",
    "checkid": "check_id",
    "name": "name",
    "notes": "notes",
    "status": "status",
    "serviceid": "service_id",
    "script": "script",
    "args": "args",
    "scriptargs": "args",
    "http": "http",
    "method": "method",
    "header": "header",
    "tcp": "tcp",
    "interval": "interval",
    "timeout": "timeout",
    "ttl": "ttl",
    "tlsskipverify": "tls_skip_verify",
    "deregistercriticalserviceafter": "deregister_critical_service_after",
}
_DURATIONS = {"interval", "timeout", "ttl", "deregister_critical_service_after"}
_STRINGS = {
    "check_id",
    "name",
    "notes",
    "status",
    "service_id",
    "script",
    "http",
    "method",
    "tcp",
    "token",
}
#: Check kinds Consul has and senate does not run: refused rather than silently ignored.
_UNSUPPORTED = {
    "grpc": "gRPC",
    "dockercontainerid": "Docker",
    "aliasnode": "alias",
    "aliasservice": "alias",
    "h2ping": "H2 ping",
    "udp": "UDP",
    "osservice": "OS service",
}


def normalise_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _duration(key: str, value: Any) -> float:
    """A Go duration string (blank: 0), or a number of nanoseconds (time.Duration's JSON form)."""
    if isinstance(value, str) and not value.strip():
        return 0.0
    try:
        return json_seconds(value)
    except TypeError:
        raise CheckDecodeError(f'{key}: expected a duration such as "10s", got {value!r}') from None
    except DurationError as exc:
        raise CheckDecodeError(str(exc)) from None


def _header(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckDecodeError("Header: expected an object of header name to list of values")
    out: dict[str, list[str]] = {}
    for name, vals in value.items():
        if isinstance(vals, str):
            vals = [vals]
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            raise CheckDecodeError(f"Header.{name}: expected a list of strings")
        out[str(name)] = list(vals)
    return out


def parse_check_type(raw: Any) -> CheckType:
    """A check definition as JSON (HTTP PascalCase or config snake_case) -> CheckType.
    Unknown keys are ignored, as Consul ignores them; raises CheckDecodeError."""
    if not isinstance(raw, dict):
        raise CheckDecodeError("expected a check object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        norm = normalise_key(str(key))
        if norm in _UNSUPPORTED and value not in (None, "", False):
            raise CheckInvalidError(f"{_UNSUPPORTED[norm]} checks are not supported by senate")
        name = _FIELDS.get(norm)
        if name is None or value is None:
            continue
        if name in _DURATIONS:
            values[name] = _duration(str(key), value)
        elif name in _STRINGS:
            if not isinstance(value, str):
                raise CheckDecodeError(f"{key}: expected a string, got {value!r}")
            values[name] = value
        elif name == "args":
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                raise CheckDecodeError(f"{key}: expected a list of strings")
            values[name] = tuple(value)
        elif name == "header":
            values[name] = _header(value)
        elif name == "tls_skip_verify":
            if not isinstance(value, bool):
                raise CheckDecodeError(f"{key}: expected true or false, got {value!r}")
            values[name] = value
    if "method" in values:
        values["method"] = values["method"].upper()
    return CheckType(**values)


# ---------------------------------------------------------------------------------------
# probes: one run of a check -> (status, output); they never raise
# ---------------------------------------------------------------------------------------


def _os_reason(exc: OSError) -> str:
    """Go's wording of a socket error: the errno's text in lower case ("connection refused")."""
    if exc.errno and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def _dial_error(host: str, port: int | str | None, exc: OSError) -> str:
    """Go's net.Dial error text: a failed name lookup, or a failed connect."""
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    return f"dial tcp {join_host_port(host, str(port))}: connect: {_os_reason(exc)}"


def _go_method(method: str) -> str:
    """Go's url.Error Op: "Get", "Post", ..."""
    return method[:1].upper() + method[1:].lower()


async def http_probe(chk: CheckType, timeout: float | None = None) -> tuple[str, str]:
    method = chk.method or "GET"
    url = chk.http
    timeout = chk.effective_timeout() if timeout is None else timeout
    headers: dict[str, str] = {k: ", ".join(v) for k, v in chk.header.items() if v}
    lower = {k.lower() for k in headers}
    if "user-agent" not in lower:
        headers["User-Agent"] = USER_AGENT
    if "accept" not in lower:
        headers["Accept"] = "text/plain, text/*, */*"
    ssl_arg = not chk.tls_skip_verify  # False: no certificate verification
    op = _go_method(method)
    try:
        connector = aiohttp.TCPConnector(force_close=True, ssl=ssl_arg)  # no keep-alive, as Consul
        async with (
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=timeout),
                auto_decompress=True,
            ) as session,
            session.request(method, url, headers=headers, allow_redirects=True) as resp,
        ):
            body = b""
            while len(body) < BUF_SIZE:
                chunk = await resp.content.read(BUF_SIZE - len(body))
                if not chunk:
                    break
                body += chunk
            status_line = f"{resp.status} {resp.reason or ''}".rstrip()
            result = f"HTTP {method} {url}: {status_line} Output: {body.decode('utf-8', 'replace')}"
            if 200 <= resp.status <= 299:
                return PASSING, result
            if resp.status == 429:
                return WARNING, result
            return CRITICAL, result
    except TimeoutError:
        return CRITICAL, (
            f'{op} "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting '
            "headers)"
        )
    except aiohttp.ClientConnectorCertificateError as exc:
        cert_err = exc.certificate_error
        reason = getattr(cert_err, "verify_message", "") or str(cert_err)
        return CRITICAL, f'{op} "{url}": tls: failed to verify certificate: {reason}'
    except aiohttp.ClientSSLError as exc:
        return CRITICAL, f'{op} "{url}": tls: {exc}'
    except aiohttp.ClientConnectorError as exc:
        return CRITICAL, f'{op} "{url}": {_dial_error(exc.host, exc.port, exc.os_error)}'
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return CRITICAL, f'{op} "{url}": {exc or type(exc).__name__}'


async def tcp_probe(addr: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, str]:
    try:
        host, port = split_host_port(addr)
    except ValueError as exc:
        return CRITICAL, f"dial tcp {exc}"
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return CRITICAL, f"dial tcp {addr}: i/o timeout"
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            return CRITICAL, f"dial tcp: lookup {host}: no such host"
        return CRITICAL, f"dial tcp {addr}: connect: {_os_reason(exc)}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return PASSING, f"TCP connect {addr}: Success"


class _Tail:
    """The last BUF_SIZE bytes written, and how many were written (Consul's circbuf)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.total = 0

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > BUF_SIZE:
            del self.data[: len(self.data) - BUF_SIZE]

    def text(self) -> str:
        out = self.data.decode("utf-8", "replace")
        if self.total > BUF_SIZE:
            out = f"Captured {BUF_SIZE} of {self.total} bytes\n...\n{out}"
        return out


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def script_probe(chk: CheckType, timeout: float | None = None) -> tuple[str, str]:
    """Run `args` (or `script` through /bin/sh -c); exit 0 passing, 1 warning, else critical."""
    timeout = chk.effective_timeout() if timeout is None else timeout
    argv = list(chk.args) if chk.args else ["/bin/sh", "-c", chk.script]
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole on timeout
        )
    )
    try:
        # Shielded: a cancel that lands while the process is being set up must still reach
        # its process group (the script may already have started children).
        proc = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            _kill_group(await spawn)
        raise
    except FileNotFoundError:
        return CRITICAL, f'exec: "{argv[0]}": executable file not found in $PATH'
    except OSError as exc:
        return CRITICAL, f"fork/exec {argv[0]}: {(exc.strerror or str(exc)).lower()}"
    tail = _Tail()

    async def collect() -> int:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.write(chunk)
        return await proc.wait()

    try:
        async with asyncio.timeout(timeout):
            code = await collect()
    except TimeoutError:
        _kill_group(proc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5.0)
        msg = f"Timed out ({format_duration(round(timeout * SECOND))}) running check"
        out = tail.text()
        return CRITICAL, msg + ("\n\n" + out if out else "")
    except asyncio.CancelledError:
        _kill_group(proc)
        raise
    if code == 0:
        return PASSING, tail.text()
    if code == 1:
        return WARNING, tail.text()
    return CRITICAL, tail.text()


# ---------------------------------------------------------------------------------------
# runners
# ---------------------------------------------------------------------------------------


class Runner(Protocol):
    check_id: str

    def start(self) -> None: ...

    def cancel(self) -> None: ...

    async def stop(self) -> None: ...


class IntervalRunner:
    """Runs `probe` every `interval` seconds after a random first wait, reporting each result."""

    def __init__(
        self, check_id: str, interval: float, probe: Probe, notify: Notify, kind: str = ""
    ) -> None:
        self.check_id = check_id
        self.interval = interval
        self.probe = probe
        self.notify = notify
        self.kind = kind
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"check:{self.check_id}")

    def cancel(self) -> None:
        """Stop now without waiting (a running script's process group is killed as the task
        unwinds)."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        await asyncio.sleep(random.random() * self.interval)  # Consul's RandomStagger
        while True:
            try:
                status, output = await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe bug must not kill the check
                log.error("Check '%s' failed to run: %s", self.check_id, exc)
                status, output = CRITICAL, str(exc)
            self.notify(self.check_id, status, output)
            await asyncio.sleep(self.interval)


class TTLRunner:
    """Critical with "TTL expired" unless `set_status` is called within `ttl` seconds."""

    kind = "ttl"

    def __init__(self, check_id: str, ttl: float, notify: Notify) -> None:
        self.check_id = check_id
        self.ttl = ttl
        self.notify = notify
        self.last_output = ""
        self.expires_at = 0.0  # loop time
        self._timer: asyncio.TimerHandle | None = None

    def start(self, remaining: float | None = None) -> None:
        self._arm(self.ttl if remaining is None else remaining)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self.expires_at = loop.time() + delay
        self._timer = loop.call_later(delay, self._expired)

    def set_status(self, status: str, output: str) -> None:
        self.last_output = output
        self.notify(self.check_id, status, output)
        self._arm(self.ttl)

    def expired_output(self) -> str:
        if not self.last_output:
            return "TTL expired"
        return f"TTL expired (last output before timeout follows): {self.last_output}"

    def _expired(self) -> None:
        self._timer = None
        self.notify(
            self.check_id,
            CRITICAL,
            self.expired_output(),
            f"Check '{self.check_id}' missed TTL, is now critical",
        )

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def stop(self) -> None:
        self.cancel()


def make_runner(
    check_id: str, chk: CheckType, notify: Notify, min_interval: float = MIN_INTERVAL
) -> IntervalRunner | TTLRunner | None:
    """The runner for a definition (None for a check nothing runs). Intervals below
    `min_interval` are raised to it with Consul's warning."""
    kind = chk.kind
    if kind == "ttl":
        return TTLRunner(check_id, chk.ttl, notify)
    if kind == "":
        return None
    interval = chk.interval
    if interval < min_interval:
        log.warning(
            "check '%s' has interval below minimum of %s",
            check_id,
            format_duration(round(min_interval * SECOND)),
        )
        interval = min_interval
    timeout = chk.effective_timeout()
    probe: Probe
    if kind == "http":

        def probe() -> Awaitable[tuple[str, str]]:
            return http_probe(chk, timeout)

    elif kind == "tcp":

        def probe() -> Awaitable[tuple[str, str]]:
            return tcp_probe(chk.tcp, timeout)

    else:

        def probe() -> Awaitable[tuple[str, str]]:
            return script_probe(chk, timeout)

    return IntervalRunner(check_id, interval, probe, notify, kind)
