"""Operator.Raft*: the raft configuration, seen and changed by an operator (Consul's
operator_raft_endpoint.go).

Operator.RaftGetConfiguration DCSpecificRequest {+QO} -> RaftConfigurationResponse
                       {Servers: [{ID, Node, Address, Leader: bool, Voter: bool,
                       ProtocolVersion}], Index}
Operator.RaftRemovePeerByAddress RaftPeerByAddressRequest {Datacenter, Address} -> None
                       (unknown address -> 'address "x" was not found in the Raft configuration')
Operator.RaftRemovePeerByID RaftPeerByIDRequest {Datacenter, ID} -> None
                       (unknown ID -> 'id "x" was not found in the Raft configuration')
Operator.Usage         DCSpecificRequest {+QO} -> {Usage: {dc: counts}, +QueryMeta}
Operator.RaftTransferLeader {Datacenter, ID: optional server ID} -> {Success: bool}
                       (the leader hands leadership to ID, or to the most caught-up voter,
                       with TimeoutNow; as Consul 1.15's /v1/operator/raft/transfer-leader)

A server's ID is its raft ID, as Consul shows it: its node ID under raft protocol 3, its address
for an entry written under protocol 2 (until the leader upgrades it). Methods that take an ID
also accept the node ID of a protocol-2 entry's LAN member.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.errors import RPCError
from agent.metadata import TAG_ID, TAG_RAFT_VSN
from agent.server.endpoints.base import Context, Kind, Methods, access, as_bool, get_str

operator_log = logging.getLogger("consul.operator")


def _member_tags(ctx: Context, server: Any) -> dict[str, str] | None:
    return ctx.server_tags(server.address, server.id) if ctx.server_tags is not None else None


def _raft_server(ctx: Context, given: str, servers: list[Any]) -> Any:
    """The server of `servers` whose raft ID is `given`, else the one whose LAN member has
    node ID `given` (an entry still under protocol 2's address ID)."""
    for s in servers:
        if s.id == given:
            return s
    for s in servers:
        if (_member_tags(ctx, s) or {}).get(TAG_ID) == given:
            return s
    return None


async def raft_get_configuration(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    access().need("operator", "read")
    if as_bool(args.get("RequireConsistent")):
        await ctx.verify_leader()
    leader = ctx.raft.leader()
    leader_id = leader.id if leader is not None else None
    servers = []
    for s in ctx.raft.configuration():
        tags = _member_tags(ctx, s)
        name = ctx.server_name(s.address, s.id) if ctx.server_name else None
        servers.append(
            {
                "ID": s.id,  # raft's, as Consul shows: the node ID under protocol 3
                "Node": name or "(unknown)",
                "Address": s.address,
                "Leader": s.id == leader_id,
                "Voter": s.suffrage == "Voter",
                # the member's raft_vsn tag, "unknown" without a member (as Consul)
                "ProtocolVersion": tags.get(TAG_RAFT_VSN, "") if tags is not None else "unknown",
            }
        )
    # Consul 1.x answers Index 0: hashicorp/raft's GetConfiguration (since 1.1.2) reads the
    # latest configuration without its index, and clients (py-consul's suite) rely on it.
    return {"Servers": servers, "Index": 0}


async def _remove(ctx: Context, server: Any, what: str) -> None:
    try:
        await ctx.raft.remove_server(server.id)
    except Exception as exc:
        raise RPCError(str(exc) or type(exc).__name__) from exc
    operator_log.warning("Removed Raft %s", what)


async def raft_remove_peer_by_address(ctx: Context, args: dict[str, Any]) -> None:
    access().need("operator", "write")
    address = get_str(args, "Address")
    for s in ctx.raft.configuration():
        if s.address == address:
            await _remove(ctx, s, f"peer {address}")
            return
    raise RPCError(f'address "{address}" was not found in the Raft configuration')


async def raft_remove_peer_by_id(ctx: Context, args: dict[str, Any]) -> None:
    access().need("operator", "write")
    given = get_str(args, "ID")
    server = _raft_server(ctx, given, ctx.raft.configuration()) if given else None
    if server is None:
        raise RPCError(f'id "{given}" was not found in the Raft configuration')
    await _remove(ctx, server, f"peer with id {given}")


async def raft_transfer_leader(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    access().need("operator", "write")
    given = get_str(args, "ID") or None
    voters = [s for s in ctx.raft.configuration() if s.suffrage == "Voter"]
    target = None
    if given is not None:
        found = _raft_server(ctx, given, voters)
        if found is None:
            raise RPCError(f'cannot find peer with ID "{given}" among the voters')
        target = found.id
    if len(voters) < 2:
        raise RPCError("cannot transfer leadership: no other voter in the configuration")
    try:
        await ctx.raft.transfer_leadership(target)
    except Exception as exc:
        raise RPCError(f"failed to transfer leadership: {exc or type(exc).__name__}") from exc
    operator_log.info("leadership transferred (requested target: %s)", given or "any")
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
    "Operator.RaftRemovePeerByID": (raft_remove_peer_by_id, Kind.WRITE),
    "Operator.RaftTransferLeader": (raft_transfer_leader, Kind.WRITE),
    "Operator.Usage": (usage, Kind.READ),
}
