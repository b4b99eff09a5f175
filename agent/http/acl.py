"""/v1/acl/*: this agent's datacenter runs without ACLs (the acl block is not implemented
yet, and warned about at start), so every ACL endpoint answers as Consul 1.x does for a
datacenter whose ACLs are disabled: 401 `ACL support disabled`."""

from __future__ import annotations

from aiohttp import web

ACL_DISABLED = "ACL support disabled"


async def acl_disabled(_request: web.Request) -> web.Response:
    return web.Response(status=401, text=ACL_DISABLED)


def routes() -> list[web.RouteDef]:
    return [web.route("*", "/v1/acl/{tail:.*}", acl_disabled)]
