"""What every `senate` command shares: Consul-style flag parsing (Go's flag package: `-flag
value`, `-flag=value`, bool flags as `-flag` or `-flag=<bool>`), the agent connection (the
HTTP flags of Consul's command/flags/http.go and their CONSUL_* environment variables, or
-rpc-addr), columnized output and errors."""

from __future__ import annotations

import argparse
import os
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
    ConfigError,
    HTTPClient,
    RPCClient,
    TLSOptions,
    env_addr,
)

#: where a token comes from when -token / -token-file are not given, first one set wins
TOKEN_ENV = ("SENATE_HTTP_TOKEN", "CONSUL_HTTP_TOKEN")
TOKEN_FILE_ENV = ("SENATE_HTTP_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE")

#: Go's strconv.ParseBool, which the flag package uses for `-flag=<value>`.
GO_BOOLS: dict[str, bool] = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def parse_go_bool(text: str) -> bool | None:
    """strconv.ParseBool: True, False, or None when `text` is not a Go boolean."""
    return GO_BOOLS.get(text)


class UsageError(Exception):
    """Bad flags or arguments: the message and the command's usage are printed, exit 1."""


class GoBoolAction(argparse.Action):
    """A Go bool flag: `-name` sets it; `-name=<value>` sets or clears it by strconv.ParseBool
    (`-recurse=false`, `-detailed=1`, `-stale=t`); the last one given wins. It never takes the
    next word as its value (`-recurse false` is -recurse and the argument "false")."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        default: Any = False,
        required: bool = False,
        help: str | None = None,
    ) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs="?",
            const=True,
            default=default,
            required=required,
            help=help,
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if values is True or values is None:
            setattr(namespace, self.dest, True)
            return
        value = parse_go_bool(str(values))
        if value is None:
            name = (option_string or self.option_strings[0]).lstrip("-")
            raise UsageError(f'invalid boolean value "{values}" for -{name}: parse error')
        setattr(namespace, self.dest, value)


class GoMapAction(argparse.Action):
    """flags.FlagMapValue: `-name key=value`, repeatable, into a dict (a key given again takes
    the later value)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        default: Any = None,
        required: bool = False,
        help: str | None = None,
        metavar: str | None = None,
    ) -> None:
        super().__init__(
            option_strings, dest, default=default, required=required, help=help, metavar=metavar
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        text = str(values)
        key, eq, value = text.partition("=")
        if not eq:
            name = (option_string or self.option_strings[0]).lstrip("-")
            raise UsageError(
                f'invalid value "{text}" for flag -{name}: Missing "=" value in argument: {text}'
            )
        current = dict(getattr(namespace, self.dest, None) or {})
        current[key] = value
        setattr(namespace, self.dest, current)


def load_data_source(data: str) -> str:
    """helpers.LoadDataSource: `@file` is the file's text, `-` is stdin, else the text itself."""
    if data.startswith("@"):
        try:
            with open(data[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise ValueError(f"Failed to read file: {exc}") from None
    if data == "-":
        return sys.stdin.read()
    return data


def go_quote(text: str) -> str:
    """Go's %q for the printable strings a name or ID holds: quotes and backslashes escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    for raw, esc in (("\n", "\\n"), ("\t", "\\t"), ("\r", "\\r")):
        escaped = escaped.replace(raw, esc)
    return f'"{escaped}"'


def map_to_kv(m: dict[str, Any] | None, joiner: str = ", ") -> str:
    """Consul's mapToKV: `k=v` pairs sorted by key."""
    return joiner.join(f"{k}={v}" for k, v in sorted((m or {}).items()))


class _GoHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Options shown as Consul shows them: `-name=<value>` once, not `-name X, --name X`."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        name = action.option_strings[0]
        if action.nargs == 0 or isinstance(action, GoBoolAction):
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
        """A Consul flag: `-name` (and `--name`); `action="store_true"` is a Go bool flag."""
        dest = name.replace("-", "_")
        if kwargs.get("action") == "store_true":
            kwargs["action"] = GoBoolAction
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
            name = message[len(prefix) :].split()[0].split("=", 1)[0]
            message = "flag provided but not defined: " + name
        typed = re.fullmatch(r"argument -[\w-]+/--[\w-]+: (invalid value .*)", message)
        if typed:  # a type= converter's own message, worded as Go's flag package words it
            message = typed.group(1)
        raise UsageError(message)

    def go_args(self, argv: list[str]) -> list[str]:
        """Reorder argv as Go's flag package reads it: flags stop at the first non-flag, so
        later words (even `-` or `-x`) are positional. Returns argv with `--` inserted there.
        A value flag takes the next word whatever it is (`-service -enable`: the service is
        "-enable"), so that pair becomes one `-service=-enable`."""
        flags: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                i += 1
                break
            if not arg.startswith("-") or arg == "-":
                break
            name = arg.split("=", 1)[0]
            action = self._option_string_actions.get(name)
            takes_value = (
                action is not None
                and action.nargs != 0
                and not isinstance(action, GoBoolAction)
                and "=" not in arg
            )
            if takes_value and i + 1 < len(argv):
                flags.append(f"{arg}={argv[i + 1]}")
                i += 1
            else:
                flags.append(arg)
            i += 1
        rest = argv[i:]
        return [*flags, "--", *rest] if rest else flags


def add_http_client_flags(p: Parser) -> None:
    """Consul's HTTPFlags.ClientFlags: where the agent is and how to talk to it."""
    p.flag(
        "http-addr",
        default=None,
        metavar="address",
        help="The address and port of the Senate HTTP agent: host:port, http://host:port, "
        "https://host:port or unix:///path/to/socket (default http://127.0.0.1:8500, or "
        "$CONSUL_HTTP_ADDR; https with CONSUL_HTTP_SSL=true)",
    )
    p.flag(
        "token",
        default=None,
        metavar="value",
        help="ACL token to use in the request (or $SENATE_HTTP_TOKEN, $CONSUL_HTTP_TOKEN)",
    )
    p.flag(
        "token-file",
        default=None,
        metavar="value",
        help="File containing the ACL token to use instead of -token (or "
        "$SENATE_HTTP_TOKEN_FILE, $CONSUL_HTTP_TOKEN_FILE)",
    )
    p.flag(
        "ca-file",
        default=None,
        metavar="value",
        help="Path to a CA file to use for TLS (or $CONSUL_CACERT)",
    )
    p.flag(
        "ca-path",
        default=None,
        metavar="value",
        help="Path to a directory of CA certificates to use for TLS (or $CONSUL_CAPATH)",
    )
    p.flag(
        "client-cert",
        default=None,
        metavar="value",
        help="Path to a client cert file to use for TLS (or $CONSUL_CLIENT_CERT)",
    )
    p.flag(
        "client-key",
        default=None,
        metavar="value",
        help="Path to a client key file to use for TLS (or $CONSUL_CLIENT_KEY)",
    )
    p.flag(
        "tls-server-name",
        default=None,
        metavar="value",
        help="The server name to use as the SNI host and to verify when connecting via TLS "
        "(or $CONSUL_TLS_SERVER_NAME)",
    )


#: the name the maint command and older callers know it by
add_http_addr_flag = add_http_client_flags


def add_http_server_flags(p: Parser) -> None:
    """Consul's HTTPFlags.ServerFlags."""
    p.flag("datacenter", default=None, metavar="DC", help="Datacenter to query")
    p.flag("stale", action="store_true", help="Allow any server to answer (stale reads)")


def add_http_flags(p: Parser) -> None:
    add_http_client_flags(p)
    add_http_server_flags(p)


def add_rpc_flags(p: Parser) -> None:
    p.flag(
        "rpc-addr",
        default=None,
        metavar="ADDR",
        help="RPC address of the Senate agent (default 127.0.0.1:8400, or $CONSUL_RPC_ADDR)",
    )
    add_http_client_flags(p)


def _setting(args: argparse.Namespace, flag: str, *envs: str) -> str:
    """The flag's value, else the first of the environment variables that is set."""
    return str(getattr(args, flag, None) or env_addr(envs) or "")


def _env_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    value = parse_go_bool(raw)
    if value is None:
        err(f'[WARN] could not parse {name}: invalid boolean value "{raw}"')
    return value


def http_client(args: argparse.Namespace) -> HTTPClient:
    """The client Consul's HTTPFlags.APIClient makes: the flags over the environment
    (CONSUL_HTTP_ADDR, _TOKEN, _TOKEN_FILE, _SSL, _SSL_VERIFY, CONSUL_CACERT, _CAPATH,
    _CLIENT_CERT, _CLIENT_KEY, _TLS_SERVER_NAME; SENATE_HTTP_ADDR, SENATE_HTTP_TOKEN and
    SENATE_HTTP_TOKEN_FILE before their CONSUL_ names). A token file, when set, wins over any
    token.
    Raises ConfigError for what cannot be set up (address, TLS files, token file)."""
    addr = getattr(args, "http_addr", None) or env_addr(HTTP_ENV) or DEFAULT_HTTP_ADDR
    token = _setting(args, "token", *TOKEN_ENV)
    token_file = _setting(args, "token_file", *TOKEN_FILE_ENV)
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip() or token
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ConfigError(f"Error loading token file: open {token_file}: {reason}") from None
    tls = TLSOptions(
        ca_file=_setting(args, "ca_file", "CONSUL_CACERT"),
        ca_path=_setting(args, "ca_path", "CONSUL_CAPATH"),
        cert_file=_setting(args, "client_cert", "CONSUL_CLIENT_CERT"),
        key_file=_setting(args, "client_key", "CONSUL_CLIENT_KEY"),
        server_name=_setting(args, "tls_server_name", "CONSUL_TLS_SERVER_NAME"),
        insecure_skip_verify=_env_bool("CONSUL_HTTP_SSL_VERIFY") is False,
    )
    return HTTPClient(addr, token=token, tls=tls, use_ssl=_env_bool("CONSUL_HTTP_SSL") is True)


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
    def force_leave(self, node: str, prune: bool = False) -> None: ...
    def stats(self) -> dict[str, dict[str, str]]: ...
    def reload(self) -> None: ...
    def keyring(self, op: str, key: str | None) -> dict[str, Any]: ...
    def monitor(self, level: str, log_json: bool = False) -> Iterator[str]: ...
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

    def force_leave(self, node: str, prune: bool = False) -> None:
        params = {"prune": "1"} if prune else None  # api.Agent.ForceLeavePrune
        self.client.request("PUT", f"/v1/agent/force-leave/{node}", params)

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

    def monitor(self, level: str, log_json: bool = False) -> Iterator[str]:
        query = {"loglevel": level, **({"logjson": "true"} if log_json else {})}
        return self.client.stream("GET", "/v1/agent/monitor", query)

    def close(self) -> None:
        self.client.close()


def agent_ops(args: argparse.Namespace) -> AgentOps:
    """-http-addr picks HTTP; else -rpc-addr / $CONSUL_RPC_ADDR / $CONSUL_HTTP_ADDR / 8400."""
    if getattr(args, "http_addr", None):
        return HTTPAgentOps(http_client(args))
    token = http_client(args).token
    if getattr(args, "rpc_addr", None):
        return RPCClient(args.rpc_addr, token=token)
    rpc_env = env_addr(RPC_ENV)
    if rpc_env:
        return RPCClient(rpc_env, token=token)
    http_env = env_addr(HTTP_ENV)
    if http_env:
        return HTTPAgentOps(http_client(args))
    return RPCClient(DEFAULT_RPC_ADDR, token=token)


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
    except ConfigError as exc:  # the client could not be set up (address, TLS, token file)
        err(f"Error connecting to Senate agent: {exc}")
        return 1
    except ClientError as exc:  # a call no handler words: still one line, never a traceback
        err(f"Error: {exc}")
        return 1
    except BrokenPipeError:
        return 1
