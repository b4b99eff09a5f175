"""The HTTP API v1 (port 8500) as an aiohttp application over an `AgentAPI`.

`make_app(agent)` is all the agent needs; each resource lives in its own module and
contributes `routes()`. Errors are answered as Consul answers them: a status code and a
plain-text body, never a traceback.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.api import AgentAPI, RPCError
from agent.http import (
    agent_endpoint,
    catalog,
    coordinate,
    event,
    health,
    kv,
    operator,
    session,
    snapshot,
    status,
    txn,
)
from agent.http.common import AGENT_KEY, HTTPError

log = logging.getLogger("http")

#: Largest request body accepted at all (snapshot restores); KV and txn bodies have their own.
CLIENT_MAX_SIZE = 1 << 30

RESOURCES = (
    kv,
    agent_endpoint,
    event,
    status,
    operator,
    snapshot,
    catalog,
    health,
    coordinate,
    session,
    txn,
)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPError as exc:
        return web.Response(status=exc.status, text=exc.message)
    except RPCError as exc:
        return web.Response(status=500, text=str(exc))
    except web.HTTPException:
        raise
    except Exception as exc:
        log.error("Request %s %s, error: %s", request.method, request.path_qs, exc)
        return web.Response(status=500, text=f"{type(exc).__name__}: {exc}")


def make_app(agent: AgentAPI) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=CLIENT_MAX_SIZE)
    app[AGENT_KEY] = agent
    for resource in RESOURCES:
        app.add_routes(resource.routes())
    return app
