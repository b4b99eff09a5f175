"""Health.*: checks and the services they guard (Consul's health_endpoint.go).

Health.ChecksInState   ChecksInStateRequest {Datacenter, State ("any"|"passing"|"warning"|
                       "critical"), +QO} -> IndexedHealthChecks {HealthChecks: [HealthCheck], +QM}
Health.NodeChecks      NodeSpecificRequest {Node, +QO} -> IndexedHealthChecks
Health.ServiceChecks   ServiceSpecificRequest {ServiceName, +QO} -> IndexedHealthChecks
Health.ServiceNodes    ServiceSpecificRequest {ServiceName, ServiceTag, TagFilter,
                       Passing: bool (senate: only nodes whose checks all pass), +QO}
                       -> IndexedCheckServiceNodes {Nodes: [CheckServiceNode], +QueryMeta}
"""

from __future__ import annotations

from typing import Any

from agent.errors import RPCError
from agent.server.endpoints import acl_filter
from agent.server.endpoints.base import Context, Kind, Methods, as_bool, get_str
from agent.server.endpoints.catalog import meta_filters, service_args
from agent.state.store import HEALTH_ANY, HEALTH_STATES


async def checks_in_state(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    state = get_str(args, "State")
    if state not in (HEALTH_ANY, "unknown", *HEALTH_STATES):
        raise RPCError(f"Invalid check state '{state}'")

    meta = meta_filters(args)

    return await ctx.query(
        args,
        ["checks"],
        "HealthChecks",
        lambda: ctx.state.checks_in_state(state, meta),
        acl=acl_filter.checks,
    )


async def node_checks(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    node = get_str(args, "Node")
    if not node:
        raise RPCError("Must provide node")

    return await ctx.query(
        args,
        ["checks"],
        "HealthChecks",
        lambda: ctx.state.node_checks(node),
        acl=acl_filter.checks,
    )


async def service_checks(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    name = get_str(args, "ServiceName")
    if not name:
        raise RPCError("Must provide service name")

    meta = meta_filters(args)

    return await ctx.query(
        args,
        ["checks"],
        "HealthChecks",
        lambda: ctx.state.service_checks(name, meta),
        acl=acl_filter.checks,
    )


async def service_nodes(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    name, tags = service_args(args)
    passing = as_bool(args.get("Passing"))
    meta = meta_filters(args)

    return await ctx.query(
        args,
        ["nodes", "services", "checks"],
        "Nodes",
        lambda: ctx.state.check_service_nodes(name, tags, passing, meta),
        acl=acl_filter.check_service_nodes,
    )


METHODS: Methods = {
    "Health.ChecksInState": (checks_in_state, Kind.READ),
    "Health.NodeChecks": (node_checks, Kind.READ),
    "Health.ServiceChecks": (service_checks, Kind.READ),
    "Health.ServiceNodes": (service_nodes, Kind.READ),
}
