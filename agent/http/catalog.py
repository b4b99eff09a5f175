"""/v1/catalog/*: register, deregister and the catalog's read endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    datacenter,
    json_response,
    read_json,
    rpc,
)
from agent.http.query import query


def service_tag(request: web.Request, args: dict[str, Any]) -> None:
    if "tag" in request.query:
        args["ServiceTag"] = request.query["tag"]
        args["TagFilter"] = True


async def catalog_register(request: web.Request) -> web.Response:
    body = await read_json(request, 512 * 1024)
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: body must be a JSON object")
    body.setdefault("Datacenter", datacenter(request))
    if not body.get("Node") or not body.get("Address"):
        raise HTTPError(400, "Must provide node and address")
    await rpc(request, "Catalog.Register", body)
    return json_response(request, True)


async def catalog_deregister(request: web.Request) -> web.Response:
    body = await read_json(request, 512 * 1024)
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: body must be a JSON object")
    body.setdefault("Datacenter", datacenter(request))
    if not body.get("Node"):
        raise HTTPError(400, "Must provide node")
    await rpc(request, "Catalog.Deregister", body)
    return json_response(request, True)


async def catalog_datacenters(request: web.Request) -> web.Response:
    reply = await rpc(request, "Catalog.ListDatacenters", {})
    if isinstance(reply, dict):
        reply = reply.get("Datacenters")
    return json_response(request, list(reply or []))


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/catalog/register", catalog_register),
        web.put("/v1/catalog/deregister", catalog_deregister),
        web.get("/v1/catalog/datacenters", catalog_datacenters, allow_head=False),
        web.get(
            "/v1/catalog/nodes", query("Catalog.ListNodes", "Nodes", empty=[]), allow_head=False
        ),
        web.get(
            "/v1/catalog/services",
            query("Catalog.ListServices", "Services", empty={}),
            allow_head=False,
        ),
        web.get(
            "/v1/catalog/service/{service}",
            query(
                "Catalog.ServiceNodes",
                "ServiceNodes",
                {"service": "ServiceName"},
                service_tag,
                empty=[],
            ),
            allow_head=False,
        ),
        web.get(
            "/v1/catalog/node/{node}",
            query("Catalog.NodeServices", "NodeServices", {"node": "Node"}),
            allow_head=False,
        ),
    ]
