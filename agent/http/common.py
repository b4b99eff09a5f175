"""Helpers every HTTP handler shares: Consul's query options, X-Consul-* headers, JSON, errors.

Consul's HTTP layer turns `?dc`, `?stale`, `?consistent`, `?index`, `?wait` into QueryOptions
on the RPC request and the reply's QueryMeta into `X-Consul-Index`, `X-Consul-KnownLeader` and
`X-Consul-LastContact`; a failed RPC becomes a 500 whose body is the error text.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from aiohttp import web

from agent.acl.resolver import Access
from agent.api import AgentAPI, RPCError
from agent.durations import parse_seconds

AGENT_KEY: web.AppKey[AgentAPI] = web.AppKey("agent", AgentAPI)  # type: ignore[type-abstract]

#: Consul's limits (agent/http: maxKVSize; structs: default and maximum blocking wait).
MAX_KV_SIZE = 512 * 1024
DEFAULT_QUERY_TIME = 300.0
MAX_QUERY_TIME = 600.0


class HTTPError(Exception):
    """A request the API refuses; `message` is the response body, as Consul words it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration ("10s", "1m30s", "250ms") -> seconds; ValueError if invalid."""
    return parse_seconds(text)


def agent_of(request: web.Request) -> AgentAPI:
    return request.app[AGENT_KEY]


def request_token(request: web.Request) -> str:
    """The token a request carries, where Consul looks for it: `?token=`, the
    `X-Consul-Token` header, `Authorization: Bearer <token>`; else the agent's default."""
    token = request.query.get("token")
    if token:
        return token
    token = request.headers.get("X-Consul-Token", "").strip()
    if token:
        return token
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return agent_of(request).tokens.user_token()


_ACCESS_KEY: web.RequestKey[Access] = web.RequestKey("senate.acl.access", Access)


async def access_of(request: web.Request) -> Access:
    """The ACL access of the request's token, resolved once per request."""
    cached = request.get(_ACCESS_KEY)
    if cached is not None:
        return cached
    try:
        acc = await agent_of(request).resolve_token(request_token(request))
    except RPCError as exc:
        raise rpc_error(exc) from None
    request[_ACCESS_KEY] = acc
    return acc


async def need(request: web.Request, resource: str, level: str, name: str = "") -> Access:
    """Refuse the request with Consul's 403 unless its token has `resource:level` on name."""
    acc = await access_of(request)
    try:
        acc.need(resource, level, name)
    except RPCError as exc:
        raise HTTPError(403, str(exc)) from None
    return acc


def flag(request: web.Request, name: str) -> bool:
    """A query flag such as `?recurse`: present (with any value but "false") means on."""
    return name in request.query and request.query[name] != "false"


def datacenter(request: web.Request) -> str:
    return request.query.get("dc") or agent_of(request).datacenter


def go_uint(raw: str) -> int:
    """`raw` as Go's strconv.ParseUint(raw, 10, 64) reads it: ASCII digits only (Python's int()
    would also take "1_000", " 7", "+7" and other scripts' digits), below 2**64."""
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"invalid syntax: {raw!r}")
    value = int(raw)
    if value >= 1 << 64:
        raise ValueError(f"value out of range: {raw!r}")
    return value


