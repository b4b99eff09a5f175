"""`senate services register|deregister`: the local agent's services, as Consul 1.x's
`consul services` registers them.

`register` takes a service from flags (-name, -id, -address, -port, -tag, -meta) or the
`service {}` / `services [...]` definitions of HCL or JSON config files (or directories of
them), which flags other than -name complete as Consul's CombineArgs does, and PUTs each one
to /v1/agent/service/register in api.AgentServiceRegistration form; it prints
`Registered service: <name>`. `deregister` takes -id or such files and PUTs
/v1/agent/service/deregister/<id> (the ID, else the name): `Deregistered service: <id>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from agent.cli.common import (
    GoMapAction,
    Parser,
    add_http_client_flags,
    err,
    go_quote,
    http_client,
    out,
    run_guarded,
)
from agent.client import ClientError

SERVICES_HELP = """Usage: senate services <subcommand> [options] [args]

  This command has subcommands for interacting with services. The subcommands
  default to working with services registered with the local agent. Please see
  the "senate catalog" command for interacting with the entire catalog.

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    deregister    Deregister services with the local agent
    register      Register services with the local agent
"""


class DefinitionError(Exception):
    """A service file cannot be read or holds a bad definition; printed as `Error: <text>`."""


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


#: config (snake_case) or API spellings, compared without case and underscores -> the JSON
#: field of api.AgentServiceRegistration
SERVICE_FIELDS = {
    "kind": "Kind",
    "id": "ID",
    "name": "Name",
    "tags": "Tags",
    "port": "Port",
    "address": "Address",
    "socketpath": "SocketPath",
    "taggedaddresses": "TaggedAddresses",
    "enabletagoverride": "EnableTagOverride",
    "meta": "Meta",
    "weights": "Weights",
    "check": "Check",
    "checks": "Checks",
    "proxy": "Proxy",
    "connect": "Connect",
    "namespace": "Namespace",
    "partition": "Partition",
    "locality": "Locality",
}

#: likewise for api.AgentServiceCheck
CHECK_FIELDS = {
    "id": "CheckID",
    "checkid": "CheckID",
    "name": "Name",
    "args": "Args",
    "scriptargs": "Args",
    "script": "Script",
    "dockercontainerid": "DockerContainerID",
    "shell": "Shell",
    "interval": "Interval",
    "timeout": "Timeout",
    "ttl": "TTL",
    "http": "HTTP",
    "header": "Header",
    "method": "Method",
    "body": "Body",
    "tcp": "TCP",
    "udp": "UDP",
    "status": "Status",
    "notes": "Notes",
    "tlsservername": "TLSServerName",
    "tlsskipverify": "TLSSkipVerify",
    "grpc": "GRPC",
    "grpcusetls": "GRPCUseTLS",
    "h2ping": "H2PING",
    "h2pingusetls": "H2PingUseTLS",
    "aliasnode": "AliasNode",
    "aliasservice": "AliasService",
    "successbeforepassing": "SuccessBeforePassing",
    "failuresbeforewarning": "FailuresBeforeWarning",
    "failuresbeforecritical": "FailuresBeforeCritical",
    "deregistercriticalserviceafter": "DeregisterCriticalServiceAfter",
    "outputmaxsize": "OutputMaxSize",
    "serviceid": "ServiceID",
    "osservice": "OSService",
}

#: what a service definition may hold that the registration API has no field for
_DROPPED = {"token"}


def _camel(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in key.replace("-", "_").split("_"))


def api_check(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where}: expected a check object, got {json.dumps(raw)}")
    return {CHECK_FIELDS.get(_norm(str(k)), _camel(str(k))): v for k, v in raw.items()}


def api_service(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A config file's service definition -> the JSON of api.AgentServiceRegistration (what
    Consul's serviceToAgentService makes of it): keys in API spelling, the check(s) too, the
    tagged addresses as {Address, Port}; map keys (Meta, Header) untouched."""
    svc: dict[str, Any] = {}
    for key, value in raw.items():
        norm = _norm(str(key))
        if norm in _DROPPED:
            continue
        field = SERVICE_FIELDS.get(norm, _camel(str(key)))
        if field == "Check" and value is not None:
            value = api_check(value, f"{where}: check")
        elif field == "Checks" and value is not None:
            if not isinstance(value, list):
                raise DefinitionError(f"{where}: checks: expected a list of check objects")
            value = [api_check(c, f"{where}: checks") for c in value]
        elif field == "TaggedAddresses" and isinstance(value, dict):
            value = {
                name: {_camel(str(k)): v for k, v in addr.items()}
                if isinstance(addr, dict)
                else addr
                for name, addr in value.items()
            }
        elif field == "Weights" and isinstance(value, dict):
            value = {_camel(str(k)): v for k, v in value.items()}
        svc[field] = value
    return svc


