"""Catalog.*: nodes, services and checks as registered (Consul's catalog_endpoint.go).

Catalog.Register   RegisterRequest {Datacenter, ID, Node, Address, TaggedAddresses, NodeMeta,
                   Service: NodeService | None, Check: HealthCheck | None,
                   Checks: [HealthCheck] | None, SkipNodeUpdate: bool} -> None
Catalog.Deregister DeregisterRequest {Datacenter, Node, ServiceID, CheckID} -> None
                   (ServiceID: that service and its checks; CheckID: that check; neither: the
                   node with its services, checks, sessions and coordinate)
Catalog.ListDatacenters  {} -> [str]   (ours first, then the others sorted)
Catalog.ListNodes      DCSpecificRequest {Datacenter, NodeMetaFilters: {str: str}, +QO}
                       -> IndexedNodes {Nodes: [Node], +QueryMeta}  (sorted by Node)
Catalog.ListServices   DCSpecificRequest {+QO} -> IndexedServices
                       {Services: {name: [tag]}, +QueryMeta}
Catalog.ServiceNodes   ServiceSpecificRequest {Datacenter, ServiceName, ServiceTag,
                       TagFilter: bool, +QO} -> IndexedServiceNodes {ServiceNodes:
                       [ServiceNode], +QueryMeta}
Catalog.NodeServices   NodeSpecificRequest {Datacenter, Node, +QO} -> IndexedNodeServices
                       {NodeServices: {Node: Node, Services: {id: NodeService}} | None, +QM}
"""

from __future__ import annotations

from typing import Any

from agent.errors import RPCError
from agent.filter import FilterError, parse_filter
from agent.server.endpoints import acl_filter
from agent.server.endpoints.base import (
    Context,
    Kind,
    Methods,
    access,
    as_bool,
    checked,
    get_str,
)
from agent.state.commands import MessageType
from agent.state.store import HEALTH_STATES
from agent.structs import DEREGISTER_REQUEST, REGISTER_REQUEST

#: Request fields that are query options, not part of a registration.
_QUERY_FIELDS = frozenset(
    {"MinQueryIndex", "MaxQueryTime", "AllowStale", "RequireConsistent", "Token", "Datacenter"}
)


async def register(ctx: Context, args: dict[str, Any]) -> None:
    checked(args, REGISTER_REQUEST)
    node = get_str(args, "Node")
    address = get_str(args, "Address")
    if not node or not address:
        raise RPCError("Must provide node and address")
    req = {k: v for k, v in args.items() if k not in _QUERY_FIELDS}
    service = req.get("Service")
    if service is not None:
        if not isinstance(service, dict):
            raise RPCError("Service must be a map")
        service = dict(service)
        if not service.get("ID") and service.get("Service"):
            service["ID"] = service["Service"]
        if service.get("ID") and not service.get("Service"):
            raise RPCError("Must provide service name with ID")
        req["Service"] = service
    checks = list(req.get("Checks") or [])
    if isinstance(req.get("Check"), dict):
        checks.append(req["Check"])
    req["Check"] = None
    fixed = []
    for check in checks:
        if not isinstance(check, dict):
            raise RPCError("Checks must be maps")
        check = dict(check)
        if not check.get("CheckID") and check.get("Name"):
            check["CheckID"] = check["Name"]
        if not check.get("Node"):
            check["Node"] = node
        status = check.get("Status") or ""
        if status and status not in (*HEALTH_STATES, "unknown"):
            raise RPCError(f"Invalid check status '{status}'")
        fixed.append(check)
    req["Checks"] = fixed
    vet_register(ctx, req)
    await ctx.raft_apply(MessageType.REGISTER, req)


def _node_changes(ctx: Context, req: dict[str, Any]) -> bool:
    """Whether a registration writes the node itself (then it needs node:write)."""
    if req.get("SkipNodeUpdate"):
        return False
    _idx, existing = ctx.state.node_services(str(req["Node"]))
    if existing is None:
        return True
    node = existing["Node"]
    if node.get("Address") != req.get("Address"):
        return True
    for field, mine in (("ID", "ID"), ("TaggedAddresses", "TaggedAddresses"), ("Meta", "NodeMeta")):
        if req.get(mine) and req.get(mine) != node.get(field):
            return True
    return False


def _service_name(ctx: Context, node: str, service_id: str) -> str | None:
    _idx, existing = ctx.state.node_services(node)
    if existing is None:
        return None
    svc = (existing.get("Services") or {}).get(service_id)
    return str(svc["Service"]) if svc else None


