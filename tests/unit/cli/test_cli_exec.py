"""`senate exec` and the agent-side runner of agent/local/rexec.py, end to end through the
HTTP API and the real KV and sessions of tests/agent_double.py, whose `_rexec` events run
jobs as the real agent does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agent_double import Served

from agent.cli import dispatch
from agent.cli.exec_cmd import target_lines
from agent.local.rexec import decode_spec, encode_spec

pytestmark = pytest.mark.timeout(60)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_seed_exec_writes_the_file_and_reports(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "enen"
    rc, out, err = run(
        capsys,
        "exec",
        f"-http-addr={served.http_addr}",
        "-node=server1",
        "-wait=300ms",
        "-wait-repl=0s",
        f"echo 'enen' > {target}",
    )
    assert (rc, err) == (0, "")
    assert out == "==> server1: finished with exit code 0\n1 / 1 node(s) completed / acknowledged\n"
    assert target.read_text() == "enen\n"
    # the session is destroyed and the job's keys are gone
    assert served.agent.state.session_list()[1] == []
    assert served.agent.state.kvs_list("_rexec/")[1] == []
    event = served.agent.user_events()[0]
    assert event["Name"] == "_rexec" and event["NodeFilter"] == "server1"
    assert set(json.loads(event["Payload"])) == {"Prefix", "Session"}


def test_exec_streams_output_and_fails_on_nonzero_exit(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run(
        capsys,
        "exec",
        f"-http-addr={served.http_addr}",
        "-wait=300ms",
        "-wait-repl=0s",
        "echo hello; exit 3",
    )
    assert rc == 2
    # Consul's TargetedUi prefixes the empty piece after the last newline too
    assert out == (
        "    server1: hello\n"
        "    server1:\n"
        "==> server1: finished with exit code 3\n"
        "1 / 1 node(s) completed / acknowledged\n"
    )


def test_exec_usage_errors(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "exec", f"-http-addr={served.http_addr}")
    assert rc == 1 and err.startswith("Must specify a command to execute")
    rc, _, err = run(capsys, "exec", f"-http-addr={served.http_addr}", "-tag=x", "true")
    assert (rc, err) == (1, "Cannot provide tag filter without service filter.\n")
    rc, _, err = run(capsys, "exec", "-http-addr=127.0.0.1:1", "true")
    assert rc == 1 and err.startswith("Error querying Senate agent:")


def test_spec_and_targeted_lines() -> None:
    assert decode_spec(encode_spec("uptime", b"", 2.0)) == ("uptime", b"", 2.0)
    assert json.loads(encode_spec("", b"#!/bin/sh\n", 1.5)) == {
        "Script": "IyEvYmluL3NoCg==",
        "Wait": 1_500_000_000,
    }
    assert target_lines("n1", "a\nb", False) == "    n1: a\n    n1: b"
    assert target_lines("n1", "a\n", False) == "    n1: a\n    n1:"
    assert target_lines("n1", "done", True) == "==> n1: done"
