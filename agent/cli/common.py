"""What every `senate` command shares: Consul-style flag parsing, the agent connection
(-http-addr / -rpc-addr and their environment variables), columnized output and errors."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn, Protocol

from agent.client import (
    DEFAULT_HTTP_ADDR,
    DEFAULT_RPC_ADDR,
    HTTP_ENV,
    RPC_ENV,
    APIError,
    ClientError,
    HTTPClient,
    RPCClient,
    env_addr,
)


class UsageError(Exception):
    """Bad flags or arguments: the message and the command's usage are printed, exit 1."""


class _GoHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Options shown as Consul shows them: `-name=<value>` once, not `-name X, --name X`."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        name = action.option_strings[0]
        if action.nargs == 0:
            return name
        default = action.default
        shown = f"<{action.metavar or action.dest}>" if default in (None, "") else str(default)
        return f"{name}={shown}"


class Parser(argparse.ArgumentParser):
    """argparse with Go's flag conventions: `-flag=value`, `-h`/`-help`/`--help`, exit 1."""

    def __init__(self, prog: str, usage: str, description: str = "") -> None:
        super().__init__(
            prog=f"senate {prog}",
            usage=usage,
            description=description,
            add_help=False,
            allow_abbrev=False,
            formatter_class=_GoHelpFormatter,
        )
        self.add_argument("-h", "-help", "--help", action="help", help=argparse.SUPPRESS)

    def flag(self, name: str, **kwargs: Any) -> None:
        """A Consul flag: `-name` (and `--name`)."""
        dest = name.replace("-", "_")
        self.add_argument(f"-{name}", f"--{name}", dest=dest, **kwargs)

    def error(self, message: str) -> NoReturn:
        missing = re.fullmatch(r"argument (-[\w-]+)/--[\w-]+: expected one argument", message)
        if missing:  # Go's flag package
            raise UsageError(f"flag needs an argument: {missing.group(1)}")
        prefix = "unrecognized arguments: "
        rest = message[len(prefix) :] if message.startswith(prefix) else ""
        if rest == "--" or rest.startswith("-- "):  # words after the flags (go_args' "--")
            words = rest.split()[1:]
            raise UsageError(f"Too many arguments (expected 0, got {len(words)})")
        if message.startswith(prefix) and message[len(prefix) :].startswith("-"):
            message = "flag provided but not defined: " + message[len(prefix) :].split()[0]
        raise UsageError(message)

    def go_args(self, argv: list[str]) -> list[str]:
        """Reorder argv as Go's flag package reads it: flags stop at the first non-flag, so
        later words (even `-` or `-x`) are positional. Returns argv with `--` inserted there."""
        flags: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                i += 1
                break
            if not arg.startswith("-") or arg == "-":
                break
            flags.append(arg)
            name = arg.split("=", 1)[0]
            action = self._option_string_actions.get(name)
            if action is not None and action.nargs != 0 and "=" not in arg and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
            i += 1
        rest = argv[i:]
        return [*flags, "--", *rest] if rest else flags


def add_http_addr_flag(p: Parser) -> None:
    p.flag(
        "http-addr",
        default=None,
        metavar="ADDR",
        help="HTTP address of the Senate agent (default 127.0.0.1:8500, or $CONSUL_HTTP_ADDR)",
    )


def add_http_flags(p: Parser) -> None:
    add_http_addr_flag(p)
    p.flag("datacenter", default=None, metavar="DC", help="Datacenter to query")
    p.flag("stale", action="store_true", help="Allow any server to answer (stale reads)")
    p.flag("token", default=None, help=argparse.SUPPRESS)


def add_rpc_flags(p: Parser) -> None:
    p.flag(
        "rpc-addr",
        default=None,
        metavar="ADDR",
        help="RPC address of the Senate agent (default 127.0.0.1:8400, or $CONSUL_RPC_ADDR)",
    )
    p.flag(
        "http-addr",
        default=None,
        metavar="ADDR",
        help="Use the HTTP API at this address instead of the RPC",
    )
    p.flag("token", default=None, help=argparse.SUPPRESS)


def http_client(args: argparse.Namespace) -> HTTPClient:
    addr = getattr(args, "http_addr", None) or env_addr(HTTP_ENV) or DEFAULT_HTTP_ADDR
    return HTTPClient(addr)


def dc_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if getattr(args, "datacenter", None):
        params["dc"] = args.datacenter
    if getattr(args, "stale", False):
        params["stale"] = True
    return params


