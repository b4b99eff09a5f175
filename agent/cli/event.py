"""`senate event`: fire a user event through the HTTP API; prints `Event ID: <id>`."""

from __future__ import annotations

import argparse

from agent.cli.common import Parser, add_http_flags, err, http_client, out, run_guarded
from agent.client import ClientError
from agent.filter.tree import compile_re2


def event_parser() -> Parser:
    p = Parser(
        "event",
        "senate event [options] [payload]",
        "Dispatches a custom user event across a datacenter. An event must provide\n"
        "a name, but a payload is optional. Events support filtering using\n"
        "regular expressions on node name, service, and service tags.",
    )
    add_http_flags(p)
    p.flag("name", default="", help="Name of the event")
    p.flag("node", default="", help="Regular expression to filter on node names")
    p.flag("service", default="", help="Regular expression to filter on service instances")
    p.flag("tag", default="", help="Regular expression to filter on service tags (needs -service)")
    p.add_argument("payload", nargs="*", help=argparse.SUPPRESS)
    return p


def _event(args: argparse.Namespace) -> int:
    if not args.name:
        err("Event name must be specified")
        err("")
        err(event_parser().format_help().rstrip())
        return 1
    for what, pattern in (("node", args.node), ("service", args.service), ("tag", args.tag)):
        if pattern:
            try:
                compile_re2(pattern)
            except ValueError as exc:
                err(f"Failed to compile {what} filter regexp: {exc}")
                return 1
    if args.tag and not args.service:
        err("Cannot provide tag filter without service filter.")
        return 1
    if len(args.payload) > 1:
        err("Too many command line arguments.")
        err("")
        err(event_parser().format_help().rstrip())
        return 1
    payload = args.payload[0].encode() if args.payload else b""
    client = http_client(args)
    try:
        try:
            client.get_json("/v1/agent/self")
        except ClientError as exc:
            err(f"Error querying Senate agent: {exc}")
            return 1
        params = {
            "dc": args.datacenter,
            "node": args.node or None,
            "service": args.service or None,
            "tag": args.tag or None,
        }
        try:
            event = client.request(
                "PUT", f"/v1/event/fire/{args.name}", params, body=payload
            ).json()
        except ClientError as exc:
            err(f"Error firing event: {exc}")
            return 1
    finally:
        client.close()
    out(f"Event ID: {event.get('ID', '')}")
    return 0


def run(argv: list[str]) -> int:
    return run_guarded(event_parser(), argv, _event)
