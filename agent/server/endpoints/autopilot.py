"""Operator.Autopilot*: autopilot's configuration and the servers' health (Consul's
operator_autopilot_endpoint.go).

Operator.AutopilotGetConfiguration {+QO} -> AutopilotConfig {..., CreateIndex, ModifyIndex}
Operator.AutopilotSetConfiguration {Config: AutopilotConfig, CAS: bool} -> bool
                       (with CAS, applied only when Config.ModifyIndex is the current one)
Operator.ServerHealth  {} -> OperatorHealthReply {Healthy, FailureTolerance, Servers: [...]}
                       (the leader's view; the others forward)
Operator.AutopilotState {} -> AutopilotState {Healthy, FailureTolerance,
                       OptimisticFailureTolerance, Servers: {id: ...}, Leader, Voters,
                       ReadReplicas}
Reading needs operator:read, setting operator:write.
"""

from __future__ import annotations

from typing import Any

from agent.errors import RPCError
from agent.server.autopilot import AutopilotConfigError, normalize_config, public
from agent.server.endpoints.base import Context, Kind, Methods, access, as_bool
from agent.state.commands import MessageType


def current_config(ctx: Context) -> dict[str, Any]:
    _idx, stored = ctx.state.autopilot_config()
    if stored is not None:
        return stored
    return {**ctx.autopilot_defaults, "CreateIndex": 0, "ModifyIndex": 0}


async def get_configuration(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    access().need("operator", "read")

    def run() -> dict[str, Any]:
        idx = ctx.state.table_index("autopilot")
        return {"Index": idx, "Config": current_config(ctx)}

    return await ctx.blocking(args, ["autopilot"], run)


async def set_configuration(ctx: Context, args: dict[str, Any]) -> bool:
    access().need("operator", "write")
    raw = args.get("Config")
    current = current_config(ctx)
    base = {k: v for k, v in current.items() if k not in ("CreateIndex", "ModifyIndex")}
    try:
        config = normalize_config(raw, base)
    except AutopilotConfigError as exc:
        raise RPCError(str(exc)) from None
    cas = as_bool(args.get("CAS"))
    if cas:
        assert isinstance(raw, dict)
        try:
            config["ModifyIndex"] = int(raw.get("ModifyIndex") or 0)
        except (TypeError, ValueError):
            raise RPCError("ModifyIndex must be an unsigned integer") from None
    result = await ctx.raft_apply(MessageType.AUTOPILOT, {"Config": config, "CAS": cas})
    return bool(result)


def _health(ctx: Context) -> dict[str, Any]:
    health = ctx.autopilot_health() if ctx.autopilot_health is not None else None
    if health is None:
        raise RPCError("Autopilot has not computed server health yet")
    return health


async def server_health(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    access().need("operator", "read")
    return public(_health(ctx))


async def autopilot_state(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """raft-autopilot's State, as /v1/operator/autopilot/state shows it."""
    access().need("operator", "read")
    health = _health(ctx)
    servers: dict[str, Any] = {}
    leader = ""
    voters: list[str] = []
    replicas: list[str] = []
    for s in health["Servers"]:
        status = "leader" if s["Leader"] else ("voter" if s["Voter"] else "non-voter")
        if s["Leader"]:
            leader = s["ID"]
        if s["Voter"]:
            voters.append(s["ID"])
        if s.get("_read_replica"):
            replicas.append(s["ID"])
        servers[s["ID"]] = {
            "ID": s["ID"],
            "Name": s["Name"],
            "Address": s["Address"],
            "NodeStatus": s["SerfStatus"],
            "Version": s["Version"],
            "LastContact": s["LastContact"],
            "LastTerm": s["LastTerm"],
            "LastIndex": s["LastIndex"],
            "Healthy": s["Healthy"],
            "StableSince": s["StableSince"],
            "ReadReplica": bool(s.get("_read_replica")),
            "Status": status,
            "Meta": {},
            "NodeType": "read-replica" if s.get("_read_replica") else "voter",
        }
    healthy_voters = sum(1 for s in health["Servers"] if s["Voter"] and s["Healthy"])
    return {
        "Healthy": health["Healthy"],
        "FailureTolerance": health["FailureTolerance"],
        # raft-autopilot: what could fail if every healthy server also counted
        "OptimisticFailureTolerance": max(0, healthy_voters - (len(voters) // 2 + 1)),
        "Servers": servers,
        "Leader": leader,
        "Voters": voters,
        "ReadReplicas": replicas or None,
    }


METHODS: Methods = {
    "Operator.AutopilotGetConfiguration": (get_configuration, Kind.READ),
    "Operator.AutopilotSetConfiguration": (set_configuration, Kind.WRITE),
    # the leader's view: never answered stale by a follower
    "Operator.ServerHealth": (server_health, Kind.WRITE),
    "Operator.AutopilotState": (autopilot_state, Kind.WRITE),
}