class AgentOps(Protocol):
    """The agent operations of Consul 0.7's RPC commands, over RPC or HTTP."""

    def members(self, wan: bool) -> list[dict[str, Any]]: ...
    def join(self, addrs: list[str], wan: bool) -> int: ...
    def leave(self) -> None: ...
    def force_leave(self, node: str) -> None: ...
    def stats(self) -> dict[str, dict[str, str]]: ...
    def reload(self) -> None: ...
    def keyring(self, op: str, key: str | None) -> dict[str, Any]: ...
    def monitor(self, level: str) -> Iterator[str]: ...
    def close(self) -> None: ...


class HTTPAgentOps:
    """AgentOps over the HTTP API (when -http-addr or only $CONSUL_HTTP_ADDR is given)."""

    def __init__(self, client: HTTPClient) -> None:
        self.client = client

    def members(self, wan: bool) -> list[dict[str, Any]]:
        from agent.api import STATUS_NAMES

        members = self.client.get_json("/v1/agent/members", {"wan": "1" if wan else None})
        for m in members:
            if isinstance(m.get("Status"), int):
                m["Status"] = STATUS_NAMES.get(m["Status"], str(m["Status"]))
        return list(members)

    def join(self, addrs: list[str], wan: bool) -> int:
        joined = 0
        errors = []
        for addr in addrs:
            try:
                self.client.request("PUT", f"/v1/agent/join/{addr}", {"wan": "1" if wan else None})
                joined += 1
            except APIError as exc:
                errors.append(exc.body)
        if not joined:
            raise ClientError("; ".join(errors))
        return joined

    def leave(self) -> None:
        self.client.request("PUT", "/v1/agent/leave")

    def force_leave(self, node: str) -> None:
        self.client.request("PUT", f"/v1/agent/force-leave/{node}")

    def stats(self) -> dict[str, dict[str, str]]:
        return dict(self.client.get_json("/v1/agent/self").get("Stats") or {})

    def reload(self) -> None:
        self.client.request("PUT", "/v1/agent/reload")

    def keyring(self, op: str, key: str | None) -> dict[str, Any]:
        import json

        from agent.rpc_cli import keyring_to_rpc

        method = {"list": "GET", "install": "POST", "use": "PUT", "remove": "DELETE"}[op]
        body = json.dumps({"Key": key}).encode() if key is not None else None
        resp = self.client.request(method, "/v1/operator/keyring", body=body)
        return keyring_to_rpc(resp.json() or []) if op == "list" else {}

    def monitor(self, level: str) -> Iterator[str]:
        import http.client

        conn = http.client.HTTPConnection(self.client.host, self.client.port, timeout=None)
        conn.request("GET", f"/v1/agent/monitor?loglevel={level}")
        resp = conn.getresponse()
        if resp.status != 200:
            raise APIError(resp.status, resp.read().decode(errors="replace"))
        while True:
            line = resp.readline()
            if not line:
                return
            yield line.decode(errors="replace").rstrip("\n")

    def close(self) -> None:
        self.client.close()


def agent_ops(args: argparse.Namespace) -> AgentOps:
    """-http-addr picks HTTP; else -rpc-addr / $CONSUL_RPC_ADDR / $CONSUL_HTTP_ADDR / 8400."""
    if getattr(args, "http_addr", None):
        return HTTPAgentOps(HTTPClient(args.http_addr))
    if getattr(args, "rpc_addr", None):
        return RPCClient(args.rpc_addr)
    rpc_env = env_addr(RPC_ENV)
    if rpc_env:
        return RPCClient(rpc_env)
    http_env = env_addr(HTTP_ENV)
    if http_env:
        return HTTPAgentOps(HTTPClient(http_env))
    return RPCClient(DEFAULT_RPC_ADDR)


def columnize(rows: Sequence[Sequence[str]]) -> str:
    """ryanuber/columnize as Consul uses it: columns joined by two spaces, last one unpadded."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in rows:
        cells = [cell if i == len(row) - 1 else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells))
    return "\n".join(lines) + "\n"


def tabwriter(rows: Sequence[tuple[str, str]], padding: int = 6) -> str:
    """Go's tabwriter (minwidth 0, tabwidth 2, padding 6, ' ') for a two-column block."""
    width = max(len(k) for k, _ in rows) + padding
    return "\n".join(f"{k.ljust(width)}{v}" for k, v in rows)


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def run_guarded(parser: Parser, argv: list[str], body: Any) -> int:
    """Parse argv, run body(args); usage errors -> message + usage, exit 1."""
    try:
        args = parser.parse_args(parser.go_args(argv))
    except UsageError as exc:
        err(str(exc))
        err(parser.format_usage().rstrip())
        return 1
    except SystemExit as exc:  # -h
        return int(exc.code or 0)
    try:
        return int(body(args))
    except UsageError as exc:
        err(str(exc))
        err(parser.format_usage().rstrip())
        return 1
    except BrokenPipeError:
        return 1
