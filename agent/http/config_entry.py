"""/v1/config: Consul 1.x's configuration entries — PUT (?cas=) to write one, GET by kind and
name or by kind, DELETE (?cas=) — stored by the servers through raft."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    datacenter,
    json_response,
    parse_uint,
    read_json,
    rpc,
)
from agent.http.query import query

#: fields every kind shares, in Consul's spelling
_COMMON = {
    "kind": "Kind",
    "name": "Name",
    "namespace": "Namespace",
    "partition": "Partition",
    "meta": "Meta",
}


def _camel(key: str) -> str:
    """Consul decodes config entries with snake_case accepted for every field:
    `mesh_gateway` -> `MeshGateway`."""
    if key.lower() in _COMMON:
        return _COMMON[key.lower()]
    if "_" in key or key[:1].islower():
        return "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", key) if part)
    return key


def _entry(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decoding failed: expected a config entry object")
    entry = {_camel(str(k)): v for k, v in body.items()}
    for field in ("Kind", "Name"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            raise HTTPError(400, f"Request decoding failed: {field} is required")
    return entry


async def config_apply(request: web.Request) -> web.Response:
    entry = _entry(await read_json(request, 512 * 1024))
    cas = parse_uint(request, "cas", "cas value")
    op = "upsert"
    if cas is not None:
        op, entry["ModifyIndex"] = "upsert-cas", cas
    args = {"Datacenter": datacenter(request), "Op": op, "Entry": entry}
    return json_response(request, bool(await rpc(request, "ConfigEntry.Apply", args)))


async def config_delete(request: web.Request) -> web.Response:
    kind, name = request.match_info["kind"], request.match_info["name"]
    entry: dict[str, Any] = {"Kind": kind, "Name": name}
    cas = parse_uint(request, "cas", "cas value")
    op = "delete"
    if cas is not None:
        op, entry["ModifyIndex"] = "delete-cas", cas
    args = {"Datacenter": datacenter(request), "Op": op, "Entry": entry}
    ok = bool(await rpc(request, "ConfigEntry.Apply", args))
    return json_response(request, ok if cas is not None else {})


def _found(request: web.Request, entry: Any) -> Any:
    if entry is None:
        kind, name = request.match_info["kind"], request.match_info["name"]
        raise HTTPError(404, f'Config entry not found for "{kind}" / "{name}"')
    return entry


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/config", config_apply),
        web.get(
            "/v1/config/{kind}/{name}",
            query("ConfigEntry.Get", "Entry", {"kind": "Kind", "name": "Name"}, shape=_found),
            allow_head=False,
        ),
        web.get(
            "/v1/config/{kind}",
            query("ConfigEntry.List", "Entries", {"kind": "Kind"}, empty=[]),
            allow_head=False,
        ),
        web.delete("/v1/config/{kind}/{name}", config_delete),
    ]
