"""`senate rtt`: estimated round trip time between two nodes from their network coordinates."""

from __future__ import annotations

import argparse
import math
from typing import Any

from agent.cli.common import Parser, add_http_flags, err, http_client, out, run_guarded
from agent.client import ClientError


def distance_seconds(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Vivaldi distance as serf's Coordinate.DistanceTo (truncated to whole nanoseconds)."""
    va, vb = a.get("Vec") or [], b.get("Vec") or []
    raw = math.sqrt(sum((x - y) ** 2 for x, y in zip(va, vb, strict=False)))
    dist = raw + float(a.get("Height", 0)) + float(b.get("Height", 0))
    adjusted = dist + float(a.get("Adjustment", 0)) + float(b.get("Adjustment", 0))
    if adjusted > 0:
        dist = adjusted
    return int(dist * 1e9) / 1e9


def format_rtt(node1: str, node2: str, seconds: float, source: str) -> str:
    return (
        f"Estimated {node1} <-> {node2} rtt: {seconds * 1000.0:.3f} ms (using {source} coordinates)"
    )


def rtt_parser() -> Parser:
    p = Parser(
        "rtt",
        "senate rtt [options] node1 [node2]",
        "Estimates the round trip time between two nodes using Senate's network\n"
        "coordinate model of the cluster. If only one node is given, the other is the\n"
        "agent's own node. With -wan, nodes are named <node>.<datacenter>.",
    )
    add_http_flags(p)
    p.flag("wan", action="store_true", help="Use WAN coordinates instead of LAN coordinates")
    p.add_argument("nodes", nargs="*", help=argparse.SUPPRESS)
    return p


def _rtt(args: argparse.Namespace) -> int:
    nodes = list(args.nodes)
    if not 1 <= len(nodes) <= 2:
        err("One or two node names must be specified")
        err("")
        err(rtt_parser().format_help().rstrip())
        return 1
    client = http_client(args)
    coord1: dict[str, Any] | None = None
    coord2: dict[str, Any] | None = None
    try:
        if len(nodes) < 2:
            try:
                config = client.get_json("/v1/agent/self").get("Config") or {}
            except ClientError as exc:
                err(f"Unable to look up agent info: {exc}")
                return 1
            name = config.get("NodeName", "")
            nodes.append(f"{name}.{config.get('Datacenter', '')}" if args.wan else name)
        if args.wan:
            source = "WAN"
            parts = [n.split(".") for n in nodes]
            if any(len(p) != 2 for p in parts):
                err("Node names must be specified as <node name>.<datacenter> with -wan")
                return 1
            try:
                dcs = client.get_json("/v1/coordinate/datacenters") or []
            except ClientError as exc:
                err(f"Error getting coordinates: {exc}")
                return 1
            for dc in dcs:
                for entry in dc.get("Coordinates") or []:
                    node = str(entry.get("Node", ""))
                    dc_name = str(dc.get("Datacenter", ""))
                    # WAN member names are "node.dc"; accept the bare node name too
                    for i, (want_node, want_dc) in enumerate(parts):
                        if dc_name == want_dc and node in (want_node, f"{want_node}.{want_dc}"):
                            if i == 0:
                                coord1 = entry.get("Coord")
                            else:
                                coord2 = entry.get("Coord")
        else:
            source = "LAN"
            try:
                entries = client.get_json("/v1/coordinate/nodes", {"dc": args.datacenter}) or []
            except ClientError as exc:
                err(f"Error getting coordinates: {exc}")
                return 1
            for entry in entries:
                if entry.get("Node") == nodes[0]:
                    coord1 = entry.get("Coord")
                if entry.get("Node") == nodes[1]:
                    coord2 = entry.get("Coord")
    finally:
        client.close()
    if coord1 is None:
        err(f'Could not find a coordinate for node "{nodes[0]}"')
        return 1
    if coord2 is None:
        err(f'Could not find a coordinate for node "{nodes[1]}"')
        return 1
    out(format_rtt(nodes[0], nodes[1], distance_seconds(coord1, coord2), source))
    return 0


def run(argv: list[str]) -> int:
    return run_guarded(rtt_parser(), argv, _rtt)
