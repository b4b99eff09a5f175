"""What the `senate acl ...` commands share: the HTTP calls (every one with -datacenter as
Consul's api adds `?dc=`), the unique-prefix lookups of command/acl/acl_helpers.go, the
identity flags, Consul's data sources (`@file`, `-`), and running a command with Consul's
error lines and exit codes. The output formats are agent/cli/acl_format.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from agent.cli.acl_format import FORMATS, PRETTY
from agent.cli.common import (
    Parser,
    add_http_flags,
    dc_params,
    err,
    go_quote,
    http_client,
    run_guarded,
)
from agent.client import APIError, ClientError, HTTPClient, Response

ANONYMOUS_TOKEN_ID = "00000000-0000-0000-0000-000000000002"
GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"


class CommandError(Exception):
    """A failure the command reports as one line on stderr, exit 1."""


# ------------------------------------------------------------------------------- flags


def add_common(p: Parser, *, meta: bool = True, fmt: bool = True, what: str = "token") -> None:
    """HTTPFlags.ClientFlags + ServerFlags, and the -meta / -format every ACL command has."""
    add_http_flags(p)
    if meta:
        p.flag(
            "meta",
            action="store_true",
            help=f"Indicates that {what} metadata such as the content hash and raft indices "
            "should be shown for each entry",
        )
    if fmt:
        p.flag(
            "format",
            default=PRETTY,
            metavar="string",
            help="Output format {" + "|".join(FORMATS) + "}",
        )
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def repeated(p: Parser, name: str, help: str, metavar: str = "value") -> None:
    """flags.AppendSliceValue: a flag that may be given many times, each value appended."""
    p.flag(name, action="append", default=None, metavar=metavar, help=help)


def check_format(args: argparse.Namespace) -> None:
    fmt = getattr(args, "format", PRETTY)
    if fmt not in FORMATS:
        raise CommandError(f"Unknown format: {fmt}")


def info(text: str) -> None:
    """cli.Ui.Info: the text and a newline (Consul prints nothing for an empty result)."""
    if text:
        sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    err(text)


def parse_service_identities(values: list[str] | None) -> list[dict[str, Any]]:
    """acl.ExtractServiceIdentities: NAME or NAME:DC1,DC2."""
    out: list[dict[str, Any]] = []
    for raw in values or []:
        parts = raw.split(":")
        if len(parts) == 2:
            out.append({"ServiceName": parts[0], "Datacenters": parts[1].split(",")})
        elif len(parts) == 1:
            out.append({"ServiceName": parts[0]})
        else:
            raise CommandError(f"Malformed -service-identity argument: {go_quote(raw)}")
    return out


def parse_node_identities(values: list[str] | None) -> list[dict[str, Any]]:
    """acl.ExtractNodeIdentities: NAME:DC."""
    out: list[dict[str, Any]] = []
    for raw in values or []:
        parts = raw.split(":")
        if len(parts) != 2:
            raise CommandError(f"Malformed -node-identity argument: {go_quote(raw)}")
        out.append({"NodeName": parts[0], "Datacenter": parts[1]})
    return out


def merge_service_identities(
    current: list[dict[str, Any]] | None, given: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The identities with the given ones added; one for a service already there replaces it."""
    merged = list(current or [])
    for si in given:
        names = [x.get("ServiceName") for x in merged]
        if si["ServiceName"] in names:
            merged[names.index(si["ServiceName"])] = si
        else:
            merged.append(si)
    return merged


