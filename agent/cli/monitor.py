"""`senate monitor`: stream the agent's log lines at -log-level until interrupted."""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import Parser, add_rpc_flags, err, run_guarded
from agent.cli.members import connect
from agent.client import ClientError


def monitor_parser() -> Parser:
    p = Parser(
        "monitor",
        "senate monitor [options]",
        "Shows recent log messages of a Senate agent, and attaches to the agent,\n"
        "outputting log messages as they occur in real time. The monitor lets you\n"
        "listen for log levels that may be filtered out of the Senate agent. For\n"
        "example your agent may only be logging at INFO level, but with the monitor\n"
        "you can see the DEBUG level logs.",
    )
    add_rpc_flags(p)
    p.flag("log-level", default="INFO", help="Log level of the agent (default INFO)")
    p.flag("log-json", action="store_true", help="Output logs in JSON format.")
    return p


def _monitor(args: argparse.Namespace) -> int:
    ops = connect(args)
    if ops is None:
        return 1
    try:
        lines = ops.monitor(args.log_level.upper(), bool(args.log_json))
        for line in lines:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except ClientError as exc:
        if "closed" in str(exc):
            err("Remote side ended the monitor! This usually means that the")
            err("remote side has exited or crashed.")
        else:
            err(f"Error starting monitor: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        ops.close()
    err("Remote side ended the monitor! This usually means that the")
    err("remote side has exited or crashed.")
    return 1


def run(argv: list[str]) -> int:
    return run_guarded(monitor_parser(), argv, _monitor)
