"""The check probes and runners against real local servers and processes: HTTP and TCP on
127.0.0.1 with ephemeral ports, scripts with `sh`; definitions parsed as Consul reads them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.local.checks import (
    BUF_SIZE,
    CRITICAL,
    PASSING,
    WARNING,
    CheckDecodeError,
    CheckInvalidError,
    CheckType,
    IntervalRunner,
    TTLRunner,
    http_probe,
    make_runner,
    parse_check_type,
    script_probe,
    tcp_probe,
)


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- HTTP ---------------------------------------------------------------------------------


@pytest.fixture
async def http_server() -> AsyncIterator[TestServer]:
    seen: list[web.Request] = []

    async def ok(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(text="all good")

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"a" * BUF_SIZE + b"b" * 10_000)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/busy", busy)
    app.router.add_get("/broken", broken)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.seen = seen  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        await server.close()


async def test_http_2xx_is_passing_with_consul_output_and_headers(http_server: TestServer) -> None:
    url = str(http_server.make_url("/ok"))
    status, output = await http_probe(
        CheckType(http=url, interval=1, header={"X-Probe": ["a", "b"]}, method="POST")
    )
    assert status == PASSING
    assert output == f"HTTP POST {url}: 200 OK Output: all good"
    req = http_server.seen[-1]  # type: ignore[attr-defined]
    assert req.method == "POST"
    assert req.headers["User-Agent"] == "Consul Health Check"
    assert req.headers["X-Probe"] == "a, b"


@pytest.mark.parametrize(
    ("path", "want", "line"),
    [("/busy", WARNING, "429 Too Many Requests"), ("/broken", CRITICAL, "503 Service Unavailable")],
)
async def test_http_429_warning_other_codes_critical(
    http_server: TestServer, path: str, want: str, line: str
) -> None:
    url = str(http_server.make_url(path))
    status, output = await http_probe(CheckType(http=url, interval=1))
    assert status == want
    assert output.startswith(f"HTTP GET {url}: {line} Output: ")


async def test_http_output_keeps_the_first_4k_of_the_body(http_server: TestServer) -> None:
    status, output = await http_probe(CheckType(http=str(http_server.make_url("/big")), interval=1))
    assert status == PASSING
    body = output.split(" Output: ", 1)[1]
    assert body == "a" * BUF_SIZE


async def test_http_refused_and_timeout_are_critical_with_the_reason(
    http_server: TestServer,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    status, output = await http_probe(CheckType(http=url, interval=1))
    assert status == CRITICAL
    assert output == f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'
    slow = str(http_server.make_url("/slow"))
    t0 = time.monotonic()
    status, output = await http_probe(CheckType(http=slow, interval=1, timeout=0.2))
    assert status == CRITICAL and "Client.Timeout exceeded" in output
    assert time.monotonic() - t0 < 2.0


# ---- TCP ----------------------------------------------------------------------------------


async def test_tcp_connect_passes_and_refused_is_critical() -> None:
    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await tcp_probe(f"127.0.0.1:{port}") == (
            PASSING,
            f"TCP connect 127.0.0.1:{port}: Success",
        )
    finally:
        server.close()
        await server.wait_closed()
    status, output = await tcp_probe(f"127.0.0.1:{port}")
    assert (status, output) == (CRITICAL, f"dial tcp 127.0.0.1:{port}: connect: connection refused")


# ---- script -------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "want"), [(0, PASSING), (1, WARNING), (2, CRITICAL)])
async def test_script_exit_code_sets_status_and_output_is_captured(code: int, want: str) -> None:
    chk = CheckType(args=("sh", "-c", f"echo out; echo err >&2; exit {code}"), interval=1)
    assert await script_probe(chk) == (want, "out\nerr\n")


async def test_script_string_runs_through_sh() -> None:
    chk = CheckType(script="x=42; echo value=$x", interval=1)
    assert await script_probe(chk) == (PASSING, "value=42\n")


async def test_script_output_keeps_the_last_4k_as_consul() -> None:
    chk = CheckType(script="head -c 5000 /dev/zero | tr '\\0' a; printf END", interval=1)
    status, output = await script_probe(chk)
    assert status == PASSING
    head, _, tail = output.partition("\n...\n")
    assert head == f"Captured {BUF_SIZE} of 5003 bytes"
    assert len(tail) == BUF_SIZE and tail.endswith("END")


async def test_script_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    chk = CheckType(script=f"echo started; sleep 30 & echo $! > {pidfile}; wait", interval=1)
    t0 = time.monotonic()
    status, output = await script_probe(chk, timeout=0.3)
    assert time.monotonic() - t0 < 5.0
    assert status == CRITICAL
    assert output == "Timed out (300ms) running check\n\nstarted\n"
    child = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # a zombie (not yet reaped by init) counts as gone
        stat = Path(f"/proc/{child}/stat").read_text()
        return stat.split(") ", 1)[1].startswith("Z")

    await wait_until(gone)


async def test_script_missing_executable_is_critical() -> None:
    chk = CheckType(args=("/nonexistent/check-thing",), interval=1)
    status, output = await script_probe(chk)
    assert status == CRITICAL
    assert output == 'exec: "/nonexistent/check-thing": executable file not found in $PATH'


# ---- runners ------------------------------------------------------------------------------


class Results:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str, str | None]] = []

    def __call__(self, check_id: str, status: str, output: str, message: str | None = None) -> None:
        self.items.append((check_id, status, output, message))


async def test_interval_runner_reports_every_interval_until_stopped() -> None:
    results = Results()
    runs = 0

    async def probe() -> tuple[str, str]:
        nonlocal runs
        runs += 1
        return PASSING, f"run {runs}"

    runner = IntervalRunner("c1", 0.02, probe, results)
    runner.start()
    await wait_until(lambda: len(results.items) >= 3)
    await runner.stop()
    n = len(results.items)
    assert [r[2] for r in results.items[:3]] == ["run 1", "run 2", "run 3"]
    await asyncio.sleep(0.06)  # would have been three more runs had it not stopped
    assert len(results.items) == n


async def test_interval_runner_survives_a_failing_probe() -> None:
    results = Results()

    def probe() -> Awaitable[tuple[str, str]]:
        raise RuntimeError("probe bug")

    runner = IntervalRunner("c1", 0.02, probe, results)
    runner.start()
    try:
        await wait_until(lambda: len(results.items) >= 2)
    finally:
        await runner.stop()
    assert results.items[0][1:3] == (CRITICAL, "probe bug")


async def test_ttl_runner_expires_to_critical_unless_updated() -> None:
    results = Results()
    runner = TTLRunner("web-ttl", 0.15, results)
    runner.start()
    await wait_until(lambda: len(results.items) == 1)
    assert results.items[0][1:3] == (CRITICAL, "TTL expired")
    runner.set_status(PASSING, "fine")
    assert results.items[-1][1:3] == (PASSING, "fine")
    # Refreshing before the TTL keeps it passing; then silence expires it.
    for _ in range(3):
        await asyncio.sleep(0.05)
        runner.set_status(PASSING, "fine")
    assert all(r[1] == PASSING for r in results.items[1:])
    await wait_until(lambda: results.items[-1][1] == CRITICAL)
    assert results.items[-1][2] == "TTL expired (last output before timeout follows): fine"
    assert results.items[-1][3] == "Check 'web-ttl' missed TTL, is now critical"
    await runner.stop()


async def test_make_runner_raises_short_intervals_to_the_minimum(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = make_runner("c", CheckType(tcp="127.0.0.1:1", interval=0.01), Results(), 1.0)
    assert isinstance(runner, IntervalRunner) and runner.interval == 1.0
    assert "check 'c' has interval below minimum of 1s" in caplog.text
    assert make_runner("c", CheckType(name="plain"), Results()) is None


# ---- definitions --------------------------------------------------------------------------


def test_parse_accepts_consul_api_and_config_spellings() -> None:
    api = parse_check_type(
        {
            "ID": "api",
            "Name": "API",
            "HTTP": "https://127.0.0.1:8443/health",
            "Method": "head",
            "Header": {"X-A": ["1"]},
            "Interval": "10s",
            "Timeout": "1s",
            "TLSSkipVerify": True,
            "DeregisterCriticalServiceAfter": "90m",
        }
    )
    assert api.kind == "http" and api.method == "HEAD" and api.tls_skip_verify
    assert (api.interval, api.timeout, api.deregister_critical_service_after) == (10, 1, 5400)
    cfg = parse_check_type(
        {"id": "mem", "name": "Memory", "args": ["/bin/true"], "interval": "5s", "timeout": "1s"}
    )
    assert cfg.kind == "script" and cfg.args == ("/bin/true",) and cfg.timeout == 1
    snake = parse_check_type({"name": "t", "ttl": "30s", "service_id": "web", "status": "passing"})
    assert (snake.kind, snake.ttl, snake.service_id, snake.status) == ("ttl", 30, "web", "passing")
    # time.Duration as JSON number: nanoseconds
    assert parse_check_type({"TCP": "127.0.0.1:22", "Interval": 2_000_000_000}).interval == 2


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ({"Name": "x", "TTL": "abc"}, CheckDecodeError, 'time: invalid duration "abc"'),
        ({"Name": "x", "TTL": "10"}, CheckDecodeError, 'time: missing unit in duration "10"'),
        ({"Name": "x", "Args": "ls"}, CheckDecodeError, "Args: expected a list of strings"),
        ({"Name": "x", "GRPC": "127.0.0.1:1"}, CheckInvalidError, "gRPC checks are not supported"),
    ],
)
def test_parse_refuses_bad_definitions(raw: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(")):
        parse_check_type(raw)


@pytest.mark.parametrize(
    ("chk", "message"),
    [
        (CheckType(name="x"), "TTL must be > 0 for TTL checks"),
        (CheckType(http="http://127.0.0.1/"), "Interval must be > 0 for Script, HTTP, or TCP"),
        (CheckType(ttl=1, interval=1), "Interval and TTL cannot both be specified"),
        (CheckType(ttl=1, status="sick"), "Bad check status"),
        (CheckType(http="ftp://x/", interval=1), "HTTP must be an http:// or https:// URL"),
        (CheckType(tcp="localhost", interval=1), "missing port in address"),
    ],
)
def test_validate_uses_consul_messages(chk: CheckType, message: str) -> None:
    with pytest.raises(CheckInvalidError, match=message.replace("(", r"\(")):
        chk.validate()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_self_signed_needs_tls_skip_verify(tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def secure(request: web.Request) -> web.Response:
        return web.Response(text="secure")

    app = web.Application()
    app.router.add_get("/h", secure)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    url = f"https://127.0.0.1:{port}/h"
    try:
        status, output = await http_probe(CheckType(http=url, interval=1, tls_skip_verify=True))
        assert (status, output) == (PASSING, f"HTTP GET {url}: 200 OK Output: secure")
        status, output = await http_probe(CheckType(http=url, interval=1))
        assert status == CRITICAL
        assert output == f'Get "{url}": tls: failed to verify certificate: self-signed certificate'
    finally:
        await runner.cleanup()


async def test_unresolvable_host_is_critical_with_go_lookup_error() -> None:
    # .invalid never resolves (RFC 2606); the lookup fails fast in this sandbox and elsewhere
    status, output = await tcp_probe("nonexistent.invalid:81", timeout=5)
    assert (status, output) == (CRITICAL, "dial tcp: lookup nonexistent.invalid: no such host")
    url = "http://nonexistent.invalid:81/health"
    status, output = await http_probe(CheckType(http=url, interval=1), timeout=5)
    assert (status, output) == (
        CRITICAL,
        f'Get "{url}": dial tcp: lookup nonexistent.invalid: no such host',
    )