def vet_register(ctx: Context, req: dict[str, Any]) -> None:
    """vetRegisterWithACL: node:write when the node changes, service:write for the service
    (and for the one it replaces), and for each check the write of what it belongs to."""
    acc = access()
    if acc.disabled:
        return
    node = str(req["Node"])
    if _node_changes(ctx, req):
        acc.need("node", "write", node)
    service = req.get("Service")
    if service:
        acc.need("service", "write", str(service.get("Service") or ""))
        old = _service_name(ctx, node, str(service.get("ID") or ""))
        if old is not None and old != service.get("Service"):
            acc.need("service", "write", old)
    for check in req.get("Checks") or []:
        sid = str(check.get("ServiceID") or "")
        if not sid:
            acc.need("node", "write", node)
            continue
        if service and service.get("ID") == sid:
            continue
        name = _service_name(ctx, node, sid)
        if name is None:
            raise RPCError(f"Unknown service ID {sid!r} for check ID {check.get('CheckID')!r}")
        acc.need("service", "write", name)


async def deregister(ctx: Context, args: dict[str, Any]) -> None:
    checked(args, DEREGISTER_REQUEST)
    if not get_str(args, "Node"):
        raise RPCError("Must provide node")
    req = {
        "Node": args["Node"],
        "ServiceID": get_str(args, "ServiceID"),
        "CheckID": get_str(args, "CheckID"),
    }
    vet_deregister(ctx, req)
    await ctx.raft_apply(MessageType.DEREGISTER, req)


def vet_deregister(ctx: Context, req: dict[str, Any]) -> None:
    """vetDeregisterWithACL: the service's write for a service or its check, the node's
    for a node-level check or the whole node."""
    acc = access()
    if acc.disabled:
        return
    node = str(req["Node"])
    if req["ServiceID"]:
        name = _service_name(ctx, node, req["ServiceID"])
        if name is not None:
            acc.need("service", "write", name)
        return
    if req["CheckID"]:
        _idx, checks = ctx.state.node_checks(node)
        for check in checks:
            if check.get("CheckID") == req["CheckID"] and check.get("ServiceName"):
                acc.need("service", "write", str(check["ServiceName"]))
                return
        acc.need("node", "write", node)
        return
    acc.need("node", "write", node)


async def list_datacenters(ctx: Context, args: dict[str, Any]) -> list[str]:
    others = sorted(set(ctx.known_datacenters()) - {ctx.datacenter})
    return [ctx.datacenter, *others]


def meta_filters(args: dict[str, Any]) -> dict[str, str] | None:
    """NodeMetaFilters of a request (`?node-meta=key:value`, repeatable): a node must carry
    every pair."""
    meta = args.get("NodeMetaFilters") or None
    if meta is None:
        return None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise RPCError("NodeMetaFilters must be a map of strings")
    return {str(k): v for k, v in meta.items()}


async def list_nodes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    meta = meta_filters(args)

    return await ctx.query(
        args, ["nodes"], "Nodes", lambda: ctx.state.nodes(meta), acl=acl_filter.nodes
    )


async def list_services(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    meta = meta_filters(args)
    keep = None
    if args.get("Filter"):
        try:
            keep = parse_filter(get_str(args, "Filter")).match
        except FilterError as exc:
            raise RPCError(str(exc)) from None

    def run() -> tuple[int, dict[str, list[str]]]:
        try:
            return ctx.state.services(meta, keep)
        except FilterError as exc:
            raise RPCError(str(exc)) from None

    return await ctx.query(args, ["services"], "Services", run, acl=acl_filter.services)


def service_args(args: dict[str, Any]) -> tuple[str, list[str] | None]:
    """The service name and the tags every instance must carry: ServiceTags (Consul >= 1.2,
    `?tag` repeated) or the single ServiceTag of older clients, when TagFilter is set."""
    name = get_str(args, "ServiceName")
    if not name:
        raise RPCError("Must provide service name")
    if not as_bool(args.get("TagFilter")):
        return name, None
    tags = args.get("ServiceTags")
    if isinstance(tags, list) and tags:
        return name, [str(t) for t in tags]
    return name, [get_str(args, "ServiceTag")]


async def service_nodes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    name, tags = service_args(args)
    meta = meta_filters(args)

    return await ctx.query(
        args,
        ["nodes", "services"],
        "ServiceNodes",
        lambda: ctx.state.service_nodes(name, tags, meta),
        acl=acl_filter.service_nodes,
    )


async def node_services(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    node = get_str(args, "Node")
    if not node:
        raise RPCError("Must provide node")

    return await ctx.query(
        args,
        ["nodes", "services"],
        "NodeServices",
        lambda: ctx.state.node_services(node),
        acl=acl_filter.node_services,
    )


METHODS: Methods = {
    "Catalog.Register": (register, Kind.WRITE),
    "Catalog.Deregister": (deregister, Kind.WRITE),
    "Catalog.ListDatacenters": (list_datacenters, Kind.LOCAL),
    "Catalog.ListNodes": (list_nodes, Kind.READ),
    "Catalog.ListServices": (list_services, Kind.READ),
    "Catalog.ServiceNodes": (service_nodes, Kind.READ),
    "Catalog.NodeServices": (node_services, Kind.READ),
}
UNCHECKED = frozenset({"Catalog.ListDatacenters"})
