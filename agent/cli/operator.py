"""`senate operator raft list-peers|remove-peer` (and 0.7.2's `-list-peers`/`-remove-peer`)."""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import (
    Parser,
    add_http_flags,
    columnize,
    dc_params,
    err,
    http_client,
    out,
    run_guarded,
)
from agent.client import ClientError

OPERATOR_HELP = """Usage: senate operator <subcommand> [options]

  Provides cluster-level tools for Senate operators, such as interacting with
  the Raft subsystem.

Subcommands:
    autopilot    Provides tools for modifying Autopilot configuration
    raft         Provides cluster-level tools for Senate operators
"""

RAFT_HELP = """Usage: senate operator raft <subcommand> [options]

  The Raft operator command is used to interact with Senate's Raft subsystem.

Subcommands:
    list-peers     Display the current Raft peer configuration
    remove-peer    Remove a Senate server from the Raft configuration
    transfer-leader  Hand leadership to another server (-id=, or the best one)
"""


def list_peers_parser() -> Parser:
    p = Parser(
        "operator raft list-peers",
        "senate operator raft list-peers [options]",
        "Displays the current Raft peer configuration.",
    )
    add_http_flags(p)
    p.flag("list-peers", action="store_true", help=argparse.SUPPRESS)
    return p


PEERS_HEADER = [
    *("Node", "ID", "Address", "State", "Voter", "RaftProtocol"),
    *("Commit Index", "Trails Leader By"),
]


def format_peers(
    servers: list[dict[str, object]], health: list[dict[str, object]] | None = None
) -> str:
    """Consul 1.x's table: the raft configuration, with each server's last log index from
    autopilot's health and how far it trails the leader's ("_" for the leader; a server
    autopilot does not report has "_" as its commit index and nothing after it). The
    RaftProtocol column is "<=1" for a server that names none."""
    by_id = {str(h.get("ID", "")): h for h in health or []}
    leader_index = 0
    for s in servers:
        if s.get("Leader") and str(s.get("ID", "")) in by_id:
            leader_index = _int(by_id[str(s.get("ID", ""))].get("LastIndex"))
    rows = [PEERS_HEADER]
    for s in servers:
        row = [
            str(s.get("Node", "")),
            str(s.get("ID", "")),
            str(s.get("Address", "")),
            "leader" if s.get("Leader") else "follower",
            "true" if s.get("Voter") else "false",
            str(s.get("ProtocolVersion") or "<=1"),
        ]
        h = by_id.get(str(s.get("ID", "")))
        if h is None:
            rows.append([*row, "_"])
            continue
        index = _int(h.get("LastIndex"))
        trails = max(0, leader_index - index)
        if s.get("Leader"):
            behind = "_"
        else:
            behind = f"{trails} Commit" if trails <= 1 else f"{trails} Commits"
        rows.append([*row, str(index), behind])
    return columnize(rows)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list_peers(args: argparse.Namespace) -> int:
    client = http_client(args)
    params = dc_params(args)
    try:
        try:
            reply = client.get_json("/v1/operator/raft/configuration", params)
        except ClientError as exc:
            err(f"Error getting peers: Failed to retrieve raft configuration: {exc}")
            return 1
        try:
            # 429: autopilot answers, and the datacenter is not healthy
            health = client.request(
                "GET", "/v1/operator/autopilot/health", params, ok=(200, 429)
            ).json()
        except ClientError as exc:
            err(f"Error getting peers: Failed to retrieve autopilot health: {exc}")
            return 1
    finally:
        client.close()
    out(format_peers(reply.get("Servers") or [], (health or {}).get("Servers") or []))
    return 0


def remove_peer_parser() -> Parser:
    p = Parser(
        "operator raft remove-peer",
        "senate operator raft remove-peer [-address=IP:port | -id=SERVER_ID]",
        "Removes the Senate server with the given -address or -id (its node ID, as\n"
        "list-peers shows it) from the Raft configuration.\n"
        "Use it to clean up a failed server that can never come back.",
    )
    add_http_flags(p)
    p.flag("address", default="", help="The address (IP:port) of the server to remove")
    p.flag("id", default="", help="The ID of the server to remove")
    p.flag("remove-peer", action="store_true", help=argparse.SUPPRESS)
    return p


def _remove_peer(args: argparse.Namespace) -> int:
    if not args.address and not args.id:
        err("Error removing peer: an address or id is required for the peer to remove")
        return 1
    if args.address and args.id:
        err("Error removing peer: cannot give both an address and id")
        return 1
    client = http_client(args)
    params = dc_params(args)
    params.pop("stale", None)
    if args.address:
        params["address"] = args.address
    else:
        params["id"] = args.id
    try:
        client.request("DELETE", "/v1/operator/raft/peer", params)
    except ClientError as exc:
        err(f"Error removing peer: {exc}")
        return 1
    finally:
        client.close()
    if args.address:
        out(f'Removed peer with address "{args.address}"')
    else:
        out(f'Removed peer with id "{args.id}"')
    return 0


def transfer_leader_parser() -> Parser:
    p = Parser(
        "operator raft transfer-leader",
        "senate operator raft transfer-leader [-id=SERVER_ID]",
        "Makes the current leader hand leadership to the server with -id (a raft server ID,\n"
        "as list-peers shows), or to the most up-to-date other voter. Used before restarting\n"
        "the leader, so that writes see one clean hand-off instead of an election.",
    )
    add_http_flags(p)
    p.flag("id", default="", help="The raft ID of the server to transfer leadership to")
    return p


def _transfer_leader(args: argparse.Namespace) -> int:
    client = http_client(args)
    params = dc_params(args)
    params.pop("stale", None)
    if args.id:
        params["id"] = args.id
    try:
        client.request("POST", "/v1/operator/raft/transfer-leader", params)
    except ClientError as exc:
        err(f"Error transferring leadership: {exc}")
        return 1
    finally:
        client.close()
    out("Success! Leadership transferred" + (f" to {args.id}" if args.id else ""))
    return 0


def run_raft(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(RAFT_HELP)
        return 0 if argv else 1
    if argv[0] == "list-peers":
        return run_guarded(list_peers_parser(), argv[1:], _list_peers)
    if argv[0] == "remove-peer":
        return run_guarded(remove_peer_parser(), argv[1:], _remove_peer)
    if argv[0] == "transfer-leader":
        return run_guarded(transfer_leader_parser(), argv[1:], _transfer_leader)
    # Consul 0.7.2's spelling: `operator raft -list-peers` / `-remove-peer -address=...`
    if any(a.split("=")[0].lstrip("-") == "list-peers" for a in argv):
        return run_guarded(list_peers_parser(), argv, _list_peers)
    if any(a.split("=")[0].lstrip("-") == "remove-peer" for a in argv):
        return run_guarded(remove_peer_parser(), argv, _remove_peer)
    err(f"senate operator raft: unknown subcommand {argv[0]!r}")
    sys.stderr.write(RAFT_HELP)
    return 1


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(OPERATOR_HELP)
        return 0 if argv else 1
    if argv[0] == "raft":
        return run_raft(argv[1:])
    if argv[0] == "autopilot":
        from agent.cli.autopilot import run_autopilot

        return run_autopilot(argv[1:])
    err(f"senate operator: unknown subcommand {argv[0]!r}")
    sys.stderr.write(OPERATOR_HELP)
    return 1
