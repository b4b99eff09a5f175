"""`senate watch`: blocking queries, handler invocation, and the seed's event watch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from agent_double import Served

from agent.cli import dispatch
from agent.cli.watch import spec_from_args, watch_parser
from agent.client import HTTPClient
from agent.watches import WatchSpec, run_handler, watch_loop

pytestmark = pytest.mark.timeout(60)


def parse(*argv: str) -> argparse.Namespace:
    p = watch_parser()
    return p.parse_args(p.go_args(list(argv)))


def test_key_watch_without_handler_prints_the_pair(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    h = f"-http-addr={served.http_addr}"
    index = served.agent.raft.last_log_index + 1  # the put is the next raft entry
    assert dispatch(["kv", "put", h, "name", "ivan"]) == 0
    capsys.readouterr()
    assert dispatch(["watch", h, "-type=key", "-key=name"]) == 0
    pair = json.loads(capsys.readouterr().out)
    assert pair == {
        "Key": "name",
        "CreateIndex": index,
        "ModifyIndex": index,
        "LockIndex": 0,
        "Flags": 0,
        "Value": "aXZhbg==",
        "Session": "",
    }


def test_event_watch_runs_on_start_and_on_each_new_event(served: Served) -> None:
    """The seed: `watch -type=event -name=sayhi "echo 'got it'"` prints once at start (no
    events yet) and once per `senate event -name=sayhi`."""
    args = parse(f"-http-addr={served.http_addr}", "-type=event", "-name=sayhi")
    seen: list[tuple[int, Any]] = []
    fire = HTTPClient(served.http_addr)

    def handler(index: int, data: Any) -> bool:
        seen.append((index, data))
        if len(seen) == 1:
            fire.request("PUT", "/v1/event/fire/other")  # another name: no wake-up for us
            fire.request("PUT", "/v1/event/fire/sayhi", body=b"hi")
        return len(seen) < 2

    client = HTTPClient(served.http_addr, timeout=10)
    watch_loop(spec_from_args(args), client, handler)
    assert seen[0] == (1, [])
    index, events = seen[1]
    assert [e["Name"] for e in events] == ["sayhi"]
    assert events[0]["Payload"] == "aGk="
    assert index != 1


def test_watch_errors(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    h = f"-http-addr={served.http_addr}"
    assert dispatch(["watch", h]) == 1
    assert capsys.readouterr().err.startswith("Watch type must be specified")
    assert dispatch(["watch", h, "-type=key"]) == 1
    assert capsys.readouterr().err == "Failed to setup watch: Must specify a single key to watch\n"
    assert dispatch(["watch", h, "-type=weather"]) == 1
    assert "Unsupported watch type: weather" in capsys.readouterr().err
    assert dispatch(["watch", "-http-addr=127.0.0.1:1", "-type=nodes"]) == 1
    assert capsys.readouterr().err.startswith("Error querying Senate agent:")


def test_handler_gets_json_on_stdin_and_the_index(tmp_path: Path) -> None:
    target = tmp_path / "got"
    script = f'cat > {target}; echo "$CONSUL_INDEX" >> {target}'
    assert run_handler(WatchSpec(type="event", script=script), 42, [{"Name": "sayhi"}]) is None
    lines = target.read_text().splitlines()
    assert json.loads(lines[0]) == [{"Name": "sayhi"}]
    assert lines[1] == "42"
    assert run_handler(WatchSpec(type="event", script="exit 3"), 1, None) == "exit status 3"


def test_failing_handler_stops_the_watch_with_exit_1(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = dispatch(["watch", f"-http-addr={served.http_addr}", "-type=nodes", "exit 1"])
    assert rc == 1
    assert capsys.readouterr().err == "Error executing handler: exit status 1\n"


def test_blocking_event_list_waits_for_a_change(served: Served) -> None:
    client = HTTPClient(served.http_addr, timeout=10)
    first = client.request("GET", "/v1/event/list")
    assert first.index == 1 and first.json() == []
    resp = client.request("GET", "/v1/event/list", {"index": 1, "wait": "100ms"})
    assert resp.index == 1  # timed out unchanged
    bad = client.request("GET", "/v1/event/list", {"index": "x"}, ok=(400,))
    assert bad.body == b"Invalid index"
