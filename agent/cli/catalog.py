"""`senate catalog datacenters|nodes|services`: the catalog through the HTTP API, as Consul
1.x's `consul catalog` prints it.

`nodes` lists /v1/catalog/nodes (or, with -service, the nodes of /v1/catalog/service/:name)
in columnize columns `Node  ID  Address  DC` (the ID cut at its first "-"; -detailed prints
it whole and adds TaggedAddresses and Meta as sorted `k=v` lists). `services` prints the
sorted names of /v1/catalog/services (or of /v1/catalog/node/:node with -node); -tags adds
each one's sorted tags in a tabwriter column. -near, -node-meta (`?node-meta=key:value`,
repeatable) and -filter are sent as Consul's api sends them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli.common import (
    GoMapAction,
    Parser,
    add_http_flags,
    columnize,
    dc_params,
    err,
    http_client,
    load_data_source,
    map_to_kv,
    out,
    run_guarded,
    tabwriter,
)
from agent.client import ClientError

CATALOG_HELP = """Usage: senate catalog <subcommand> [options] [args]

  This command has subcommands for interacting with Senate's catalog. The
  catalog should not be confused with the agent, although the APIs and
  responses may be similar.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  List all datacenters:

      $ senate catalog datacenters

  List all nodes:

      $ senate catalog nodes

  List all services:

      $ senate catalog services

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    datacenters    Lists all known datacenters
    nodes          Lists all nodes in the given datacenter
    services       Lists all registered services in a datacenter
"""

NO_NODES = "No nodes match the given query - try expanding your search."
NO_SERVICES = "No services match the given query - try expanding your search."


def _no_args(args: argparse.Namespace) -> bool:
    if args.extra:
        err(f"Too many arguments (expected 0, got {len(args.extra)})")
        return False
    return True


def query_params(
    args: argparse.Namespace, near: str = "", filter_expr: str = ""
) -> list[tuple[str, Any]]:
    """api.QueryOptions as setQueryOptions writes them: dc, stale, near, filter, and one
    `node-meta=key:value` per pair (in key order; Go walks its map at random)."""
    params: list[tuple[str, Any]] = list(dc_params(args).items())
    if near:
        params.append(("near", near))
    if filter_expr:
        params.append(("filter", filter_expr))
    for key, value in sorted((getattr(args, "node_meta", None) or {}).items()):
        params.append(("node-meta", f"{key}:{value}"))
    return params


# ---- datacenters --------------------------------------------------------------------------


def datacenters_parser() -> Parser:
    p = Parser(
        "catalog datacenters",
        "senate catalog datacenters [options]",
        "  Retrieves the list of all known datacenters. This datacenters are sorted in\n"
        "  ascending order based on the estimated median round trip time from the servers\n"
        "  in this datacenter to the servers in the other datacenters.\n\n"
        "  To retrieve the list of datacenters:\n\n"
        "      $ senate catalog datacenters",
    )
    add_http_flags(p)
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return p


def _datacenters(args: argparse.Namespace) -> int:
    if not _no_args(args):
        return 1
    client = http_client(args)
    try:
        dcs = client.get_json("/v1/catalog/datacenters") or []
    except ClientError as exc:
        # Consul prints this and still exits 0; a failed listing is a failure here
        err(f"Error listing datacenters: {exc}")
        return 1
    finally:
        client.close()
    for dc in dcs:
        out(str(dc))
    return 0


# ---- nodes --------------------------------------------------------------------------------


def nodes_parser() -> Parser:
    p = Parser(
        "catalog nodes",
        "senate catalog nodes [options]",
        "  Retrieves the list nodes registered in a given datacenter. By default, the\n"
        "  datacenter of the local agent is queried.\n\n"
        "  To retrieve the list of nodes:\n\n"
        "      $ senate catalog nodes\n\n"
        "  To print detailed information including full node IDs, tagged addresses, and\n"
        "  metadata information:\n\n"
        "      $ senate catalog nodes -detailed\n\n"
        "  To list nodes which are running a particular service:\n\n"
        "      $ senate catalog nodes -service=web\n\n"
        "  To filter by node metadata:\n\n"
        '      $ senate catalog nodes -node-meta="foo=bar"\n\n'
        "  To sort nodes by estimated round-trip time from node-web:\n\n"
        "      $ senate catalog nodes -near=node-web",
    )
    add_http_flags(p)
    p.flag(
        "detailed",
        action="store_true",
        help="Output detailed information about the nodes including their addresses and metadata.",
    )
    p.flag("filter", default="", metavar="string", help="Filter to use with the request")
    p.flag(
        "near",
        default="",
        metavar="string",
        help="Node name to sort the node list in ascending order based on estimated "
        'round-trip time from that node. Passing "_agent" will use this agent\'s node for '
        "sorting.",
    )
    p.flag(
        "node-meta",
        action=GoMapAction,
        default=None,
        metavar="key=value",
        help="Metadata to filter nodes with the given key=value pairs. This flag may be "
        "specified multiple times to filter on multiple sources of metadata.",
    )
    p.flag(
        "service",
        default="",
        metavar="id or name",
        help="Service id or name to filter nodes. Only nodes which are providing the given "
        "service will be returned.",
    )
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return p


def nodes_header(detailed: bool) -> list[str]:
    """catalog.NodesHeader."""
    head = ["Node", "ID", "Address", "DC"]
    return [*head, "TaggedAddresses", "Meta"] if detailed else head


def node_row(node: dict[str, Any], detailed: bool) -> list[str]:
    """catalog.NodeRow: the ID is cut at its first "-" unless detailed."""
    node_id = str(node.get("ID") or "")
    name = str(node.get("Node") or "")
    address = str(node.get("Address") or "")
    dc = str(node.get("Datacenter") or "")
    if detailed:
        tagged = map_to_kv(node.get("TaggedAddresses"))
        return [name, node_id, address, dc, tagged, map_to_kv(node.get("Meta"))]
    idx = node_id.find("-")
    if idx > 0:
        node_id = node_id[:idx]
    return [name, node_id, address, dc]


def format_nodes(nodes: list[dict[str, Any]], detailed: bool) -> str:
    """columnize.Format of the header and rows (cells trimmed, as columnize trims them)."""
    rows = [nodes_header(detailed)] + [node_row(n, detailed) for n in nodes]
    return columnize([[cell.strip() for cell in row] for row in rows])


def service_node_to_node(entry: dict[str, Any]) -> dict[str, Any]:
    """A /v1/catalog/service/:name entry as the api.Node Consul's command builds from it."""
    return {
        "ID": entry.get("ID", ""),
        "Node": entry.get("Node", ""),
        "Address": entry.get("Address", ""),
        "Datacenter": entry.get("Datacenter", ""),
        "TaggedAddresses": entry.get("TaggedAddresses") or {},
        "Meta": entry.get("NodeMeta") or {},
        "CreateIndex": entry.get("CreateIndex", 0),
        "ModifyIndex": entry.get("ModifyIndex", 0),
    }


