"""The local connection and the host probe, against a temporary directory (no agent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision import remote
from provision.hosts import LocalHost, StepError, run_input, write_text_part
from provision.inventory import load_inventory


@pytest.fixture
def host(tmp_path: Path) -> LocalHost:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "defaults: {connection: local, install_dir: 'opt/{name}', data_dir: 'data/{name}'}\n"
        "datacenters:\n  dc1:\n    servers: [{name: n1, host: 127.0.0.61}]\n"
    )
    return LocalHost(load_inventory(inv).nodes[0])


def test_run_reports_failures_with_exit_status_and_stderr(host: LocalHost) -> None:
    assert host.run("echo hi", step="t", timeout=5).stdout == "hi\n"
    with pytest.raises(StepError) as info:
        host.run("echo oops >&2; exit 4", step="check", timeout=5)
    assert (info.value.exit_code, info.value.stderr_tail, info.value.step) == (4, "oops", "check")
    with pytest.raises(StepError) as timed:
        host.run("sleep 5", step="slow", timeout=0.2)
    assert timed.value.exit_code is None and "timed out" in str(timed.value)


def test_write_text_is_exact_and_atomic(host: LocalHost, tmp_path: Path) -> None:
    content = "quote ' \" $HOME `x` \\ and unicode ✓\n"
    target = tmp_path / "a" / "b" / "f.txt"
    part = write_text_part(content, str(target), 0o640)
    assert "unicode" not in part.cmd and b"unicode" not in part.data  # base64 on stdin
    run_input(host, part.cmd, part.data, step="w", timeout=5)
    assert target.read_text() == content and (target.stat().st_mode & 0o777) == 0o640
    part = write_text_part("second\n", str(target), 0o600)
    run_input(host, part.cmd, part.data, step="w", timeout=5)
    assert target.read_text() == "second\n" and (target.stat().st_mode & 0o777) == 0o600
    assert not list(target.parent.glob("*.provision-tmp"))


def test_probe_of_a_fresh_host(host: LocalHost) -> None:
    state = remote.probe(host, timeout=20)
    assert state.python >= (3, 11)
    assert (state.current, state.releases, state.config, state.running) == (None, (), None, False)
    assert state.ports_busy == () and state.disk_free > 0
    assert remote.preflight_problems(host.node, state) == []


def test_probe_sees_busy_ports(host: LocalHost) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.61", 8301))
    s.listen()
    try:
        state = remote.probe(host, timeout=20)
    finally:
        s.close()
    assert ("tcp", 8301) in {(p, n) for p, n, _ in state.ports_busy}
    problems = remote.preflight_problems(host.node, state)
    assert problems and problems[0].startswith("ports in use on 127.0.0.61: 8301/tcp")
