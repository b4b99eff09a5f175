"""The host-side waits, their `main` run here directly: provision.hostside.wait_agent (until a
started agent answers CLI RPC, with a stand-in agent) and wait_leader (until a server's agent
knows a raft leader, with a stand-in HTTP API): what they return, what they print, and the
schedule they poll on."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_rpc import FakeRPC

from provision.hostside import wait_agent, wait_leader

EXITED, TIMED_OUT = 93, 94


def wait(base: Path, rpc: str, deadline_s: float) -> int:
    return wait_agent.main([str(base), rpc, f"{deadline_s:g}", str(EXITED), str(TIMED_OUT)])


@pytest.fixture
def rpc() -> Iterator[FakeRPC]:
    server = FakeRPC()
    try:
        yield server
    finally:
        server.close()


def install_dir(tmp_path: Path, status: int | str = 0) -> Path:
    """An install dir whose senatectl records each call and answers `status` with `status`
    (an int, or a shell expression)."""
    base = tmp_path / "opt"
    for d in ("bin", "log", "run", "etc", "current/bin"):
        (base / d).mkdir(parents=True)
    (base / "log" / "senate.log").write_text(
        "".join(f"log line {i}\n" for i in range(20)) + "==> Error: bind: address in use\n"
    )
    ctl = base / "bin" / "senatectl"
    ctl.write_text(
        f'#!/bin/sh\necho "$1" >> {base}/ctl-calls\ncase $1 in status) exit {status} ;; esac\n'
    )
    ctl.chmod(0o755)
    return base


def ctl_calls(base: Path) -> list[str]:
    p = base / "ctl-calls"
    return p.read_text().split() if p.exists() else []


# -- wait_agent -------------------------------------------------------------------------------


def test_returns_once_the_agent_answers_members(tmp_path: Path, rpc: FakeRPC) -> None:
    base = install_dir(tmp_path)
    t0 = time.monotonic()
    assert wait(base, rpc.addr, 20) == 0
    assert time.monotonic() - t0 < 2
    assert rpc.commands == ["handshake", "members-lan"]
    assert ctl_calls(base) == ["status"]  # no pid file: senatectl says it runs


def test_the_launchers_pid_file_saves_forking_senatectl(tmp_path: Path, rpc: FakeRPC) -> None:
    base = install_dir(tmp_path, status=3)
    agent = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "agent", f"-config-dir={base}/etc"]
    )
    try:
        # its command line is empty until its exec is done (the wait's GONE_S covers that)
        cmdline = Path(f"/proc/{agent.pid}/cmdline")
        while b"-config-dir" not in cmdline.read_bytes():
            time.sleep(0.01)
        (base / "run" / "senate.pid").write_text(f"{agent.pid}\n")
        assert wait(base, rpc.addr, 20) == 0
    finally:
        agent.kill()
        agent.wait()
    assert ctl_calls(base) == []
    # a pid file naming a process that is gone does not count: senatectl is asked
    (base / "run" / "senate.pid").write_text(f"{agent.pid}\n")
    assert wait(base, rpc.addr, 20) == EXITED
    assert ctl_calls(base) != []


def test_an_agent_gone_for_0_3_s_exited_with_the_end_of_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rpc: FakeRPC
) -> None:
    base = install_dir(tmp_path, status=3)
    t0 = time.monotonic()
    assert wait(base, rpc.addr, 20) == EXITED
    took = time.monotonic() - t0
    assert wait_agent.GONE_S <= took < 1.5
    lines = [f"log line {i}" for i in range(9, 20)] + ["==> Error: bind: address in use"]
    assert capsys.readouterr().err == (
        f"agent exited while starting ({base}/current/bin/senate agent -config-dir={base}/etc);"
        " end of its log:\n" + "\n".join(lines) + "\n"
    )
    assert rpc.commands == []
    (base / "log" / "senate.log").unlink()
    assert wait(base, rpc.addr, 20) == EXITED
    assert capsys.readouterr().err.endswith(
        "end of its log:\n(no log output; under systemd see journalctl -u senate)\n"
    )


def test_a_process_missing_briefly_is_not_an_exit(tmp_path: Path, rpc: FakeRPC) -> None:
    # status fails for its first two calls (a launcher's child not exec'd yet), then succeeds
    calls = tmp_path / "opt" / "ctl-calls"
    base = install_dir(tmp_path, status=f"$([ $(wc -l < {calls}) -gt 2 ] && echo 0 || echo 3)")
    assert wait(base, rpc.addr, 20) == 0
    assert ctl_calls(base) == ["status"] * 3


def test_deadline_names_the_agents_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = install_dir(tmp_path)
    rpc = FakeRPC(error="No cluster leader")
    try:
        t0 = time.monotonic()
        assert wait(base, rpc.addr, 0.5) == TIMED_OUT
        assert 0.5 <= time.monotonic() - t0 < 1.5
    finally:
        rpc.close()
    assert capsys.readouterr().err == "agent did not answer within 0.5s: No cluster leader\n"
    assert set(rpc.commands) == {"handshake"}


def test_deadline_names_a_connection_that_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = install_dir(tmp_path)
    refused = FakeRPC()
    refused.close()
    assert wait(base, refused.addr, 0.3) == TIMED_OUT
    assert capsys.readouterr().err == (
        f"agent did not answer within 0.3s: nothing listening on {refused.addr} yet"
        " (Connection refused)\n"
    )
    closing = FakeRPC(mode="close")
    try:
        assert wait(base, closing.addr, 0.3) == TIMED_OUT
    finally:
        closing.close()
    assert capsys.readouterr().err == (
        f"agent did not answer within 0.3s: nothing listening on {closing.addr} yet"
        " (RPC connection closed by the agent)\n"
    )
    monkeypatch.setattr(wait_agent, "CONNECT_TIMEOUT_S", 0.1)
    silent = FakeRPC(mode="silent")
    try:
        assert wait(base, silent.addr, 0.3) == TIMED_OUT
    finally:
        silent.close()
    assert capsys.readouterr().err == (
        f"agent did not answer within 0.3s: nothing listening on {silent.addr} yet (timed out)\n"
    )


def test_without_agent_client_the_releases_cli_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "agent.client", None)  # its import fails
    base = install_dir(tmp_path)
    senate = base / "current" / "bin" / "senate"
    senate.write_text(
        f'#!/bin/sh\necho "$@" >> {base}/cli-calls\n'
        f'[ -e {base}/up ] || {{ echo "Error connecting to Consul agent: refused" >&2; exit 1; }}\n'
    )
    senate.chmod(0o755)
    assert wait(base, "127.0.0.63:8400", 0.2) == TIMED_OUT
    assert capsys.readouterr().err == (
        "agent did not answer within 0.2s: Error connecting to Consul agent: refused\n"
    )
    (base / "up").touch()
    (base / "cli-calls").unlink()
    assert wait(base, "127.0.0.63:8400", 5) == 0
    assert (base / "cli-calls").read_text() == "members -rpc-addr=127.0.0.63:8400\n"
    senate.unlink()
    assert wait(base, "127.0.0.63:8400", 0.2) == TIMED_OUT
    assert capsys.readouterr().err == (
        "agent did not answer within 0.2s: nothing listening on 127.0.0.63:8400 yet"
        " (No such file or directory)\n"
    )


class Clock:
    """time.monotonic and time.sleep for a wait run on a clock of its own: sleeps advance it
    and are recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        monkeypatch.setattr(time, "sleep", self.sleep)

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def schedule(first: float, factor: float, cap: float, total: float) -> list[float]:
    out, d, t = [], first, 0.0
    while t < total:
        out.append(d)
        t += d
        d = min(d * factor, cap)
    return out


