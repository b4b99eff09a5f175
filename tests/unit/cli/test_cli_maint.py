"""`senate maint` against the real HTTP app over a real LocalRegistry (no cluster): Consul 0.7's
messages, list layout, argument checks and exit codes, and the maintenance checks it leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_double import WithoutACLs, serve_in_thread
from aiohttp import web

from agent.cli import dispatch
from agent.cli.common import UsageError
from agent.cli.maint import check_args, format_maintenance, go_quote, maint_parser
from agent.client import HTTPClient
from agent.local.registry import (
    DEFAULT_NODE_MAINT_REASON,
    DEFAULT_SERVICE_MAINT_REASON,
    LocalRegistry,
)
from agent.local.state import LocalState

pytestmark = pytest.mark.timeout(30)


class MaintAgent(WithoutACLs):
    """Just enough of an agent for /v1/agent/{self,checks,maintenance,service/*}."""

    node_name = "ceph-debug"
    datacenter = "mydc"
    is_server = False

    def __init__(self, data_dir: Path) -> None:
        self.local = LocalState(node_name=self.node_name)
        self.registry = LocalRegistry(state=self.local, data_dir=data_dir)
        self.queries: list[dict[str, str]] = []
        self.seen_tokens: list[str | None] = []

    def self_info(self) -> dict[str, Any]:
        return {"Config": {"NodeName": self.node_name, "Datacenter": self.datacenter}}

    def stats(self) -> dict[str, dict[str, str]]:
        return {}

    def local_services(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.local.services.items()}

    def local_checks(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.local.checks.items()}


@dataclass
class MaintServed:
    agent: MaintAgent
    http_addr: str

    def put(self, path: str, body: Any) -> None:
        client = HTTPClient(self.http_addr)
        try:
            client.request("PUT", path, body=json.dumps(body).encode())
        finally:
            client.close()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MaintServed]:
    for name in ("CONSUL_HTTP_ADDR", "SENATE_HTTP_ADDR"):
        monkeypatch.delenv(name, raising=False)
    agent = MaintAgent(tmp_path)

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        agent.queries.append(dict(request.query))
        agent.seen_tokens.append(request.headers.get("X-Consul-Token"))
        return await handler(request)  # type: ignore[no-any-return]

    with serve_in_thread(agent, middlewares=[record], on_stop=agent.registry.stop) as s:
        yield MaintServed(agent, s.http_addr)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(["maint", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def register_web(served: MaintServed) -> None:
    served.put("/v1/agent/service/register", {"Name": "web", "Port": 80})


def test_service_and_node_maintenance_round_trip(
    served: MaintServed, capsys: pytest.CaptureFixture[str]
) -> None:
    register_web(served)
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, h) == (0, "", "")

    assert run(capsys, h, "-enable", "-service=web", "-reason=x") == (
        0,
        'Service maintenance is now enabled for "web"\n',
        "",
    )
    check = served.agent.local.checks["_service_maintenance:web"]
    assert (check["Status"], check["Notes"], check["ServiceID"]) == ("critical", "x", "web")

    assert run(capsys, h, "-enable", "-reason=kernel upgrade") == (
        0,
        "Node maintenance is now enabled\n",
        "",
    )
    assert served.agent.local.checks["_node_maintenance"]["Notes"] == "kernel upgrade"

    # Consul's layout: node block first, every block followed by a blank line.
    assert run(capsys, h) == (
        0,
        "Node:\n"
        "  Name:   ceph-debug\n"
        "  Reason: kernel upgrade\n"
        "\n"
        "Service:\n"
        "  ID:     web\n"
        "  Reason: x\n"
        "\n",
        "",
    )

    assert run(capsys, h, "-disable", "-service=web") == (
        0,
        'Service maintenance is now disabled for "web"\n',
        "",
    )
    assert run(capsys, h, "-disable") == (0, "Node maintenance is now disabled\n", "")
    assert not any("maintenance" in cid for cid in served.agent.local.checks)
    assert run(capsys, h) == (0, "", "")


def test_enable_without_reason_lists_the_default_reason(
    served: MaintServed, capsys: pytest.CaptureFixture[str]
) -> None:
    register_web(served)
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, h, "-enable")[0] == 0
    assert run(capsys, h, "-enable", "-service", "web")[0] == 0
    rc, out, _ = run(capsys, h)
    assert rc == 0
    assert f"  Reason: {DEFAULT_NODE_MAINT_REASON}\n" in out
    assert f"  Reason: {DEFAULT_SERVICE_MAINT_REASON}\n" in out
    # enabling again keeps the first reason, as Consul's agent does
    assert run(capsys, h, "-enable", "-reason=second")[0] == 0
    assert served.agent.local.checks["_node_maintenance"]["Notes"] == DEFAULT_NODE_MAINT_REASON
    # the agent sends `reason` only with enable, and always `enable`
    puts = [q for q in served.agent.queries if "enable" in q]
    assert puts[0] == {"enable": "true", "reason": ""}


def test_unknown_service_is_consuls_error(
    served: MaintServed, capsys: pytest.CaptureFixture[str]
) -> None:
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, h, "-enable", "-service=redis", "-reason=broken") == (
        1,
        "",
        "Error enabling service maintenance: Unexpected response code: 404 "
        '(No service registered with ID "redis")\n',
    )
    assert run(capsys, h, "-disable", "-service=redis") == (
        1,
        "",
        "Error disabling service maintenance: Unexpected response code: 404 "
        '(No service registered with ID "redis")\n',
    )
    assert served.agent.local.checks == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-enable", "-disable"], "Only one of -enable or -disable may be provided"),
        (["-disable", "-reason=broken"], "Reason may only be provided with -enable"),
        (["-reason=broken"], "Reason may only be provided with -enable"),
        (["-service=web"], "Service requires either -enable or -disable"),
        (["-enable=yes"], 'invalid boolean value "yes" for -enable: parse error'),
        (["-nope"], "flag provided but not defined: -nope"),
        (["-enable", "-service"], "flag needs an argument: -service"),
        (["-enable", "web"], "Too many arguments (expected 0, got 1)"),
    ],
)
def test_bad_arguments_exit_1_before_contacting_the_agent(
    served: MaintServed, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, out, err = run(capsys, f"-http-addr={served.http_addr}", *argv)
    assert (rc, out) == (1, "")
    assert err.splitlines()[0] == message
    assert served.agent.queries == []


def test_address_from_environment_and_go_bool_forms(
    served: MaintServed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    register_web(served)
    monkeypatch.setenv("CONSUL_HTTP_ADDR", served.http_addr)
    assert run(capsys, "-enable=true", "-service", "web") == (
        0,
        'Service maintenance is now enabled for "web"\n',
        "",
    )
    monkeypatch.delenv("CONSUL_HTTP_ADDR")
    monkeypatch.setenv("SENATE_HTTP_ADDR", served.http_addr)
    # -enable=false leaves only -disable; the token travels as Consul 1.x's api sends it
    assert run(capsys, "-enable=false", "-disable=1", "-service=web", "-token=secret") == (
        0,
        'Service maintenance is now disabled for "web"\n',
        "",
    )
    assert "token" not in served.agent.queries[-1]
    assert served.agent.seen_tokens[-2:] == ["secret", "secret"]  # agent/self, then the PUT
    assert "_service_maintenance:web" not in served.agent.local.checks


def test_unreachable_or_bad_address_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "-http-addr=127.0.0.1:1")
    assert (rc, out) == (1, "")
    assert err.startswith("Error querying Senate agent: GET http://127.0.0.1:1/v1/agent/self: ")
    assert "connection refused" in err
    rc, out, err = run(capsys, "-enable", "-http-addr=127.0.0.1:http")
    assert (rc, out) == (1, "")
    assert err == "Error connecting to Senate agent: Invalid port in address '127.0.0.1:http'\n"


def test_help_is_listed_and_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(["maint", "-h"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: senate maint [options]")
    assert "-service=<serviceID>" in text
    dispatch([])
    assert "maint" in capsys.readouterr().err.split("Available commands are:")[1]


def test_pure_helpers() -> None:
    assert check_args(False, False, "", "") is None
    assert check_args(True, False, "r", "web") is None
    assert check_args(False, True, "", "web") is None
    p = maint_parser()
    args = p.parse_args(p.go_args(["-disable=t", "-enable", "-enable=0", "-service", "-enable"]))
    assert (args.disable, args.enable, args.service) == (True, False, "-enable")
    with pytest.raises(UsageError, match="Too many arguments"):
        p.parse_args(p.go_args(["-enable", "--", "-disable=x"]))  # after "--": an argument
    with pytest.raises(UsageError, match='invalid boolean value "" for -disable: parse error'):
        p.parse_args(p.go_args(["--disable="]))
    assert go_quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    checks = {
        "_service_maintenance:b": {"ServiceID": "b", "Notes": "nb"},
        "_service_maintenance:a": {"ServiceID": "a", "Notes": "na"},
        "service:web": {"ServiceID": "web", "Notes": "not maintenance"},
        "_node_maintenance": {"Notes": "n"},
        "garbage": "not a check",
    }
    assert format_maintenance("n1", checks).split("\n\n") == [
        "Node:\n  Name:   n1\n  Reason: n",
        "Service:\n  ID:     a\n  Reason: na",
        "Service:\n  ID:     b\n  Reason: nb",
        "",
    ]
