"""agent/cli/agent_cmd.py: the seed's banner and join error block, and flag errors on exit."""

from __future__ import annotations

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
