"""ConfigEntry.*: centrally stored configuration entries (Consul's config_endpoint.go).

ConfigEntry.Apply  ConfigEntryRequest {Datacenter, Op: "upsert"|"upsert-cas"|"delete"|
                   "delete-cas", Entry: {Kind, Name, ...}, +CAS index in Entry.ModifyIndex}
                   -> bool (False: a check-and-set found another ModifyIndex)
ConfigEntry.Get    ConfigEntryQuery {Datacenter, Kind, Name, +QO} -> {Entry | None, +QueryMeta}
ConfigEntry.List   ConfigEntryQuery {Datacenter, Kind, +QO} -> {Kind, Entries: [Entry], +QM}
"""

from __future__ import annotations

from typing import Any

from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods, access, get_str
from agent.state.commands import MessageType
from agent.state.config_entries import CONFIG_KINDS, CONFIG_OPS

#: kinds whose one entry has a fixed name
_FIXED_NAMES = {"proxy-defaults": "global", "mesh": "mesh"}


def _kind(value: str) -> str:
    if value not in CONFIG_KINDS:
        raise RPCError(f"invalid config entry kind: {value}")
    return value


def _need(kind: str, name: str, level: str) -> None:
    """What a config entry needs (its CanRead / CanWrite): a service's entries the service's
    read or write; the datacenter-wide ones (proxy-defaults, mesh, ...) operator's write to
    change, and nothing more than any token to read."""
    if kind.startswith("service-") or kind == "ingress-gateway" or kind == "terminating-gateway":
        access().need("service", level, name)
    elif level == "write":
        access().need("operator", "write")


async def apply(ctx: Context, args: dict[str, Any]) -> bool:
    op = get_str(args, "Op") or "upsert"
    if op not in CONFIG_OPS:
        raise RPCError(f"Invalid config entry operation '{op}'")
    entry = args.get("Entry")
    if not isinstance(entry, dict):
        raise RPCError("Missing config entry")
    kind = _kind(get_str(entry, "Kind"))
    name = get_str(entry, "Name")
    if not name:
        raise RPCError("Name is required")
    fixed = _FIXED_NAMES.get(kind)
    if fixed is not None and name != fixed and not op.startswith("delete"):
        raise RPCError(f'invalid name ("{name}"), only "{fixed}" is supported')
    _need(kind, name, "write")
    cas = int(entry.get("ModifyIndex") or 0)
    body = {k: v for k, v in entry.items() if k not in ("CreateIndex", "ModifyIndex")}
    result = await ctx.raft_apply(MessageType.CONFIG_ENTRY, {"Op": op, "Entry": body, "Cas": cas})
    return bool(result)


async def get(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    kind = _kind(get_str(args, "Kind"))
    name = get_str(args, "Name")
    _need(kind, name, "read")

    return await ctx.query(
        args, ["config-entries"], "Entry", lambda: ctx.state.config_entry(kind, name)
    )


async def list_entries(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    kind = _kind(get_str(args, "Kind"))
    acc = access()

    def visible(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        if not (kind.startswith("service-") or kind.endswith("-gateway")):
            return entries, False
        return acc.filter(entries, "service", lambda e: str(e.get("Name") or ""))

    reply = await ctx.query(
        args,
        ["config-entries"],
        "Entries",
        lambda: ctx.state.config_entries(kind),
        acl=visible,
    )
    reply["Kind"] = kind
    return reply


METHODS: Methods = {
    "ConfigEntry.Apply": (apply, Kind.WRITE),
    "ConfigEntry.Get": (get, Kind.READ),
    "ConfigEntry.List": (list_entries, Kind.READ),
}
