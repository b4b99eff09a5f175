"""`senate operator autopilot get-config | set-config | state`, as Consul 1.x's."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.cli.common import (
    Parser,
    UsageError,
    add_http_flags,
    dc_params,
    err,
    http_client,
    out,
    parse_go_bool,
    run_guarded,
)
from agent.client import ClientError

AUTOPILOT_HELP = """Usage: senate operator autopilot <subcommand> [options]

  The Autopilot operator command is used to interact with Senate's Autopilot
  subsystem. The command can be used to view or modify the current configuration.

Subcommands:
    get-config    Display the current Autopilot configuration
    set-config    Modify the current Autopilot configuration
    state         Display the current Autopilot State
"""

_ORDER = (
    "CleanupDeadServers",
    "LastContactThreshold",
    "MaxTrailingLogs",
    "MinQuorum",
    "ServerStabilizationTime",
    "RedundancyZoneTag",
    "DisableUpgradeMigration",
    "UpgradeVersionTag",
)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str) and v == "":
        return '""'
    return str(v)


def format_config(conf: dict[str, Any]) -> str:
    return "\n".join(f"{k} = {_value(conf.get(k, ''))}" for k in _ORDER)


def get_config_parser() -> Parser:
    p = Parser(
        "operator autopilot get-config",
        "senate operator autopilot get-config [options]",
        "Displays the current Autopilot configuration.",
    )
    add_http_flags(p)
    return p


def _get_config(args: argparse.Namespace) -> int:
    client = http_client(args)
    try:
        conf = client.get_json("/v1/operator/autopilot/configuration", dc_params(args))
    except ClientError as exc:
        err(f"Error querying Autopilot configuration: {exc}")
        return 1
    finally:
        client.close()
    out(format_config(conf or {}))
    return 0


def set_config_parser() -> Parser:
    p = Parser(
        "operator autopilot set-config",
        "senate operator autopilot set-config [options]",
        "Modifies the current Autopilot configuration.",
    )
    add_http_flags(p)
    for name, what in (
        ("cleanup-dead-servers", "Controls whether Senate will automatically remove dead servers"),
        ("disable-upgrade-migration", "(Enterprise-only) Controls whether upgrade migrations run"),
    ):
        p.flag(name, default=None, metavar="[true|false]", help=what)
    p.flag("max-trailing-logs", default=None, help="How many log entries a server may lag")
    p.flag("min-quorum", default=None, help="Minimum number of servers to keep as voters")
    p.flag("last-contact-threshold", default=None, help="How long a server may go unheard")
    p.flag(
        "server-stabilization-time",
        default=None,
        help="How long a server must be healthy before it votes",
    )
    p.flag("redundancy-zone-tag", default=None, help="(Enterprise-only) node_meta zone tag")
    p.flag("upgrade-version-tag", default=None, help="(Enterprise-only) node_meta version tag")
    return p


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for flag, field in (
        ("cleanup_dead_servers", "CleanupDeadServers"),
        ("disable_upgrade_migration", "DisableUpgradeMigration"),
    ):
        raw = getattr(args, flag)
        if raw is not None:
            value = parse_go_bool(raw)
            if value is None:
                raise UsageError(f'invalid boolean value "{raw}" for -{flag.replace("_", "-")}')
            body[field] = value
    for flag, field in (("max_trailing_logs", "MaxTrailingLogs"), ("min_quorum", "MinQuorum")):
        raw = getattr(args, flag)
        if raw is not None:
            try:
                body[field] = int(raw, 10)
            except ValueError:
                raise UsageError(
                    f'invalid value "{raw}" for flag -{flag.replace("_", "-")}: parse error'
                ) from None
    for flag, field in (
        ("last_contact_threshold", "LastContactThreshold"),
        ("server_stabilization_time", "ServerStabilizationTime"),
        ("redundancy_zone_tag", "RedundancyZoneTag"),
        ("upgrade_version_tag", "UpgradeVersionTag"),
    ):
        raw = getattr(args, flag)
        if raw is not None:
            body[field] = raw
    return body


def _set_config(args: argparse.Namespace) -> int:
    changes = _changes(args)
    client = http_client(args)
    params = dc_params(args)
    params.pop("stale", None)
    try:
        conf = client.get_json("/v1/operator/autopilot/configuration", params)
        body = {k: v for k, v in (conf or {}).items() if k not in ("CreateIndex", "ModifyIndex")}
        body.update(changes)
        cas = {**params, "cas": int((conf or {}).get("ModifyIndex") or 0)}
        resp = client.request(
            "PUT", "/v1/operator/autopilot/configuration", cas, body=json.dumps(body).encode()
        )
        ok = resp.json()
    except ClientError as exc:
        err(f"Error setting Autopilot configuration: {exc}")
        return 1
    finally:
        client.close()
    if ok:
        out("Configuration updated!")
        return 0
    out("Configuration could not be atomically updated, please try again")
    return 1


def state_parser() -> Parser:
    p = Parser(
        "operator autopilot state",
        "senate operator autopilot state [options]",
        "Displays the current Autopilot state.",
    )
    add_http_flags(p)
    p.flag("format", default="pretty", help="Output format: pretty or json")
    return p


def format_state(state: dict[str, Any]) -> str:
    lines = [
        f"Healthy:                      {_value(state.get('Healthy'))}",
        f"Failure Tolerance:            {state.get('FailureTolerance')}",
        f"Optimistic Failure Tolerance: {state.get('OptimisticFailureTolerance')}",
        f"Leader:                       {state.get('Leader')}",
        "Voters:",
    ]
    lines += [f"   {v}" for v in state.get("Voters") or []]
    lines.append("")
    lines.append("Servers:")
    for sid, s in (state.get("Servers") or {}).items():
        lines += [
            f"   {sid}",
            f"      Name:            {s.get('Name')}",
            f"      Address:         {s.get('Address')}",
            f"      Version:         {s.get('Version')}",
            f"      Status:          {s.get('Status')}",
            f"      Node Type:       {s.get('NodeType')}",
            f"      Node Status:     {s.get('NodeStatus')}",
            f"      Healthy:         {_value(s.get('Healthy'))}",
            f"      Last Contact:    {s.get('LastContact')}",
            f"      Last Term:       {s.get('LastTerm')}",
            f"      Last Index:      {s.get('LastIndex')}",
        ]
    return "\n".join(lines)


def _state(args: argparse.Namespace) -> int:
    if args.format not in ("pretty", "json"):
        err(f"Invalid formatter: {args.format}")
        return 1
    client = http_client(args)
    try:
        state = client.get_json("/v1/operator/autopilot/state", dc_params(args))
    except ClientError as exc:
        err(f"Error getting Autopilot State: {exc}")
        return 1
    finally:
        client.close()
    out(json.dumps(state, indent=4) if args.format == "json" else format_state(state or {}))
    return 0


def run_autopilot(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(AUTOPILOT_HELP)
        return 0 if argv else 1
    commands = {
        "get-config": (get_config_parser, _get_config),
        "set-config": (set_config_parser, _set_config),
        "state": (state_parser, _state),
    }
    if argv[0] in commands:
        make, action = commands[argv[0]]
        return run_guarded(make(), argv[1:], action)
    err(f"senate operator autopilot: unknown subcommand {argv[0]!r}")
    sys.stderr.write(AUTOPILOT_HELP)
    return 1
