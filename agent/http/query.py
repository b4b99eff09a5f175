"""The shape most read endpoints share: QueryOptions + path args -> one RPC -> a field of
the reply, with the X-Consul-* headers of its QueryMeta."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.http.common import (
    HTTPError,
    json_response,
    meta_headers,
    query_options,
    rpc,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def query(
    method: str,
    field: str | None,
    path_args: dict[str, str] | None = None,
    extra: Callable[[web.Request, dict[str, Any]], None] | None = None,
    empty: Any = None,
    shape: Callable[[web.Request, Any], Any] | None = None,
) -> Handler:
    """A GET handler: QueryOptions + path args -> RPC -> reply[field] with X-Consul-* headers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        args = query_options(request)
        for var, name in (path_args or {}).items():
            value = request.match_info.get(var, "")
            if not value:
                raise HTTPError(400, f"Missing {var} name")
            args[name] = value
        if extra is not None:
            extra(request, args)
        reply = await rpc(request, method, args)
        out = reply.get(field) if field is not None and isinstance(reply, dict) else reply
        if out is None:
            out = empty
        if shape is not None:
            out = shape(request, out)
        return json_response(request, out, meta_headers(reply))

    return handler
