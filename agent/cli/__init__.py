"""`senate`: the command line, dispatching `senate <command> [args]` as Consul's CLI does.

Each command lives in its own module under `agent/cli/` and exposes `run(argv) -> int`;
modules are imported lazily so `senate version` stays fast and a broken command cannot
break the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from agent.version import PROTOCOL_DEFAULT, PROTOCOL_MAX, PROTOCOL_MIN, VERSION

#: command -> (module, synopsis). Only commands that are built are listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("agent.cli.agent_cmd", "Runs a Senate agent"),
    "validate": ("agent.cli.validate", "Validate config files/directories"),
    # Consul 0.7's name for validate
    "configtest": ("agent.cli.configtest", "Validate config file"),
    "version": ("agent.cli.version", "Prints the Senate version"),
}


def _optional_commands() -> dict[str, tuple[str, str]]:
    """Commands whose modules exist in this checkout (built incrementally)."""
    extra = {
        "acl": ("agent.cli.acl", "Interact with Senate's ACLs"),
        "catalog": ("agent.cli.catalog", "Interact with the catalog"),
        "debug": ("agent.cli.debug", "Records a debugging archive for operators"),
        "event": ("agent.cli.event", "Fire a new event"),
        "exec": ("agent.cli.exec_cmd", "Executes a command on Senate nodes"),
        "force-leave": (
            "agent.cli.members",
            'Forces a member of the cluster to enter the "left" state',
        ),
        "info": ("agent.cli.info", "Provides debugging information for operators"),
        "join": ("agent.cli.members", "Tell Senate agent to join cluster"),
        "keygen": ("agent.cli.keyring", "Generates a new encryption key"),
        "keyring": ("agent.cli.keyring", "Manages gossip layer encryption keys"),
        "kv": ("agent.cli.kv", "Interact with the key-value store"),
        "leave": ("agent.cli.members", "Gracefully leaves the Senate cluster and shuts down"),
        "lock": ("agent.cli.lock", "Execute a command holding a lock"),
        "maint": ("agent.cli.maint", "Controls node or service maintenance mode"),
        "members": ("agent.cli.members", "Lists the members of a Senate cluster"),
        "monitor": ("agent.cli.monitor", "Stream logs from a Senate agent"),
        "operator": ("agent.cli.operator", "Provides cluster-level tools for Senate operators"),
        "reload": ("agent.cli.info", "Triggers the agent to reload configuration files"),
        "rtt": ("agent.cli.rtt", "Estimates network round trip time between nodes"),
        "services": ("agent.cli.services", "Interact with services"),
        "tls": ("agent.cli.tls", "Builtin helpers for creating CAs and certificates"),
        "watch": ("agent.cli.watch", "Watch for changes in Senate"),
        "snapshot": (
            "agent.cli.snapshot",
            "Saves, restores and inspects snapshots of Senate server state",
        ),
    }
    out: dict[str, tuple[str, str]] = {}
    for name, (mod, syn) in extra.items():
        if importlib.util.find_spec(mod) is not None:
            out[name] = (mod, syn)
    return out


def all_commands() -> dict[str, tuple[str, str]]:
    cmds = dict(COMMANDS)
    cmds.update(_optional_commands())
    return dict(sorted(cmds.items()))


def usage() -> str:
    cmds = all_commands()
    width = max(len(n) for n in cmds)
    lines = ["usage: senate [--version] [--help] <command> [<args>]", "", "Available commands are:"]
    for name, (_, syn) in cmds.items():
        lines.append(f"    {name.ljust(width)}    {syn}")
    return "\n".join(lines) + "\n"


def version_text() -> str:
    return (
        f"Senate v{VERSION}\n"
        f"Protocol {PROTOCOL_DEFAULT} spoken by default, understands {PROTOCOL_MIN} to "
        f"{PROTOCOL_MAX} (agent will automatically use protocol >{PROTOCOL_DEFAULT} when "
        "speaking to compatible agents)\n"
    )


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help", "help"):
        sys.stderr.write(usage())
        return 0 if argv else 1
    if argv[0] in ("-v", "-version", "--version"):
        sys.stdout.write(version_text())
        return 0
    name, rest = argv[0], argv[1:]
    cmds = all_commands()
    if name not in cmds:
        sys.stderr.write(f"senate: unknown command {name!r}\n\n{usage()}")
        return 127
    try:
        module = importlib.import_module(cmds[name][0])
    except ModuleNotFoundError as exc:
        if exc.name != cmds[name][0]:
            raise
        sys.stderr.write(f"senate: command {name!r} is not available in this build\n")
        return 1
    run = getattr(module, "run_" + name.replace("-", "_"), None) or module.run
    return int(run(rest))


def main() -> None:
    try:
        code = dispatch(sys.argv[1:])
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # the reader went away (`senate members | head -1`): exit quietly, as a Go CLI does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    sys.exit(code)