def services_in(doc: Any, source: str) -> list[dict[str, Any]]:
    """The `services` list and `service` block(s) of one parsed config document."""
    if not isinstance(doc, dict):
        raise DefinitionError(f"{source}: expected a config object at the top level")
    found: list[dict[str, Any]] = []
    for key in ("services", "service"):
        value = doc.get(key)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                raise DefinitionError(f"{source}: {key}: expected a service object")
            found.append(api_service(item, f"{source}: {key}"))
    return found


def _config_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.suffix in (".json", ".hcl") and f.is_file())
    return [p]


def services_from_files(paths: list[str]) -> list[dict[str, Any]]:
    """ServicesFromFiles: every service defined in the files (and directories) given, in
    order; files that are neither .json nor .hcl are skipped with a warning, as Consul's
    config builder skips them."""
    from agent.config.sources import parse_text
    from agent.errors import ConfigError

    found: list[dict[str, Any]] = []
    for path in paths:
        if not os.path.exists(path):
            raise DefinitionError(
                f"config: Open failed on {path}. open {path}: no such file or directory"
            )
        for file in _config_files(path):
            fmt = file.suffix.lstrip(".")
            if fmt not in ("json", "hcl"):
                err(f"skipping file {file}, extension must be .hcl or .json")
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DefinitionError(f"config: Read failed on {file}. {exc}") from None
            try:
                doc = parse_text(text, fmt, str(file))
            except ConfigError as exc:
                raise DefinitionError(str(exc)) from None
            found.extend(services_in(doc, str(file)))
    return found


def combine_args(svc: dict[str, Any], flags: dict[str, Any]) -> None:
    """CombineArgs: a flag fills what the file leaves empty; -meta adds to (and overrides)
    the file's meta, -tag appends to its tags."""
    for field in ("ID", "Name", "Address", "Port", "Kind"):
        if flags.get(field) and not svc.get(field):
            svc[field] = flags[field]
    svc["Meta"] = {**(svc.get("Meta") or {}), **(flags.get("Meta") or {})}
    svc["Tags"] = [*(svc.get("Tags") or []), *(flags.get("Tags") or [])]


# ---- register -----------------------------------------------------------------------------


def register_parser() -> Parser:
    p = Parser(
        "services register",
        "senate services register [options] [FILE...]",
        "  Register one or more services using the local agent API. Services can\n"
        "  be registered from standard Senate configuration files (HCL or JSON) or\n"
        "  using flags. The service is registered and the command returns. The caller\n"
        '  must remember to call "senate services deregister" or a similar API to\n'
        "  deregister the service when complete.\n\n"
        "      $ senate services register web.json\n\n"
        "  Additional flags and more advanced use cases are detailed below.",
    )
    add_http_client_flags(p)
    p.flag(
        "address",
        default="",
        metavar="string",
        help="Address of the service to register for arg-based registration.",
    )
    p.flag(
        "id",
        default="",
        metavar="string",
        help="ID of the service to register for arg-based registration. If this isn't set, "
        "it will default to the -name value.",
    )
    p.flag("kind", default="", metavar="string", help="The services 'kind'")
    p.flag(
        "meta",
        action=GoMapAction,
        default=None,
        metavar="key=value",
        help="Metadata to set on the service, formatted as key=value. This flag may be "
        "specified multiple times to set multiple meta fields.",
    )
    p.flag(
        "name",
        default="",
        metavar="string",
        help="Name of the service to register for arg-based registration.",
    )
    p.flag(
        "port",
        type=_port,
        default=0,
        metavar="int",
        help="Port of the service to register for arg-based registration.",
    )
    p.flag(
        "tag",
        action="append",
        default=None,
        metavar="value",
        help="Tag to add to the service. This flag can be specified multiple times to set "
        "multiple tags.",
    )
    p.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    return p


