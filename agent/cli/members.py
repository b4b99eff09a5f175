"""`senate members`, `join`, `leave`, `force-leave`: cluster membership through the agent."""

from __future__ import annotations

import argparse
import re
from typing import Any

from agent.cli.common import (
    AgentOps,
    Parser,
    add_rpc_flags,
    agent_ops,
    columnize,
    err,
    out,
    run_guarded,
)
from agent.client import ClientError
from agent.metadata import ROLE_CLIENT, ROLE_SERVER, TAG_BUILD, TAG_DC, TAG_ROLE, TAG_VSN
from agent.netaddr import join_host_port


def connect(args: argparse.Namespace) -> AgentOps | None:
    try:
        return agent_ops(args)
    except ClientError as exc:
        err(f"Error connecting to Senate agent: {exc}")
        return None


def member_addr(m: dict[str, Any]) -> str:
    return join_host_port(str(m.get("Addr", "")), int(m.get("Port", 0)))


def member_type(tags: dict[str, str]) -> str:
    return {ROLE_SERVER: "server", ROLE_CLIENT: "client"}.get(tags.get(TAG_ROLE, ""), "unknown")


def standard_rows(members: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["Node", "Address", "Status", "Type", "Build", "Protocol", "DC"]]
    for m in members:
        tags = m.get("Tags") or {}
        build = tags.get(TAG_BUILD, "")
        build = build.split(":", 1)[0] if build else "< 0.3"
        role = member_type(tags)
        protocol = tags.get(TAG_VSN, "") if role != "unknown" else ""
        dc = tags.get(TAG_DC, "") if role != "unknown" else ""
        build = build if role != "unknown" else ""
        rows.append([m["Name"], member_addr(m), str(m["Status"]), role, build, protocol, dc])
    return rows


def detailed_rows(members: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["Node", "Address", "Status", "Tags"]]
    for m in members:
        tags = m.get("Tags") or {}
        tag_text = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
        rows.append([m["Name"], member_addr(m), str(m["Status"]), tag_text])
    return rows


def members_parser() -> Parser:
    p = Parser(
        "members",
        "senate members [options]",
        "Outputs the members of a running Senate agent.",
    )
    add_rpc_flags(p)
    p.flag("detailed", action="store_true", help="Provides detailed information about nodes")
    p.flag(
        "status",
        default=".*",
        metavar="<regexp>",
        help="If provided, output is filtered to only nodes matching the regular expression for status",
    )
    p.flag("wan", action="store_true", help="List the servers of every datacenter (WAN pool)")
    return p


def _members(args: argparse.Namespace) -> int:
    try:
        status_re = re.compile(args.status)
    except re.error as exc:
        err(f"Failed to compile status regexp: {exc}")
        return 1
    ops = connect(args)
    if ops is None:
        return 1
    try:
        members = ops.members(args.wan)
    except ClientError as exc:
        err(f"Error retrieving members: {exc}")
        return 1
    finally:
        ops.close()
    members = [m for m in members if status_re.search(str(m.get("Status", "")))]
    members.sort(key=lambda m: str(m.get("Name", "")))
    if not members:
        return 2  # Consul: no member matched the filter
    rows = detailed_rows(members) if args.detailed else standard_rows(members)
    out(columnize(rows))
    return 0


def run_members(argv: list[str]) -> int:
    return run_guarded(members_parser(), argv, _members)


def join_parser() -> Parser:
    p = Parser(
        "join",
        "senate join [options] address ...",
        "Tells a running Senate agent to join the cluster by contacting the given addresses.",
    )
    add_rpc_flags(p)
    p.flag("wan", action="store_true", help="Joins a server to another server in the WAN pool")
    p.add_argument("addresses", nargs="*", help=argparse.SUPPRESS)
    return p


def _join(args: argparse.Namespace) -> int:
    if not args.addresses:
        err("At least one address to join must be specified.")
        err(join_parser().format_usage().rstrip())
        return 1
    ops = connect(args)
    if ops is None:
        return 1
    try:
        n = ops.join(list(args.addresses), args.wan)
    except ClientError as exc:
        err(f"Error joining the cluster: {exc}")
        return 1
    finally:
        ops.close()
    out(f"Successfully joined cluster by contacting {n} nodes.")
    return 0


def run_join(argv: list[str]) -> int:
    return run_guarded(join_parser(), argv, _join)


def leave_parser() -> Parser:
    p = Parser(
        "leave",
        "senate leave [options]",
        "Causes the agent to gracefully leave the Senate cluster and shutdown.",
    )
    add_rpc_flags(p)
    return p


def _leave(args: argparse.Namespace) -> int:
    ops = connect(args)
    if ops is None:
        return 1
    try:
        ops.leave()
    except ClientError as exc:
        err(f"Error leaving: {exc}")
        return 1
    finally:
        ops.close()
    out("Graceful leave complete")
    return 0


def run_leave(argv: list[str]) -> int:
    return run_guarded(leave_parser(), argv, _leave)


def force_leave_parser() -> Parser:
    p = Parser(
        "force-leave",
        "senate force-leave [options] name",
        'Forces a member of a Senate cluster to enter the "left" state. Note that if the\n'
        "member is still actually alive, it will eventually rejoin the cluster.\n"
        "With -prune the member is also removed from the list of members at once.",
    )
    add_rpc_flags(p)
    p.flag(
        "prune",
        action="store_true",
        help="Remove agent forcibly from list of members",
    )
    p.add_argument("node", nargs="*", help=argparse.SUPPRESS)
    return p


def _force_leave(args: argparse.Namespace) -> int:
    if len(args.node) != 1:
        err("A node name must be specified to force leave.")
        err(force_leave_parser().format_usage().rstrip())
        return 1
    ops = connect(args)
    if ops is None:
        return 1
    try:
        ops.force_leave(args.node[0], prune=args.prune)
    except ClientError as exc:
        err(f"Error force leaving: {exc}")
        return 1
    finally:
        ops.close()
    return 0


def run_force_leave(argv: list[str]) -> int:
    return run_guarded(force_leave_parser(), argv, _force_leave)


run = run_members
