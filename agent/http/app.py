"""The HTTP API v1 (port 8500) as an aiohttp application over an `AgentAPI`.

`make_app(agent)` is all the agent needs; each resource lives in its own module and
contributes `routes()`. Errors are answered as Consul answers them: a status code and a
plain-text body, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import MatchInfoError

from agent.api import AgentAPI, AgentError, RPCError
from agent.http import (
    acl,
    agent_endpoint,
    agent_metrics,
    agent_services,
    autopilot,
    catalog,
    config_entry,
    coordinate,
    event,
    health,
    kv,
    operator,
    prepared_query,
    session,
    snapshot,
    status,
    txn,
)
from agent.http.common import AGENT_KEY, HTTPError, rpc_error
from agent.http.origin import BrowserGuard, allowed_by_cors
from agent.limits import OncePerClient
from agent.metrics import metrics

log = logging.getLogger("http")
GUARD_KEY = web.AppKey("guard", BrowserGuard)

#: Largest request body accepted at all (snapshot restores); KV and txn bodies have their own.
CLIENT_MAX_SIZE = 1 << 30

#: What `/` answers, as Consul 1.x's index handler does with its UI disabled (senate has none).
INDEX_TEXT = (
    "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent "
    "configuration and restart."
)
#: Consul's 404 for a path no endpoint serves, in an API path and elsewhere.
NOT_AN_ENDPOINT = "Invalid URL path: not a recognized HTTP API endpoint\n"
NOT_AN_API_PATH = (
    "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
)

RESOURCES = (
    kv,
    agent_endpoint,
    agent_services,
    agent_metrics,
    event,
    status,
    operator,
    autopilot,
    snapshot,
    catalog,
    health,
    coordinate,
    session,
    txn,
    config_entry,
    acl,
    prepared_query,
)


@functools.lru_cache(maxsize=512)
def _path_label(canonical: str) -> str:
    """Consul's `path` label of consul.api.http: the handler's pattern without its leading
    slash, slashes made underscores (`/v1/kv/{key}` -> `v1_kv_`)."""
    return canonical.split("{", 1)[0].lstrip("/").replace("/", "_")


@web.middleware
async def _serve(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors answered as Consul answers them, and every request logged at DEBUG in
    Consul's words: `http: Request GET /v1/kv/x (1.2ms) from=127.0.0.1:52880`."""
    start = time.perf_counter()
    try:
        info = request.match_info
        if isinstance(info, MatchInfoError):
            status = info.http_exception.status
            if status == 404:
                text = NOT_AN_ENDPOINT if "/v1/" in request.path else NOT_AN_API_PATH
                return web.Response(status=404, text=text)
            if status == 405:
                return web.Response(status=405, text=f"method {request.method} not allowed")
        refusal = request.app[GUARD_KEY].refusal(request)
        if refusal is not None:
            _log_refusal(request, refusal)
            return web.Response(status=403, text=f"Forbidden: {refusal}")
        return await handler(request)
    except HTTPError as exc:
        return web.Response(status=exc.status, text=exc.message)
    except RPCError as exc:
        err = rpc_error(exc)
        return web.Response(status=err.status, text=err.message)
    except AgentError as exc:
        return web.Response(status=500, text=str(exc))
    except web.HTTPException:
        raise
    except Exception:
        # A bug, not the caller's fault: the log has the traceback, the caller a plain text.
        log.exception("Request %s %s, error", request.method, request.path_qs)
        return web.Response(status=500, text="Internal error: see the agent's log")
    finally:
        route = request.match_info.route.resource
        if route is not None:
            labels = (("method", request.method), ("path", _path_label(route.canonical)))
            metrics.measure_since("api.http", start, labels)
        if log.isEnabledFor(logging.DEBUG):
            peer = request.transport.get_extra_info("peername") if request.transport else None
            origin = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
            ms = (time.perf_counter() - start) * 1000
            log.debug("Request %s %s (%.3fms) from=%s", request.method, request.path_qs, ms, origin)


#: a refused browser request is logged once a minute per client address, at most
_refusals_logged = OncePerClient()


def _log_refusal(request: web.Request, why: str) -> None:
    client = request.remote or "?"
    if _refusals_logged.due(client):
        log.warning(
            "Refused browser request %s %s from=%s: %s", request.method, request.path, client, why
        )


async def index(_request: web.Request) -> web.Response:
    """`/`, any method: HTTP checks and load balancers probing the agent's root get a 200."""
    return web.Response(text=INDEX_TEXT)


def make_app(
    agent: AgentAPI,
    *,
    response_headers: Sequence[tuple[str, str]] = (),
    allowed_origins: Sequence[str] = (),
    node_name: str = "",
    domain: str = "consul.",
) -> web.Application:
    """The HTTP API over `agent`; `response_headers` go on every response
    (http_config.response_headers); browsers' requests from pages of other origins are
    refused unless `allowed_origins` (or a CORS header in `response_headers`) allows them
    (agent/http/origin.py)."""
    app = web.Application(middlewares=[_serve], client_max_size=CLIENT_MAX_SIZE)
    app[AGENT_KEY] = agent
    origins = [*allowed_origins, *allowed_by_cors(response_headers)]
    app[GUARD_KEY] = BrowserGuard(origins, node_name, domain)
    for resource in RESOURCES:
        app.add_routes(resource.routes())
    app.router.add_route("*", "/", index)
    if response_headers:
        headers = tuple(response_headers)

        async def add_headers(_request: web.Request, response: web.StreamResponse) -> None:
            for k, v in headers:
                response.headers[k] = v

        app.on_response_prepare.append(add_headers)
    return app
