"""Coordinate.*: network coordinates of the nodes (LAN) and servers (WAN) (Consul's
coordinate_endpoint.go).

Coordinate.Update      CoordinateUpdateRequest {Datacenter, Node, Coord: Coordinate} -> None
                       (recorded; written with the next batch, see CoordinateBatcher)
Coordinate.ListDatacenters {} -> [{Datacenter, Coordinates: [{Node, Coord}]}]  (WAN)
Coordinate.ListNodes   DCSpecificRequest {+QO} -> IndexedCoordinates
                       {Coordinates: [{Node, Coord}], +QueryMeta}
"""

from __future__ import annotations

import math
from typing import Any

from agent.errors import RPCError
from agent.server.endpoints import acl_filter
from agent.server.endpoints.base import Context, Kind, Methods, access, get_str

#: Vivaldi's dimensionality, as every agent's (agent/gossip/coordinate.py, serf's default).
COORDINATE_DIMENSIONALITY = 8


async def update(ctx: Context, args: dict[str, Any]) -> None:
    node = get_str(args, "Node")
    coord = args.get("Coord")
    if not node:
        raise RPCError("Must provide node")
    access().need("node", "write", node)
    if not isinstance(coord, dict) or not isinstance(coord.get("Vec"), list):
        raise RPCError("rejected bad coordinate: missing Vec")
    if len(coord["Vec"]) != COORDINATE_DIMENSIONALITY:
        # Consul's IsCompatibleWith: distances need vectors of the servers' own size
        raise RPCError(f"rejected bad coordinate: {coord!r}")
    numbers = [*coord["Vec"], *(coord.get(f, 0.0) for f in ("Error", "Adjustment", "Height"))]
    if not all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in numbers
    ):
        raise RPCError(f"rejected bad coordinate: {coord!r}")
    coord = {
        "Vec": [float(x) for x in coord["Vec"]],
        "Error": float(coord.get("Error", 0.0)),
        "Adjustment": float(coord.get("Adjustment", 0.0)),
        "Height": float(coord.get("Height", 0.0)),
    }
    ctx.coordinates.update(node, coord)  # written with the next batch (CoordinateBatcher)


async def list_datacenters(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    if ctx.wan_coordinates is not None:
        return ctx.wan_coordinates()
    return []


async def list_nodes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    return await ctx.query(
        args,
        ["coordinates"],
        "Coordinates",
        lambda: ctx.state.coordinates(),
        acl=acl_filter.nodes,
    )


METHODS: Methods = {
    "Coordinate.Update": (update, Kind.WRITE),
    "Coordinate.ListDatacenters": (list_datacenters, Kind.LOCAL),
    "Coordinate.ListNodes": (list_nodes, Kind.READ),
}
UNCHECKED = frozenset({"Coordinate.ListDatacenters"})
