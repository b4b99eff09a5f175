"""What a failed run prints: errors grouped per host with the failing command, its exit status
and the tail of its stderr; and the CLI's exit codes for bad input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from provision import cli
from provision.hosts import HostUnreachable, StepError
from provision.report import Reporter, describe


def test_step_error_names_command_status_and_stderr_tail() -> None:
    stderr = "\n".join(f"line {i}" for i in range(20)) + "\nERROR: no matching distribution\n"
    exc = StepError("s1", "install", "pip install senate==0.7.2", 1, stderr)
    text = describe(exc)
    assert text.splitlines()[:3] == [
        "step: install",
        "command: pip install senate==0.7.2",
        "exit status 1",
    ]
    assert "ERROR: no matching distribution" in text and "line 0" not in text
    assert describe(StepError("s1", "start", "senatectl start", None, "")) == (
        "step: start\ncommand: senatectl start\ntimed out"
    )


def test_errors_are_grouped_per_host() -> None:
    out = io.StringIO()
    r = Reporter(Console(file=out, width=120, highlight=False))
    r.errors(
        {
            "s1": StepError("s1", "install", "tar -xf x", 2, "tar: short read"),
            "c2": HostUnreachable("c2", "cannot reach root@10.0.0.9:22 over SSH: timed out"),
        }
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "2 host(s) failed:"
    assert lines[1] == "s1" and lines[2].strip() == "step: install"
    assert "    exit status 2" in lines and "      tar: short read" in lines
    assert lines[-2] == "c2" and lines[-1].strip().startswith("cannot reach root@10.0.0.9:22")


def test_cli_invalid_inventory_exits_2_with_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "bad.yml"
    p.write_text("datacenters:\n  dc1:\n    servers: [{host: 10.0.0.1, colour: red}]\n")
    assert cli.main(["plan", "--offline", str(p)]) == 2
    err = capsys.readouterr().err
    assert "invalid inventory" in err and "datacenters.dc1.servers[0].colour: unknown key" in err


def test_cli_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["up", "--help"], ["upgrade", "--help"], ["down", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--rollback" in out and "--purge" in out and "provision up inventories/local.yml" in out


def test_cli_plan_offline_prints_every_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "inv.yml"
    p.write_text(
        "datacenters:\n  dc1:\n    servers: [{name: a, host: 10.0.0.1}, {name: b, host: 10.0.0.2}, {name: c, host: 10.0.0.3}]\n"
    )
    assert cli.main(["plan", "--offline", str(p)]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 node(s) to change: a, b, c" in out
