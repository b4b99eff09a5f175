"""/v1/kv/<key>: Consul's KV endpoint (GET, PUT, DELETE) over KVS.Get/List/ListKeys/Apply.

PUT is the hot path of the cluster bench (wrk, c=64): it parses only what it must, sends one
RPC and answers a constant body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http.common import (
    MAX_KV_SIZE,
    HTTPError,
    agent_of,
    b64,
    json_response,
    meta_headers,
    parse_uint,
    query_options,
    read_body,
    rpc,
)

_TRUE = b"true"
_FALSE = b"false"


def dir_entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    """A DirEntry from the RPC layer -> the JSON object of /v1/kv (Session omitted when empty)."""
    out: dict[str, Any] = {
        "LockIndex": entry.get("LockIndex", 0),
        "Key": entry.get("Key", ""),
        "Flags": entry.get("Flags", 0),
        "Value": b64(entry.get("Value")) or None,  # an empty value is null, as in Consul 1.x
    }
    if entry.get("Session"):
        out["Session"] = entry["Session"]
    out["CreateIndex"] = entry.get("CreateIndex", 0)
    out["ModifyIndex"] = entry.get("ModifyIndex", 0)
    return out


def _key(request: web.Request) -> str:
    """The key of /v1/kv/<key>; a key of slashes alone is no key (Consul's mux cleans the
    path "/v1/kv//" to "/v1/kv/")."""
    key = request.match_info.get("key", "")
    return key if key.strip("/") else ""


def _bool_reply(result: Any) -> web.Response:
    return web.Response(body=_TRUE if result else _FALSE, content_type="application/json")


def _conflicting(request: web.Request, *names: str) -> None:
    present = [n for n in names if n in request.query]
    if len(present) > 1:
        raise HTTPError(400, "Conflicting flags: " + "&".join(present))


async def kv_get(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    args = query_options(request)
    q = request.query
    if "keys" in q:
        return await _get_keys(request, key, args)
    if "recurse" in q:
        args["Key"] = key
        reply = await rpc(request, "KVS.List", args)
    else:
        if not key:
            raise HTTPError(400, "Missing key name")
        args["Key"] = key
        reply = await rpc(request, "KVS.Get", args)
    headers = meta_headers(reply)
    entries = (reply or {}).get("Entries") or []
    if not entries:
        return web.Response(status=404, headers=headers)
    if "raw" in q and "recurse" not in q:
        value = entries[0].get("Value") or b""
        if isinstance(value, str):
            value = value.encode()
        try:
            value.decode("utf-8")
            ctype = "text/plain"
        except UnicodeDecodeError:
            ctype = "application/octet-stream"
        resp = web.Response(body=value, headers=headers)
        resp.content_type = ctype
        return resp
    return json_response(request, [dir_entry_json(e) for e in entries], headers)


async def _get_keys(request: web.Request, prefix: str, args: dict[str, Any]) -> web.Response:
    args["Prefix"] = prefix
    args["Seperator"] = request.query.get("separator", "")
    reply = await rpc(request, "KVS.ListKeys", args)
    headers = meta_headers(reply)
    keys = (reply or {}).get("Keys") or []
    if not keys and prefix:
        return web.Response(status=404, headers=headers)
    return json_response(request, list(keys), headers)


async def kv_put(request: web.Request) -> web.Response:
    key = _key(request)
    if not key:
        raise HTTPError(400, "Missing key name")
    q = request.query
    ent: dict[str, Any] = {"Key": key, "Flags": 0, "Value": b"", "Session": "", "ModifyIndex": 0}
    op = "set"
    if q:
        _conflicting(request, "cas", "acquire", "release")
        flags = parse_uint(request, "flags", "flags")
        if flags is not None:
            ent["Flags"] = flags
        cas = parse_uint(request, "cas", "cas index")
        if cas is not None:
            ent["ModifyIndex"] = cas
            op = "cas"
        if "acquire" in q:
            ent["Session"] = q["acquire"]
            op = "lock"
        if "release" in q:
            ent["Session"] = q["release"]
            op = "unlock"
        dc = q.get("dc") or agent_of(request).datacenter
    else:
        dc = agent_of(request).datacenter
    ent["Value"] = await read_body(request, MAX_KV_SIZE)
    result = await rpc(request, "KVS.Apply", {"Datacenter": dc, "Op": op, "DirEnt": ent})
    return _bool_reply(result)


async def kv_delete(request: web.Request) -> web.Response:
    key = _key(request)
    q = request.query
    _conflicting(request, "recurse", "cas")
    ent: dict[str, Any] = {"Key": key, "Flags": 0, "Value": None, "Session": "", "ModifyIndex": 0}
    op = "delete"
    if "recurse" in q:
        op = "delete-tree"
    else:
        if not key:
            raise HTTPError(400, "Missing key name")
        cas = parse_uint(request, "cas", "cas index")
        if cas is not None:
            ent["ModifyIndex"] = cas
            op = "delete-cas"
    dc = q.get("dc") or agent_of(request).datacenter
    result = await rpc(request, "KVS.Apply", {"Datacenter": dc, "Op": op, "DirEnt": ent})
    if op == "delete-cas":
        return _bool_reply(result)
    return _bool_reply(True)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/kv/{key:.*}", kv_get, allow_head=False),
        web.put("/v1/kv/{key:.*}", kv_put),
        web.post("/v1/kv/{key:.*}", kv_put),
        web.delete("/v1/kv/{key:.*}", kv_delete),
    ]