def test_wait_agent_polls_every_0_05_s_growing_to_0_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = install_dir(tmp_path)
    refused = FakeRPC()
    refused.close()
    clock = Clock(monkeypatch)
    assert wait(base, refused.addr, 5) == TIMED_OUT
    assert clock.sleeps == pytest.approx(schedule(0.05, 1.5, 0.5, 5))
    assert clock.sleeps[-1] == 0.5


# -- wait_leader ------------------------------------------------------------------------------


class LeaderAPI:
    """/v1/status/leader: `answers` in turn (the last one from then on)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests = 0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = api.answers[min(api.requests, len(api.answers) - 1)]
                api.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.63", 0), Handler)
        self.url = f"http://127.0.0.63:{self.server.server_address[1]}/v1/status/leader"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def leader(url: str, deadline_s: float) -> int:
    return wait_leader.main([url, f"{deadline_s:g}", str(EXITED), str(TIMED_OUT)])


def test_wait_leader_prints_the_leader_once_there_is_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = LeaderAPI([b'""', b'""', b'"10.0.0.1:8300"'])
    try:
        assert leader(api.url, 20) == 0
    finally:
        api.close()
    assert capsys.readouterr() == ("10.0.0.1:8300\n", "")
    assert api.requests == 3


def test_wait_leader_deadline_says_no_leader_is_known(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = LeaderAPI([b'""', b""])  # an empty body counts as no leader too
    try:
        t0 = time.monotonic()
        assert leader(api.url, 0.3) == TIMED_OUT
        assert 0.3 <= time.monotonic() - t0 < 1.5
    finally:
        api.close()
    assert capsys.readouterr() == ("", "no leader within 0.3s: the agent knows no leader yet\n")


def test_wait_leader_gives_up_on_an_agent_silent_for_5_s(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = LeaderAPI([b'""'])
    url = api.url
    api.close()
    assert leader(url, 0.2) == TIMED_OUT  # the deadline first
    assert capsys.readouterr().err.startswith("no leader within 0.2s: <urlopen error [Errno 111]")
    clock = Clock(monkeypatch)
    assert leader(url, 60) == EXITED
    err = capsys.readouterr().err
    assert err == "the agent does not answer: <urlopen error [Errno 111] Connection refused>\n"
    # silent from the start: given up after 5 s of polls 0.05 s apart, growing to 0.25 s
    assert clock.sleeps == pytest.approx(schedule(0.05, 1.5, 0.25, wait_leader.SILENT_S))
    assert wait_leader.SILENT_S == 5.0
