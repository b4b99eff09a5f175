"""`senate watch`: run a handler (or print JSON) whenever a view of the datacenter changes.

A watch is a loop of blocking queries (`?index=` the last X-Consul-Index): when the index
moves and the result differs, the handler runs with the result as JSON on stdin and
CONSUL_INDEX in its environment, as Consul's watch plans do (agent/watches.py). Without a
handler the first result is printed and the command exits.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.cli.common import Parser, add_http_flags, err, http_client, out, run_guarded
from agent.client import ClientError
from agent.watches import WATCH_TYPES, WatchError, WatchSpec, run_handler, watch_loop


def spec_from_args(args: argparse.Namespace) -> WatchSpec:
    return WatchSpec(
        type=args.type,
        key=args.key,
        prefix=args.prefix,
        service=args.service,
        tag=(args.tag,) if args.tag else (),
        passingonly=args.passingonly,
        state=args.state,
        name=args.name,
        datacenter=args.datacenter or "",
        stale=bool(args.stale),
        script=" ".join(args.handler),
    )


def watch_parser() -> Parser:
    p = Parser(
        "watch",
        "senate watch [options] [child...]",
        "Watches for changes in a given data view from Senate. If a child process\n"
        "is specified, it will be invoked with the latest results on changes. Otherwise,\n"
        "the latest values are dumped to stdout and the watch terminates.",
    )
    add_http_flags(p)
    p.flag("type", default="", help="Type of watch: " + ", ".join(WATCH_TYPES))
    p.flag("key", default="", help="Key to watch (type key)")
    p.flag("prefix", default="", help="Key prefix to watch (type keyprefix)")
    p.flag("service", default="", help="Service to watch (types service, checks)")
    p.flag("tag", default="", help="Service tag to filter on (type service)")
    p.flag("passingonly", action="store_true", help="Only passing instances (type service)")
    p.flag("state", default="", help="Check state to filter on (type checks)")
    p.flag("name", default="", help="Event name to watch (type event)")
    p.add_argument("handler", nargs="*", help=argparse.SUPPRESS)
    return p


def _watch(args: argparse.Namespace) -> int:
    if not args.type:
        err("Watch type must be specified")
        err("")
        err(watch_parser().format_help().rstrip())
        return 1
    spec = spec_from_args(args)
    try:
        spec.validate()
    except WatchError as exc:
        err(f"Failed to setup watch: {exc}")
        return 1
    client = http_client(args)
    client.timeout = 360.0  # a blocking query may hold for BLOCK_WAIT plus jitter
    try:
        client.get_json("/v1/agent/self")
    except ClientError as exc:
        err(f"Error querying Senate agent: {exc}")
        client.close()
        return 1
    status = {"exit": 0}

    def print_once(_index: int, data: Any) -> bool:
        out(json.dumps(data, indent=4))
        return False

    def invoke(index: int, data: Any) -> bool:
        problem = run_handler(spec, index, data)
        if problem is not None:
            err(f"Error executing handler: {problem}")
            status["exit"] = 1
            return False
        return True

    try:
        watch_loop(spec, client, invoke if spec.has_handler else print_once)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
    return status["exit"]


def run(argv: list[str]) -> int:
    return run_guarded(watch_parser(), argv, _watch)
