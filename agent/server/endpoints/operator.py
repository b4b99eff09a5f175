"""Operator.Raft*: the raft configuration, seen and changed by an operator (Consul's
operator_raft_endpoint.go).

Operator.RaftGetConfiguration DCSpecificRequest {+QO} -> RaftConfigurationResponse
                       {Servers: [{ID, Node, Address, Leader: bool, Voter: bool}], Index}
Operator.RaftRemovePeerByAddress RaftPeerByAddressRequest {Datacenter, Address} -> None
                       (unknown address -> 'address "x" was not found in the Raft configuration')
Operator.Usage         DCSpecificRequest {+QO} -> {Usage: {dc: counts}, +QueryMeta}
Operator.RaftTransferLeader {Datacenter, ID: optional server ID} -> {Success: bool}
                       (the leader hands leadership to ID, or to the most caught-up voter,
                       with TimeoutNow; as Consul 1.15's /v1/operator/raft/transfer-leader)
"""

from __future__ import annotations

import logging
from typing import Any

from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods, access, as_bool, get_str

operator_log = logging.getLogger("consul.operator")


async def raft_get_configuration(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    access().need("operator", "read")
    if as_bool(args.get("RequireConsistent")):
        await ctx.verify_leader()
    leader = ctx.raft.leader()
    leader_addr = leader.address if leader is not None else None
    servers = []
    for s in ctx.raft.configuration():
        name = ctx.server_name(s.address) if ctx.server_name else None
        servers.append(
            {
                "ID": s.id,
                "Node": name or "(unknown)",
                "Address": s.address,
                "Leader": s.address == leader_addr,
                "Voter": s.suffrage == "Voter",
            }
        )
    index = int(getattr(ctx.raft, "commit_index", 0) or 0)
    return {"Servers": servers, "Index": index}


async def raft_remove_peer_by_address(ctx: Context, args: dict[str, Any]) -> None:
    access().need("operator", "write")
    address = get_str(args, "Address")
    for s in ctx.raft.configuration():
        if s.address == address:
            try:
                await ctx.raft.remove_server(s.id)
            except Exception as exc:
                raise RPCError(str(exc) or type(exc).__name__) from exc
            operator_log.warning("Removed Raft peer %s", address)
            return
    raise RPCError(f'address "{address}" was not found in the Raft configuration')


async def raft_transfer_leader(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    access().need("operator", "write")
    target = get_str(args, "ID") or None
    voters = [s for s in ctx.raft.configuration() if s.suffrage == "Voter"]
    if target is not None and not any(s.id == target for s in voters):
        raise RPCError(f'cannot find peer with ID "{target}" among the voters')
    if len(voters) < 2:
        raise RPCError("cannot transfer leadership: no other voter in the configuration")
    try:
        await ctx.raft.transfer_leadership(target)
    except Exception as exc:
        raise RPCError(f"failed to transfer leadership: {exc or type(exc).__name__}") from exc
    operator_log.info("leadership transferred (requested target: %s)", target or "any")
    return {"Success": True}


async def usage(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    access().need("operator", "read")
    """Operator.Usage {+QO} -> {Usage: {dc: {Services, ServiceInstances, Nodes, ...}}, +QM}."""

    def run() -> tuple[int, dict[str, dict[str, Any]]]:
        idx, counts = ctx.state.usage()
        # no Connect here: no Connect instances of any kind
        return idx, {ctx.datacenter: dict(counts, ConnectServiceInstances={})}

    return await ctx.query(args, ["nodes", "services"], "Usage", run)


METHODS: Methods = {
    "Operator.RaftGetConfiguration": (raft_get_configuration, Kind.READ),
    "Operator.RaftRemovePeerByAddress": (raft_remove_peer_by_address, Kind.WRITE),
    "Operator.RaftTransferLeader": (raft_transfer_leader, Kind.WRITE),
    "Operator.Usage": (usage, Kind.READ),
}
