"""Go's flag package in every command (`-flag=false` and the other strconv.ParseBool forms),
and the Consul 1.x flags of older commands: kv import -prefix, force-leave -prune."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from agent_double import AgentDouble, Served, serve_in_thread
from aiohttp import web

import agent.cli
from agent.cli import dispatch
from agent.cli.common import GoBoolAction, Parser, UsageError, dc_params
from agent.cli.kv import get_parser, go_path_clean, import_key

pytestmark = pytest.mark.timeout(60)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def parse(p: Parser, *argv: str) -> argparse.Namespace:
    return p.parse_args(p.go_args(list(argv)))


def test_go_bool_forms() -> None:
    p = Parser("t", "t")
    p.flag("recurse", action="store_true")
    p.flag("name", default="")
    p.add_argument("rest", nargs="*")
    for form, value in [
        ("-recurse", True),
        ("--recurse", True),
        ("-recurse=true", True),
        ("-recurse=1", True),
        ("-recurse=t", True),
        ("-recurse=T", True),
        ("-recurse=TRUE", True),
        ("-recurse=True", True),
        ("-recurse=false", False),
        ("--recurse=0", False),
        ("-recurse=f", False),
        ("-recurse=F", False),
        ("-recurse=FALSE", False),
        ("-recurse=False", False),
    ]:
        assert parse(p, form).recurse is value, form
    assert parse(p).recurse is False
    assert parse(p, "-recurse", "-recurse=false").recurse is False  # the last one wins
    assert parse(p, "-recurse=0", "-recurse").recurse is True
    args = parse(p, "-recurse", "false")  # a bool flag never takes the next word
    assert (args.recurse, args.rest) == (True, ["false"])
    args = parse(p, "-name", "-recurse", "x")  # a value flag takes it, whatever it is
    assert (args.name, args.recurse, args.rest) == ("-recurse", False, ["x"])
    for bad in ("-recurse=yes", "-recurse=", "-recurse=2"):
        value = bad.split("=", 1)[1]
        with pytest.raises(UsageError) as failed:
            parse(p, bad)
        assert str(failed.value) == f'invalid boolean value "{value}" for -recurse: parse error'
    assert "\n  -recurse\n" in p.format_help()  # shown as Go shows a bool flag, no value


def test_flag_errors_are_worded_as_go(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "services", "register", "-port=abc", "-name=x")
    assert (rc, err.splitlines()[0]) == (1, 'invalid value "abc" for flag -port: parse error')
    rc, _, err = run(capsys, "catalog", "nodes", "-bogus=1")
    assert (rc, err.splitlines()[0]) == (1, "flag provided but not defined: -bogus")
    rc, _, err = run(capsys, "catalog", "nodes", "-filter")
    assert (rc, err.splitlines()[0]) == (1, "flag needs an argument: -filter")


def _all_parsers() -> Iterator[tuple[str, Parser]]:
    for info in pkgutil.iter_modules(agent.cli.__path__):
        module = importlib.import_module(f"agent.cli.{info.name}")
        for name in dir(module):
            make = getattr(module, name)
            if name.endswith("_parser") and callable(make):
                try:
                    p = make()
                except TypeError:
                    continue  # takes arguments: not a parser factory
                if isinstance(p, Parser):
                    yield f"{info.name}.{name}", p


def test_every_bool_flag_of_every_command_takes_go_forms() -> None:
    seen = 0
    for where, p in _all_parsers():
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.nargs != 0, f"{where}: {action.option_strings} is a plain store_true"
            if not isinstance(action, GoBoolAction):
                continue
            flag = action.option_strings[0]
            seen += 1
            assert getattr(parse(p, f"{flag}=true"), action.dest) is True, (where, flag)
            assert getattr(parse(p, flag, f"{flag}=false"), action.dest) is False, (where, flag)
            assert getattr(parse(p, f"{flag}=1"), action.dest) is True, (where, flag)
    assert seen > 25


def test_bool_forms_through_commands(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, "kv", "put", h, "app/a", "1")[0] == 0
    assert run(capsys, "kv", "get", h, "-recurse=true", "app") == (0, "app/a:1\n", "")
    assert run(capsys, "kv", "get", h, "-recurse=false", "app") == (
        1,
        "",
        "Error! No key exists at: app\n",
    )
    rc, out, _ = run(capsys, "kv", "get", h, "-detailed=1", "app/a")
    assert rc == 0 and out.startswith("CreateIndex")
    rc, out, _ = run(capsys, "members", h, "-detailed=false")
    assert rc == 0 and out.startswith("Node        Address           Status  Type")
    assert dc_params(parse(get_parser(), "-stale=t", "k")) == {"stale": True}
    assert dc_params(parse(get_parser(), "-stale=f", "k")) == {}


# ---- kv import -prefix ---------------------------------------------------------------------


def test_import_key_is_path_join() -> None:
    assert go_path_clean("") == "."
    assert go_path_clean("a//b/./c/..") == "a/b"
    assert go_path_clean("/../a/") == "/a"
    assert go_path_clean("../../x") == "../../x"
    assert import_key("", "a//b") == "a/b"  # Consul 1.x cleans every key
    assert import_key("", "dir/") == "dir/"
    assert import_key("", "") == ""
    assert import_key("imported/", "/a") == "imported/a"
    assert import_key("p", "x/../y") == "p/y"
    assert import_key("p", "sub/") == "p/sub/"


def test_kv_import_prefix(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    h = f"-http-addr={served.http_addr}"
    entries = [
        {"key": "a", "flags": 3, "value": "MQ=="},
        {"key": "b/c", "flags": 0, "value": ""},
        {"key": "dir/", "flags": 0, "value": ""},
    ]
    assert run(capsys, "kv", "import", h, "-prefix=restored", json.dumps(entries)) == (
        0,
        "Imported: restored/a\nImported: restored/b/c\nImported: restored/dir/\n",
        "",
    )
    entry = served.agent.state.kvs_get("restored/a")[1]
    assert entry is not None and (entry["Flags"], entry["Value"]) == (3, b"1")
    assert served.agent.state.kvs_get("restored/dir/")[1] is not None
    assert served.agent.state.kvs_get("a")[1] is None
    rc, out, _ = run(capsys, "kv", "export", h, "restored/")
    assert rc == 0 and [e["key"] for e in json.loads(out)] == [
        "restored/a",
        "restored/b/c",
        "restored/dir/",
    ]


# ---- force-leave -prune ---------------------------------------------------------------------


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Served, list[Any]]]:
    for name in ("CONSUL_HTTP_ADDR", "SENATE_HTTP_ADDR", "CONSUL_RPC_ADDR", "SENATE_RPC_ADDR"):
        monkeypatch.delenv(name, raising=False)
    seen: list[Any] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.method, request.path, dict(request.query)))
        return await handler(request)  # type: ignore[no-any-return]

    agent = AgentDouble()
    with serve_in_thread(
        agent, middlewares=[record], on_start=agent.start, on_stop=agent.stop
    ) as served:
        yield served, seen


def test_force_leave_prune(
    recorded: tuple[Served, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    served, seen = recorded
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, "force-leave", h, "-prune", "ceph-debug") == (0, "", "")
    assert seen[-1] == ("PUT", "/v1/agent/force-leave/ceph-debug", {"prune": "1"})
    assert run(capsys, "force-leave", h, "-prune=false", "ceph-debug") == (0, "", "")
    assert seen[-1] == ("PUT", "/v1/agent/force-leave/ceph-debug", {})
    assert (
        run(capsys, "force-leave", f"-rpc-addr={served.rpc_addr}", "-prune", "ceph-debug")[0] == 0
    )
    assert served.agent.gossip.force_left == [
        "ceph-debug (prune)",
        "ceph-debug",
        "ceph-debug (prune)",
    ]
    rc, _, err = run(capsys, "force-leave", h, "-prune")
    assert (rc, err.splitlines()[0]) == (1, "A node name must be specified to force leave.")
