"""The readiness wait that runs on the host (remote.wait_cmd) with a stand-in agent: it returns
once the service runs and the agent answers the CLI RPC handshake and `members-lan`; it fails at
once, with the end of the agent's log, when the agent process is gone; and at its deadline with
what it last saw."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_rpc import FakeRPC

from provision import remote
from provision.hosts import HostError, LocalHost
from provision.inventory import load_inventory


@pytest.fixture
def rpc() -> Iterator[FakeRPC]:
    server = FakeRPC()
    try:
        yield server
    finally:
        server.close()


def make_host(tmp_path: Path, port: int, running: bool) -> LocalHost:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        f"defaults: {{connection: local, install_dir: '{tmp_path}/opt/{{name}}',"
        f" data_dir: '{tmp_path}/data/{{name}}', agent: {{ports: {{rpc: {port}}}}}}}\n"
        "datacenters:\n  dc1:\n    servers: [{name: n1, host: 127.0.0.63}]\n"
    )
    node = load_inventory(inv).nodes[0]
    base = Path(node.install_dir)
    (base / "bin").mkdir(parents=True)
    (base / "current" / "bin").mkdir(parents=True)
    (base / "log").mkdir()
    (base / "log" / "senate.log").write_text(
        "".join(f"log line {i}\n" for i in range(20)) + "==> Error: bind: address in use\n"
    )
    ctl = base / "bin" / "senatectl"
    status = 0 if running else 3
    ctl.write_text(f"#!/bin/sh\ncase $1 in start) exit 0 ;; status) exit {status} ;; esac\n")
    # the release's python: this test's (it has msgpack), started by its venv path
    python = base / "current" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    for f in (ctl, python):
        f.chmod(0o755)
    return LocalHost(node)


def test_returns_once_the_agent_answers(tmp_path: Path, rpc: FakeRPC) -> None:
    host = make_host(tmp_path, rpc.port, running=True)
    t0 = time.monotonic()
    remote.start_agent(host, "start", 20, 20)
    assert time.monotonic() - t0 < 5
    assert rpc.commands == ["handshake", "members-lan"]


def test_an_agent_that_exited_fails_at_once_with_its_log(tmp_path: Path, rpc: FakeRPC) -> None:
    host = make_host(tmp_path, rpc.port, running=False)
    t0 = time.monotonic()
    with pytest.raises(HostError) as info:
        remote.start_agent(host, "start", 20, 20)
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert msg.startswith("agent exited while starting (")
    assert "log line 19" in msg and "==> Error: bind: address in use" in msg
    assert "log line 5" not in msg  # only the end of the log


def test_deadline_names_what_was_last_seen(tmp_path: Path) -> None:
    rpc = FakeRPC(error="No cluster leader")
    port = rpc.port
    host = make_host(tmp_path, port, running=True)
    with pytest.raises(HostError) as info:
        remote.wait_agent(host, 0.5, 20)
    assert str(info.value) == "agent did not answer within 0.5s: No cluster leader"
    rpc.close()
    with pytest.raises(HostError) as closed:
        remote.wait_agent(host, 0.5, 20)
    assert f"nothing listening on 127.0.0.63:{port} yet" in str(closed.value)