def _nodes(args: argparse.Namespace) -> int:
    if not _no_args(args):
        return 1
    client = http_client(args)
    filter_expr = args.filter
    if filter_expr:
        try:
            filter_expr = load_data_source(filter_expr)
        except ValueError as exc:
            err(f"Could not process filter argument: {exc}")
            client.close()
            return 1
    params = query_params(args, near=args.near, filter_expr=filter_expr)
    try:
        if args.service:
            try:
                entries = client.get_json(f"/v1/catalog/service/{args.service}", params) or []
            except ClientError as exc:
                err(f"Error listing nodes for service: {exc}")
                return 1
            nodes = [service_node_to_node(e) for e in entries]
        else:
            try:
                nodes = client.get_json("/v1/catalog/nodes", params) or []
            except ClientError as exc:
                err(f"Error listing nodes: {exc}")
                return 1
    finally:
        client.close()
    if not nodes:
        err(NO_NODES)
        return 0
    out(format_nodes(nodes, args.detailed))
    return 0


# ---- services -----------------------------------------------------------------------------


def services_parser() -> Parser:
    p = Parser(
        "catalog services",
        "senate catalog services [options]",
        "  Retrieves the list services registered in a given datacenter. By default, the\n"
        "  datacenter of the local agent is queried.\n\n"
        "  To retrieve the list of services:\n\n"
        "      $ senate catalog services\n\n"
        "  To include the services' tags in the output:\n\n"
        "      $ senate catalog services -tags\n\n"
        "  To list services which run on a particular node:\n\n"
        "      $ senate catalog services -node=web\n\n"
        "  To filter services on node metadata:\n\n"
        '      $ senate catalog services -node-meta="foo=bar"',
    )
    add_http_flags(p)
    p.flag(
        "node",
        default="",
        metavar="id or name",
        help="Node id or name for which to list services.",
    )
    p.flag(
        "node-meta",
        action=GoMapAction,
        default=None,
        metavar="key=value",
        help="Metadata to filter nodes with the given key=value pairs. If specified, only "
        "services running on nodes matching the given metadata will be returned. This flag "
        "may be specified multiple times to filter on multiple sources of metadata.",
    )
    p.flag(
        "tags",
        action="store_true",
        help="Display each service's tags as a comma-separated list beside each service entry.",
    )
    p.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    return p


def format_services(services: dict[str, list[str]], tags: bool) -> str:
    """One name a line, sorted; with tags, Go's tabwriter (padding 6) of name and sorted tags,
    trimmed as Consul trims it."""
    order = sorted(services)
    if not tags:
        return "\n".join(order)
    return tabwriter([(name, ",".join(sorted(services[name]))) for name in order]).strip()


def _services(args: argparse.Namespace) -> int:
    if not _no_args(args):
        return 1
    client = http_client(args)
    params = query_params(args)
    services: dict[str, list[str]] = {}
    try:
        if args.node:
            try:
                node = client.get_json(f"/v1/catalog/node/{args.node}", params)
            except ClientError as exc:
                err(f"Error listing services for node: {exc}")
                return 1
            listed = (node or {}).get("Services") or {}
            for svc in listed.values() if isinstance(listed, dict) else listed:
                name = str(svc.get("Service", ""))
                services.setdefault(name, []).extend(svc.get("Tags") or [])
        else:
            try:
                services = dict(client.get_json("/v1/catalog/services", params) or {})
            except ClientError as exc:
                err(f"Error listing services: {exc}")
                return 1
    finally:
        client.close()
    if not services:
        err(NO_SERVICES)
        return 0
    out(format_services({k: list(v or []) for k, v in services.items()}, args.tags))
    return 0


SUBCOMMANDS = {
    "datacenters": (datacenters_parser, _datacenters),
    "nodes": (nodes_parser, _nodes),
    "services": (services_parser, _services),
}


def run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(CATALOG_HELP)
        return 0 if argv else 1
    sub = SUBCOMMANDS.get(argv[0])
    if sub is None:
        err(f"senate catalog: unknown subcommand {argv[0]!r}")
        sys.stderr.write(CATALOG_HELP)
        return 1
    make_parser, body = sub
    return run_guarded(make_parser(), argv[1:], body)