def parse_uint(request: web.Request, name: str, what: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return go_uint(raw)
    except ValueError:
        raise HTTPError(400, f"Invalid {what}: {raw!r} is not an unsigned integer") from None


def query_options(request: web.Request) -> dict[str, Any]:
    """`?dc ?stale ?consistent ?index ?wait` -> Consul's QueryOptions fields (plus Datacenter)."""
    q = request.query
    stale = "stale" in q
    consistent = "consistent" in q
    if stale and consistent:
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    opts: dict[str, Any] = {
        "Datacenter": q.get("dc") or agent_of(request).datacenter,
        "AllowStale": stale,
        "RequireConsistent": consistent,
        "MinQueryIndex": 0,
        "MaxQueryTime": 0.0,
    }
    if "wait" in q:
        try:
            wait = parse_duration(q["wait"])
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
        if wait < 0:
            raise HTTPError(400, "Invalid wait time")
        opts["MaxQueryTime"] = min(wait, MAX_QUERY_TIME)
    if "index" in q:
        try:
            index = go_uint(q["index"])
        except ValueError:
            raise HTTPError(400, "Invalid index") from None
        opts["MinQueryIndex"] = index
        if index > 0 and not opts["MaxQueryTime"]:
            opts["MaxQueryTime"] = DEFAULT_QUERY_TIME
    metas = q.getall("node-meta", [])
    if metas:
        opts["NodeMetaFilters"] = node_meta_filters(metas)
    return opts


def node_meta_filters(values: list[str]) -> dict[str, str]:
    """`?node-meta=key:value` (repeatable; a node must carry every pair), as Consul's
    parseMetaFilter: no colon means the key with an empty value."""
    out: dict[str, str] = {}
    for raw in values:
        key, _sep, value = raw.partition(":")
        out[key] = value
    return out


def meta_headers(reply: Any) -> dict[str, str]:
    """QueryMeta of an RPC reply -> Consul's X-Consul-* headers."""
    if not isinstance(reply, dict):
        return {}
    headers = {"X-Consul-Index": str(int(reply.get("Index") or 0))}
    headers["X-Consul-KnownLeader"] = "true" if reply.get("KnownLeader") else "false"
    last = reply.get("LastContact") or 0
    headers["X-Consul-LastContact"] = str(int(float(last) * 1000))
    if reply.get("ResultsFilteredByACLs"):
        headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    return headers


def _json_default(obj: Any) -> Any:
    """bytes (as Go's []byte) are base64 in JSON; anything else unknown is a bug."""
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def json_body(request: web.Request, obj: Any) -> bytes:
    if "pretty" in request.query:
        return json.dumps(obj, indent=4, default=_json_default).encode()
    return json.dumps(obj, separators=(",", ":"), default=_json_default).encode()


def json_response(
    request: web.Request, obj: Any, headers: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    return web.Response(
        body=json_body(request, obj),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def b64(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode()
    return base64.b64encode(value).decode("ascii")


#: server errors that are the request's fault: answered 400, never 500
BAD_REQUEST_ERRORS = (
    "Request decode failed: ",  # a request that does not fit its struct (agent/structs.py)
    "Session TTL '",  # a TTL that is no duration or out of Consul's range
    "Invalid node filter",  # an event's filters RE2 refuses
    "Invalid service filter",
    "Invalid tag filter",
    "Failed to create boolean expression evaluator",
    "invalid config entry kind",
    'invalid name ("',
    "Name is required",
    "rejected bad coordinate",
    # an autopilot configuration the server refused (agent/server/autopilot.py)
    "CleanupDeadServers:",
    "LastContactThreshold:",
    "MaxTrailingLogs:",
    "MinQuorum:",
    "ServerStabilizationTime:",
    "DisableUpgradeMigration:",
    "RedundancyZoneTag:",
    "UpgradeVersionTag:",
    # ACL requests the server refused as malformed (agent/server/endpoints/acl.py)
    "Invalid Token",
    "Invalid Policy",
    "Invalid Role",
    "No such ACL",
    "templated policy",
    "Token Expiration TTL",
    "Expiration TTL and",
    "Service identity",
    "Node identity",
    "Failed to parse policy",
    "Changing a tokens SecretID",
    "Changing the ",
    "Cannot toggle local mode",
    "Cannot change expiration time",
    "Cannot find token",
    "cannot find policy",
    "cannot find role",
    "Must specify a token AccessorID",
    "Delete operation not permitted",
    "Deletion of the request's authorization token",
)


#: ACL errors and their statuses, as Consul's HTTP layer answers them
_ACL_STATUSES = {"ACL not found": 403, "ACL support disabled": 401}


def rpc_error(exc: RPCError) -> HTTPError:
    """An RPCError as Consul's HTTP answer: 403 for a permission error or an unknown token,
    401 when ACLs are off, 400 for a request the server refused as malformed, else 500."""
    text = str(exc)
    status = _ACL_STATUSES.get(text, 500)
    if text.startswith("Permission denied"):
        status = 403
    elif text.startswith(BAD_REQUEST_ERRORS):
        status = 400
    return HTTPError(status, text)


async def rpc(request: web.Request, method: str, args: dict[str, Any]) -> Any:
    """Call a server RPC with the request's token; an RPCError becomes Consul's answer
    (`rpc_error`)."""
    if "Token" not in args:
        args = {**args, "Token": request_token(request)}
    try:
        return await agent_of(request).rpc(method, args)
    except RPCError as exc:
        raise rpc_error(exc) from None


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The request body, refusing one over `limit` bytes with Consul's 400. A body without a
    Content-Length (chunked) is read only up to the limit, never buffered whole."""
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        raise HTTPError(400, f"Request body({length} bytes) too large, max size: {limit} bytes")
    if limit is None or length is not None:
        return await request.read()
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(65536):
        total += len(chunk)
        if total > limit:
            raise HTTPError(400, f"Request body({total}+ bytes) too large, max size: {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: deepest nesting of arrays and objects a request body may have (Consul's bodies are 4 deep)
JSON_MAX_DEPTH = 64
#: the integers Go decodes into its widest types (int64 and uint64)
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def decode_json(body: bytes | str) -> Any:
    """JSON as Go's decoder would take it into Consul's structs, or a 400 saying what is wrong:
    no nesting past JSON_MAX_DEPTH, no lone UTF-16 surrogates in strings or keys (they cannot
    be stored or sent on), no integer wider than 64 bits, no NaN, Infinity or float overflow."""
    try:
        value = json.loads(
            body, parse_constant=_no_constant, parse_int=_int64, parse_float=_float64
        )
    except RecursionError:  # the C parser's own bound on nesting, far past the limit
        too_deep = f"Request decode failed: nested deeper than {JSON_MAX_DEPTH} levels"
        raise HTTPError(400, too_deep) from None
    except ValueError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
    problem = _problem(value)
    if problem is not None:
        raise HTTPError(400, f"Request decode failed: {problem}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _int64(digits: str) -> int:
    value = int(digits)
    if not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"number {digits} overflows a 64-bit integer")
    return value


def _float64(digits: str) -> float:
    value = float(digits)
    if math.isinf(value):
        raise ValueError(f"number {digits} overflows a 64-bit float")
    return value


def _problem(value: Any) -> str | None:
    """What makes a parsed body unfit (too deep, a lone surrogate), else None; iterative."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            if _has_surrogate(v):
                return f"invalid UTF-16 surrogate in {v!a}"
        elif isinstance(v, (dict, list)):
            if depth > JSON_MAX_DEPTH:
                return f"nested deeper than {JSON_MAX_DEPTH} levels"
            if isinstance(v, dict):
                for k, item in v.items():
                    if _has_surrogate(k):
                        return f"invalid UTF-16 surrogate in {k!a}"
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in v)
    return None


def _has_surrogate(s: str) -> bool:
    if s.isascii():
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


async def read_json(request: web.Request, limit: int | None = None) -> Any:
    body = await read_body(request, limit)
    if not body.strip():
        return None
    try:
        return decode_json(body)
    except UnicodeDecodeError as exc:
        raise HTTPError(400, f"Request decode failed: {exc}") from None