def _port(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'invalid value "{text}" for flag -port: parse error'
        ) from None


def flag_service(args: argparse.Namespace) -> dict[str, Any]:
    """The registration the flags describe, empty fields left out (Go's omitempty)."""
    svc: dict[str, Any] = {
        "Kind": args.kind,
        "ID": args.id,
        "Name": args.name,
        "Address": args.address,
        "Port": args.port,
        "Tags": list(args.tag or []),
        "Meta": dict(args.meta or {}),
    }
    return {k: v for k, v in svc.items() if v}


def _register(args: argparse.Namespace) -> int:
    if not args.files and not args.name:
        err("Service registration requires at least one argument or flags.")
        return 1
    if args.files and args.name:
        err("Service registration requires arguments or -id, not both.")
        return 1
    flags = flag_service(args)
    services: list[dict[str, Any]] = []
    if args.files:
        try:
            services = services_from_files(list(args.files))
        except DefinitionError as exc:
            err(f"Error: {exc}")
            return 1
        for svc in services:
            combine_args(svc, flags)
    if not services:
        services = [flags]
    client = http_client(args)
    try:
        for svc in services:
            name = str(svc.get("Name") or "")
            body = json.dumps(svc).encode()
            try:
                client.request("PUT", "/v1/agent/service/register", body=body)
            except ClientError as exc:
                err(f"Error registering service {go_quote(name)}: {exc}")
                return 1
            out(f"Registered service: {name}")
    finally:
        client.close()
    return 0


# ---- deregister ---------------------------------------------------------------------------


def deregister_parser() -> Parser:
    p = Parser(
        "services deregister",
        "senate services deregister [options] [FILE...]",
        "  Deregister one or more services that were previously registered with\n"
        "  the local agent.\n\n"
        "      $ senate services deregister web.json db.json\n\n"
        "  The -id flag may be used to deregister a single service by ID:\n\n"
        "      $ senate services deregister -id=web\n\n"
        "  Services are deregistered from the local agent catalog. This command must\n"
        "  be run against the same agent where the service was registered.",
    )
    add_http_client_flags(p)
    p.flag(
        "id",
        default="",
        metavar="string",
        help="ID to delete. This must not be set if arguments are given.",
    )
    p.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    return p


def _deregister(args: argparse.Namespace) -> int:
    if not args.files and not args.id:
        err("Service deregistration requires at least one argument or -id.")
        return 1
    if args.files and args.id:
        err("Service deregistration requires arguments or -id, not both.")
        return 1
    services: list[dict[str, Any]] = [{"ID": args.id}]
    if args.files:
        try:
            services = services_from_files(list(args.files))
        except DefinitionError as exc:
            err(f"Error: {exc}")
            return 1
    client = http_client(args)
    try:
        for svc in services:
            sid = str(svc.get("ID") or svc.get("Name") or "")
            if not sid:
                continue
            try:
                client.request("PUT", f"/v1/agent/service/deregister/{sid}")
            except ClientError as exc:
                # Consul's wording, "registering" and the name included
                err(f"Error registering service {go_quote(str(svc.get('Name') or ''))}: {exc}")
                return 1
            out(f"Deregistered service: {sid}")
    finally:
        client.close()
    return 0


SUBCOMMANDS = {
    "register": (register_parser, _register),
    "deregister": (deregister_parser, _deregister),
}


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(SERVICES_HELP)
        return 0 if argv else 1
    sub = SUBCOMMANDS.get(argv[0])
    if sub is None:
        err(f"senate services: unknown subcommand {argv[0]!r}")
        sys.stderr.write(SERVICES_HELP)
        return 1
    make_parser, body = sub
    return run_guarded(make_parser(), argv[1:], body)
