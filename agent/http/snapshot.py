"""/v1/snapshot: GET saves the servers' state as a Consul-style archive, PUT restores one.

The state travels through the server RPCs Snapshot.Save / Snapshot.Restore (see
agent/server/endpoints.py); the archive format is agent/http/archive.py."""

from __future__ import annotations

from aiohttp import web

from agent.http.archive import ArchiveError, build_archive, read_archive
from agent.http.common import (
    HTTPError,
    datacenter,
    meta_headers,
    query_options,
    read_body,
    rpc,
)

MAX_SNAPSHOT_SIZE = 1 << 30


async def snapshot_save(request: web.Request) -> web.Response:
    args = query_options(request)
    reply = await rpc(request, "Snapshot.Save", args)
    state = reply.get("Data") or b""
    archive = build_archive(bytes(state), int(reply.get("Index", 0)), int(reply.get("Term", 0)))
    headers = meta_headers(reply)
    return web.Response(body=archive, headers=headers, content_type="application/x-gzip")


async def snapshot_restore(request: web.Request) -> web.Response:
    data = await read_body(request, MAX_SNAPSHOT_SIZE)
    try:
        meta, state = read_archive(data)
    except ArchiveError as exc:
        raise HTTPError(400, str(exc)) from None
    args = {
        "Datacenter": datacenter(request),
        "Index": meta.index,
        "Term": meta.term,
        "Data": state,
    }
    await rpc(request, "Snapshot.Restore", args)
    return web.Response(body=b"", content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/snapshot", snapshot_save, allow_head=False),
        web.put("/v1/snapshot", snapshot_restore),
    ]
