"""`senate maint`: node and service maintenance mode through the local agent's HTTP API.

Behaves as Consul 0.7's `consul maint`: -enable / -disable (optionally with -service=<id>)
PUT /v1/agent/maintenance or /v1/agent/service/maintenance/<id>; with neither it lists what
is in maintenance, read from the `_node_maintenance` and `_service_maintenance:<id>` checks of
/v1/agent/checks. The argument checks, messages and exit codes are Consul's.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.common import (
    Parser,
    add_http_client_flags,
    err,
    go_quote,
    http_client,
    out,
    run_guarded,
)
from agent.client import ClientError

#: The check IDs the agent registers for maintenance mode (Consul's agent constants).
NODE_MAINT_CHECK_ID = "_node_maintenance"
SERVICE_MAINT_CHECK_PREFIX = "_service_maintenance:"

DESCRIPTION = """\
  Places a node or service into maintenance mode. During maintenance mode,
  the node or service will be excluded from all queries through the DNS
  or API interfaces, effectively taking it out of the pool of available
  nodes. This is done by registering an additional critical health check.

  When enabling maintenance mode for a node or service, you may optionally
  specify a reason string. This string will appear in the "Notes" field
  of the critical health check which is registered against the node or
  service. If no reason is provided, a default value will be used.

  Maintenance mode is persistent, and will be restored in the event of an
  agent restart. It is therefore required to disable maintenance mode on
  a given node or service before it will be placed back into the pool.

  By default, we operate on the node as a whole. By specifying the
  "-service" argument, this behavior can be changed to enable or disable
  only a specific service.

  If no arguments are given, the agent's maintenance status will be shown.
  This will return blank if nothing is currently under maintenance."""


def maint_parser() -> Parser:
    p = Parser("maint", "senate maint [options]", DESCRIPTION)
    p.flag("enable", action="store_true", help="Enable maintenance mode.")
    p.flag("disable", action="store_true", help="Disable maintenance mode.")
    p.flag(
        "reason",
        default="",
        metavar="string",
        help="Text string describing the maintenance reason",
    )
    p.flag(
        "service",
        default="",
        metavar="serviceID",
        help="Control maintenance mode for a specific service ID",
    )
    add_http_client_flags(p)
    return p


def check_args(enable: bool, disable: bool, reason: str, service_id: str) -> str | None:
    """The combinations Consul refuses before contacting the agent, with its messages."""
    if enable and disable:
        return "Only one of -enable or -disable may be provided"
    if not enable and reason:
        return "Reason may only be provided with -enable"
    if not enable and not disable and service_id:
        return "Service requires either -enable or -disable"
    return None


def format_maintenance(node_name: str, checks: dict[str, Any]) -> str:
    """List mode: a block per node / service in maintenance, as Consul prints them; the node
    first, then services by ID (Consul walks a Go map, so its order is random)."""
    blocks: list[tuple[int, str, str]] = []
    for check_id, check in checks.items():
        if not isinstance(check, dict):
            continue
        notes = str(check.get("Notes") or "")
        if check_id == NODE_MAINT_CHECK_ID:
            blocks.append((0, "", f"Node:\n  Name:   {node_name}\n  Reason: {notes}\n\n"))
        elif check_id.startswith(SERVICE_MAINT_CHECK_PREFIX):
            service_id = str(check.get("ServiceID") or check_id[len(SERVICE_MAINT_CHECK_PREFIX) :])
            blocks.append(
                (1, service_id, f"Service:\n  ID:     {service_id}\n  Reason: {notes}\n\n")
            )
    return "".join(text for _, _, text in sorted(blocks))


def _maint(args: argparse.Namespace) -> int:
    service_id: str = args.service
    problem = check_args(args.enable, args.disable, args.reason, service_id)
    if problem is not None:
        err(problem)
        return 1
    try:
        client = http_client(args)
    except ClientError as exc:
        err(f"Error connecting to Senate agent: {exc}")
        return 1
    try:
        try:
            self_info = client.get_json("/v1/agent/self")
        except ClientError as exc:
            err(f"Error querying Senate agent: {exc}")
            return 1
        config = self_info.get("Config") if isinstance(self_info, dict) else None
        node_name = str(config.get("NodeName", "")) if isinstance(config, dict) else ""

        if not args.enable and not args.disable:
            try:
                checks = client.get_json("/v1/agent/checks") or {}
            except ClientError as exc:
                err(f"Error getting checks: {exc}")
                return 1
            text = format_maintenance(node_name, checks if isinstance(checks, dict) else {})
            if text:
                out(text)
            return 0

        action = "enabling" if args.enable else "disabling"
        state = "enabled" if args.enable else "disabled"
        params: dict[str, Any] = {"enable": "true" if args.enable else "false"}
        if args.enable:
            params["reason"] = args.reason
        if not service_id:
            try:
                client.request("PUT", "/v1/agent/maintenance", params)
            except ClientError as exc:
                err(f"Error {action} node maintenance: {exc}")
                return 1
            out(f"Node maintenance is now {state}")
            return 0
        try:
            client.request("PUT", f"/v1/agent/service/maintenance/{service_id}", params)
        except ClientError as exc:
            err(f"Error {action} service maintenance: {exc}")
            return 1
        out(f"Service maintenance is now {state} for {go_quote(service_id)}")
        return 0
    finally:
        client.close()


def run(argv: list[str]) -> int:
    return run_guarded(maint_parser(), argv, _maint)
