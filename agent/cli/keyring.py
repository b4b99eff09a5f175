"""`senate keygen` and `senate keyring`: gossip encryption keys, output as Consul 0.7's."""

from __future__ import annotations

import argparse
import base64
import os
from typing import Any

from agent.cli.common import Parser, add_rpc_flags, err, out, run_guarded
from agent.cli.members import connect
from agent.client import ClientError


def run_keygen(argv: list[str]) -> int:
    p = Parser(
        "keygen",
        "senate keygen",
        "Generates a new encryption key that can be used to configure the agent to\n"
        "encrypt traffic. The output of this command is already in the proper format\n"
        "that the agent expects.",
    )

    def body(_args: argparse.Namespace) -> int:
        out(base64.b64encode(os.urandom(16)).decode())
        return 0

    return run_guarded(p, argv, body)


def keyring_parser() -> Parser:
    p = Parser(
        "keyring",
        "senate keyring [options]",
        "Manages encryption keys used for gossip messages. Gossip encryption is\n"
        "optional. When enabled, this command may be used to examine active encryption\n"
        "keys in the cluster, add new keys, and remove old ones. When combined, this\n"
        "functionality provides the ability to perform key rotation cluster-wide,\n"
        "without disrupting the cluster.\n\n"
        "All operations performed by this command can only be run against server nodes,\n"
        "and affect both the LAN and WAN keyrings in lock-step.",
    )
    add_rpc_flags(p)
    p.flag("install", default="", metavar="<key>", help="Install a new encryption key")
    p.flag("list", action="store_true", help="List all keys currently in use within the cluster")
    p.flag("remove", default="", metavar="<key>", help="Remove the given key from the cluster")
    p.flag("use", default="", metavar="<key>", help="Change the primary encryption key")
    return p


def _pool_name(entry: dict[str, Any]) -> str:
    return "WAN" if entry.get("Pool") == "WAN" else f"{entry.get('Datacenter', '')} (LAN)"


def handle_response(resp: dict[str, Any], quiet_success: bool = False) -> int:
    rval = 0
    for info in resp.get("Info") or []:
        if info.get("Error"):
            err("")
            err(f"{_pool_name(info)} error: {info['Error']}")
            for msg in resp.get("Messages") or []:
                if msg.get("Datacenter") == info.get("Datacenter") and msg.get("Pool") == info.get(
                    "Pool"
                ):
                    err(f"  {msg.get('Node', '')}: {msg.get('Message', '')}")
            rval = 1
    if rval == 0 and not quiet_success:
        out("==> Done!")
    return rval


def format_key_list(resp: dict[str, Any]) -> str:
    """WAN first, then each datacenter's LAN pool: `  <key> [<count>/<nodes>]`."""
    nodes = {(i.get("Datacenter"), i.get("Pool")): int(i.get("NumNodes", 0)) for i in resp["Info"]}
    pools: dict[str, dict[str, tuple[int, int]]] = {}
    for key in resp.get("Keys") or []:
        total = nodes.get((key.get("Datacenter"), key.get("Pool")), 0)
        pools.setdefault(_pool_name(key), {})[key["Key"]] = (int(key.get("Count", 0)), total)
    lines = []
    for pool in sorted(pools, key=lambda name: (name != "WAN", name)):
        lines.append("")
        lines.append(f"{pool}:")
        for key, (count, total) in sorted(pools[pool].items()):
            lines.append(f"  {key} [{count}/{total}]")
    return "\n".join(lines) + "\n" if lines else ""


def _keyring(args: argparse.Namespace) -> int:
    actions = [
        ("list", None, args.list),
        ("install", args.install, bool(args.install)),
        ("use", args.use, bool(args.use)),
        ("remove", args.remove, bool(args.remove)),
    ]
    chosen = [(op, key) for op, key, on in actions if on]
    if len(chosen) > 1:
        err("Only a single action is allowed")
        return 1
    if not chosen:
        err(keyring_parser().format_help().rstrip())
        return 1
    op, key = chosen[0]
    ops = connect(args)
    if ops is None:
        return 1
    banner = {
        "list": "Gathering installed encryption keys...",
        "install": "Installing new gossip encryption key...",
        "use": "Changing primary gossip encryption key...",
        "remove": "Removing gossip encryption key...",
    }[op]
    out(f"==> {banner}")
    try:
        resp = ops.keyring(op, key)
    except ClientError as exc:
        err(f"error: {exc}")
        return 1
    finally:
        ops.close()
    if op == "list":
        rval = handle_response(resp, quiet_success=True)
        if rval:
            return rval
        text = format_key_list(resp)
        if text:
            out(text)
        return 0
    return handle_response(resp)


def run_keyring(argv: list[str]) -> int:
    return run_guarded(keyring_parser(), argv, _keyring)


run = run_keyring
