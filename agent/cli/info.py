"""`senate info` (the agent's stats, sections as Consul's) and `senate reload`."""

from __future__ import annotations

import argparse

from agent.cli.common import Parser, add_rpc_flags, err, out, run_guarded
from agent.cli.members import connect
from agent.client import ClientError


def format_stats(stats: dict[str, dict[str, str]]) -> str:
    lines = []
    for section in sorted(stats):
        lines.append(f"{section}:")
        values = stats[section] or {}
        for key in sorted(values):
            lines.append(f"\t{key} = {values[key]}")
    return "\n".join(lines) + "\n"


def info_parser() -> Parser:
    p = Parser(
        "info",
        "senate info [options]",
        "Provides debugging information for operators.",
    )
    add_rpc_flags(p)
    return p


def _info(args: argparse.Namespace) -> int:
    ops = connect(args)
    if ops is None:
        return 1
    try:
        stats = ops.stats()
    except ClientError as exc:
        err(f"Error querying agent: {exc}")
        return 1
    finally:
        ops.close()
    out(format_stats(stats))
    return 0


def run_info(argv: list[str]) -> int:
    return run_guarded(info_parser(), argv, _info)


def reload_parser() -> Parser:
    p = Parser(
        "reload",
        "senate reload",
        "Causes the agent to reload configurations. This can be used instead\n"
        "of sending the SIGHUP signal to the agent.",
    )
    add_rpc_flags(p)
    return p


def _reload(args: argparse.Namespace) -> int:
    ops = connect(args)
    if ops is None:
        return 1
    try:
        ops.reload()
    except ClientError as exc:
        err(f"Error reloading: {exc}")
        return 1
    finally:
        ops.close()
    out("Configuration reload triggered")
    return 0


def run_reload(argv: list[str]) -> int:
    return run_guarded(reload_parser(), argv, _reload)


run = run_info