def merge_node_identities(
    current: list[dict[str, Any]] | None, given: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The identities with the given ones added, each (node, datacenter) once."""
    merged = list(current or [])
    for ni in given:
        if not any(
            x.get("NodeName") == ni["NodeName"] and x.get("Datacenter") == ni["Datacenter"]
            for x in merged
        ):
            merged.append(ni)
    return merged


def _os_error(path: str, exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).lower()
    verb = "read" if isinstance(exc, IsADirectoryError) else "open"
    return f"{verb} {path}: {reason}"


def _from_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"Failed to read file: {_os_error(path, exc)}") from None


def _from_stdin() -> str:
    try:
        return sys.stdin.read()
    except OSError as exc:
        raise CommandError(f"Failed to read stdin: {exc}") from None


def load_data_source(data: str) -> str:
    """helpers.LoadDataSource: "" is "", `@path` the file, `-` stdin, anything else itself."""
    if not data:
        return ""
    if data.startswith("@"):
        return _from_file(data[1:])
    if data == "-":
        return _from_stdin()
    return data


def load_data_source_no_raw(data: str) -> str:
    """helpers.LoadDataSourceNoRaw: `-` is stdin, anything else a file path."""
    if not data:
        raise CommandError("Failed to load data: must specify a file path or '-' for stdin")
    return _from_stdin() if data == "-" else _from_file(data)


# ---------------------------------------------------------------------------- the calls


class ACLClient:
    """The calls of api.ACL() the commands make, each with ?dc= when -datacenter is given."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.http: HTTPClient = http_client(args)
        self.params = {k: v for k, v in dc_params(args).items() if k == "dc"}

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, ok: tuple[int, ...] = (200,)) -> Response:
        return self.http.request("GET", path, dict(self.params), ok=ok)

    def get_json(self, path: str) -> Any:
        return self.get(path).json()

    def put(self, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        return self.http.request("PUT", path, dict(self.params), body=data).json()

    def delete(self, path: str) -> Any:
        return self.http.request("DELETE", path, dict(self.params)).json()

    def read_or_none(self, path: str) -> Any:
        """requireNotFoundOrOK: a 404 is no object, not an error."""
        resp = self.get(path, ok=(200, 404))
        return resp.json() if resp.status == 200 else None


def _unique_prefix(entries: list[dict[str, Any]], key: str, partial: str, what: str) -> str:
    found = ""
    for entry in entries:
        value = str(entry.get(key) or "")
        if value.startswith(partial):
            if found:
                raise CommandError(f"Partial {what} ID is not unique")
            found = value
    if not found:
        raise CommandError(f"No such {what} ID with prefix: {partial}")
    return found


def token_accessor_from_partial(api: ACLClient, partial: str) -> str:
    """GetTokenAccessorIDFromPartial: "anonymous", a whole UUID, or a unique prefix."""
    if partial == "anonymous":
        return ANONYMOUS_TOKEN_ID
    if len(partial) == 36:
        return partial
    return _unique_prefix(api.get_json("/v1/acl/tokens") or [], "AccessorID", partial, "token")


def policy_id_from_partial(api: ACLClient, partial: str) -> str:
    """GetPolicyIDFromPartial: "global-management", a whole UUID, or a unique prefix."""
    if partial == "global-management":
        return GLOBAL_MANAGEMENT_ID
    if len(partial) == 36:
        return partial
    return _unique_prefix(api.get_json("/v1/acl/policies") or [], "ID", partial, "policy")


def role_id_from_partial(api: ACLClient, partial: str) -> str:
    if len(partial) == 36:
        return partial
    return _unique_prefix(api.get_json("/v1/acl/roles") or [], "ID", partial, "role")


def policy_by_name(api: ACLClient, name: str) -> dict[str, Any] | None:
    """GetPolicyByName (PolicyReadByName: a 404 is no policy)."""
    if not name:
        raise CommandError("No name specified")
    try:
        return api.read_or_none(f"/v1/acl/policy/name/{name}")  # type: ignore[no-any-return]
    except APIError as exc:
        raise CommandError(f"Failed to find policy with name {name}: {exc}") from None


def policy_id_by_name(api: ACLClient, name: str) -> str:
    policy = policy_by_name(api, name)
    if policy is None:
        raise CommandError(f"No such policy with name {name}")
    return str(policy.get("ID") or "")


def role_id_by_name(api: ACLClient, name: str) -> str:
    if not name:
        raise CommandError("No name specified")
    for role in api.get_json("/v1/acl/roles") or []:
        if role.get("Name") == name:
            return str(role.get("ID") or "")
    raise CommandError(f"No such role with name {name}")


# ------------------------------------------------------------------------------ running


@contextmanager
def failing(prefix: str) -> Iterator[None]:
    """Any error of the block as `<prefix>: <error>`, as Consul's commands word them."""
    try:
        yield
    except (CommandError, ClientError) as exc:
        raise CommandError(f"{prefix}: {exc}") from None


def run_command(parser: Parser, argv: list[str], body: Callable[[argparse.Namespace], int]) -> int:
    """run_guarded, with a CommandError printed as its one line (exit 1)."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return body(args)
        except CommandError as exc:
            err(str(exc))
            return 1

    return run_guarded(parser, argv, guarded)


def run_group(argv: list[str], help_text: str, prog: str, commands: dict[str, Any]) -> int:
    """A command with subcommands: no subcommand prints its help (exit 1, as Consul's
    RunResultHelp), -h prints it (exit 0), an unknown one is an error."""
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(help_text)
        return 0 if argv else 1
    sub = commands.get(argv[0])
    if sub is None:
        err(f"senate {prog}: unknown subcommand {argv[0]!r}")
        sys.stderr.write(help_text)
        return 1
    if callable(sub):
        return int(sub(argv[1:]))
    make_parser, body = sub
    return run_command(make_parser(), argv[1:], body)
