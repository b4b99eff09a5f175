"""agent/cli/agent_cmd.py: the seed's banner and join error block, and flag errors on exit."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.api import JoinError
from agent.cli import agent_cmd
from agent.config import load


def test_banner_matches_the_seed_layout() -> None:
    agent = Agent(
        load(["-data-dir=/tmp/x", "-bind=10.12.10.37", "-node=server1", "-dc=mydc", "-server"])
    )
    lines = agent_cmd.banner(agent).splitlines()
    assert lines == [
        "==> Senate agent running!",
        "           Version: 'v0.7.2'",
        "         Node name: 'server1'",
        "        Datacenter: 'mydc'",
        "            Server: true (bootstrap: false)",
        "       Client Addr: 127.0.0.1 (HTTP: 8500, HTTPS: -1, DNS: 8600, RPC: 8400)",
        "      Cluster Addr: 10.12.10.37 (LAN: 8301, WAN: 8302)",
        "    Gossip encrypt: false, RPC-TLS: false, TLS-Incoming: false",
        "             Atlas: <disabled>",
        "",
        "==> Log data will now stream in as it occurs:",
    ]
    assert agent_cmd.banner(agent).endswith("as it occurs:\n")  # then a blank line


def test_join_errors_block() -> None:
    exc = JoinError("Failed to join 10.12.10.37: Member 'server1' part of wrong datacenter 'mydc'")
    assert agent_cmd.join_errors(exc) == (
        "==> 1 error(s) occurred:\n\n"
        "* Failed to join 10.12.10.37: Member 'server1' part of wrong datacenter 'mydc'"
    )
    two = JoinError("2 error(s) occurred:\n\n* Failed to join a: x\n* Failed to join b: y")
    assert agent_cmd.join_errors(two).startswith(
        "==> 2 error(s) occurred:\n\n* Failed to join a: x\n"
    )


def test_run_reports_config_errors_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert agent_cmd.run(["-data-dir=/tmp/x", "-bootstrap-expect=3"]) == 1
    err = capsys.readouterr().err
    assert err == "==> Bootstrap mode requires server mode (-server)\n"
    assert agent_cmd.run(["-help"]) == 1
    assert "Usage: senate agent [options]" in capsys.readouterr().err


def test_syslog_handler_sends_consul_lines(tmp_path: Path) -> None:
    from agent.local.logstream import syslog_handler

    path = tmp_path / "log.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        handler = syslog_handler("LOCAL3", "info", address=str(path))
        record = logging.LogRecord("raft", logging.INFO, __file__, 1, "Election won", (), None)
        handler.emit(record)
        data = sock.recv(4096)
        handler.close()
    finally:
        sock.close()
    # <PRI> = facility LOCAL3 (19) * 8 + INFO (6)
    assert data.startswith(b"<158>consul[")
    assert b"[INFO] raft: Election won" in data
