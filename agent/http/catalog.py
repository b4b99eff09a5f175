"""/v1/catalog/*: register, deregister and the catalog's read endpoints."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    datacenter,
    json_response,
    meta_headers,
    query_options,
    read_json,
    rpc,
)
from agent.http.decode import Spec, fields
from agent.http.query import query
from agent.schema import field_names
from agent.structs import DEREGISTER_REQUEST, HEALTH_CHECK, REGISTER_REQUEST


def service_tag(request: web.Request, args: dict[str, Any]) -> None:
    """`?tag=` (repeatable since Consul 1.2: an instance must carry every tag)."""
    tags = request.query.getall("tag", [])
    if tags:
        args["ServiceTags"] = list(tags)
        args["ServiceTag"] = tags[0]  # what a 0.7 server reads
        args["TagFilter"] = True


#: structs.HealthCheck (also a Txn Check op's body)
CHECK_SPEC: Spec = field_names(HEALTH_CHECK)
#: structs.RegisterRequest as Consul's decodeBody reads it (any case, snake_case too)
_REGISTER: Spec = field_names(REGISTER_REQUEST)
_DEREGISTER: Spec = field_names(DEREGISTER_REQUEST)


async def catalog_register(request: web.Request) -> web.Response:
    body = fields(await read_json(request, 512 * 1024), _REGISTER)
    body["Datacenter"] = body.get("Datacenter") or datacenter(request)
    if not body.get("Node") or not body.get("Address"):
        raise HTTPError(400, "Must provide node and address")
    await rpc(request, "Catalog.Register", body)
    return json_response(request, True)


async def catalog_deregister(request: web.Request) -> web.Response:
    body = fields(await read_json(request, 512 * 1024), _DEREGISTER)
    body["Datacenter"] = body.get("Datacenter") or datacenter(request)
    if not body.get("Node"):
        raise HTTPError(400, "Must provide node")
    await rpc(request, "Catalog.Deregister", body)
    return json_response(request, True)


async def catalog_datacenters(request: web.Request) -> web.Response:
    reply = await rpc(request, "Catalog.ListDatacenters", {})
    if isinstance(reply, dict):
        reply = reply.get("Datacenters")
    return json_response(request, list(reply or []))


def with_datacenter(request: web.Request, out: Any) -> Any:
    """Consul 1.x's Node and ServiceNode entries name their datacenter."""
    dc = datacenter(request)
    if isinstance(out, list):
        return [dict(e, Datacenter=dc) if isinstance(e, dict) else e for e in out]
    return out


def _node_services_list(_request: web.Request, out: Any) -> Any:
    """/v1/catalog/node-services/:node (Consul >= 1.7): the node and a list of services."""
    if not isinstance(out, dict):
        return out
    return {"Node": out.get("Node"), "Services": list((out.get("Services") or {}).values())}


async def no_mesh(request: web.Request) -> web.Response:
    """A datacenter without Connect has no mesh-capable instances and no ingress gateways:
    Consul 1.x answers these with an empty list and the catalog's index."""
    reply = await rpc(request, "Catalog.ListServices", query_options(request))
    return json_response(request, [], meta_headers(reply))


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/catalog/register", catalog_register),
        web.put("/v1/catalog/deregister", catalog_deregister),
        web.get("/v1/catalog/datacenters", catalog_datacenters, allow_head=False),
        web.get(
            "/v1/catalog/nodes",
            query("Catalog.ListNodes", "Nodes", empty=[], shape=with_datacenter),
            allow_head=False,
        ),
        web.get(
            "/v1/catalog/services",
            query("Catalog.ListServices", "Services", empty={}, server_filter=True),
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
                shape=with_datacenter,
            ),
            allow_head=False,
        ),
        web.get(
            "/v1/catalog/node/{node}",
            query("Catalog.NodeServices", "NodeServices", {"node": "Node"}),
            allow_head=False,
        ),
        web.get(
            "/v1/catalog/node-services/{node}",
            query(
                "Catalog.NodeServices",
                "NodeServices",
                {"node": "Node"},
                shape=_node_services_list,
            ),
            allow_head=False,
        ),
        web.get("/v1/catalog/connect/{service}", no_mesh, allow_head=False),
        web.get("/v1/catalog/gateway-services/{service}", no_mesh, allow_head=False),
        web.get("/v1/health/connect/{service}", no_mesh, allow_head=False),
        web.get("/v1/health/ingress/{service}", no_mesh, allow_head=False),
    ]
