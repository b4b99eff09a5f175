"""/v1/acl/*: Consul 1.x's token, policy and role API (acl_endpoint.go of agent/), over the
servers' ACL.* methods, and /v1/agent/token/<kind>.

Without `acl.enabled` every one of them answers as Consul does for a datacenter whose ACLs
are off: 401 `ACL support disabled`. A token, policy or role that does not exist is Consul's
403 `ACL not found`; a deletion answers `true`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from typing import Any

from aiohttp import web

from agent.acl import builtin
from agent.acl.errors import ERR_DISABLED, ERR_NOT_FOUND
from agent.acl.tokens import KINDS
from agent.http.common import (
    HTTPError,
    agent_of,
    json_response,
    need,
    query_options,
    read_json,
    request_token,
    rpc,
)

log = logging.getLogger("agent")

#: what a token, policy or role body may be (Consul's request bodies are small)
MAX_BODY = 512 * 1024
#: the fields of token, policy and role bodies; Consul decodes them case-insensitively
_FIELDS = {
    f.lower(): f
    for f in (
        "AccessorID",
        "SecretID",
        "Description",
        "Policies",
        "Roles",
        "ServiceIdentities",
        "NodeIdentities",
        "Local",
        "ExpirationTime",
        "ExpirationTTL",
        "ID",
        "Name",
        "Rules",
        "Datacenters",
        "Datacenter",
        "ServiceName",
        "NodeName",
        "Token",
        "BootstrapSecret",
        "TemplatedPolicies",
        "TemplateName",
        "TemplateVariables",
    )
}


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {_FIELDS.get(str(k).lower(), k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _require_enabled(request: web.Request) -> None:
    agent: Any = agent_of(request)
    acl = getattr(agent, "acl", None)
    if acl is None or not acl.enabled:
        raise HTTPError(401, ERR_DISABLED)


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request, MAX_BODY)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HTTPError(400, "Request decode failed: expected a JSON object")
    out: dict[str, Any] = _canonical(body)
    return out


#: what a read of something that does not exist answers: a token is Consul's 403 `ACL not
#: found`; a policy or role a 404 (`ACL policy not found`)
_MISSING = {"Token": ERR_NOT_FOUND, "Policy": "ACL policy not found", "Role": "ACL role not found"}


async def _read(
    request: web.Request, method: str, args: dict[str, Any], field: str, missing: int = 403
) -> Any:
    opts = query_options(request)
    reply = await rpc(request, method, {**opts, **args})
    found = (reply or {}).get(field)
    if found is None:
        raise HTTPError(missing, _MISSING[field])
    return found


# ------------------------------------------------------------------------------ bootstrap


async def bootstrap(request: web.Request) -> web.Response:
    _require_enabled(request)
    body = await read_json(request, MAX_BODY)
    args: dict[str, Any] = {}
    if isinstance(body, dict) and body.get("BootstrapSecret"):
        args["BootstrapSecret"] = str(body["BootstrapSecret"])
    token = await rpc(request, "ACL.BootstrapTokens", args)
    return json_response(request, token)


# --------------------------------------------------------------------------------- tokens


async def token_create(request: web.Request) -> web.Response:
    _require_enabled(request)
    body = await _body(request)
    token = await rpc(request, "ACL.TokenSet", {"ACLToken": body, "Create": True})
    return json_response(request, token)


async def token_self(request: web.Request) -> web.Response:
    _require_enabled(request)
    token = await _read(
        request,
        "ACL.TokenRead",
        {"TokenID": request_token(request), "TokenIDType": "secret"},
        "Token",
    )
    return json_response(request, token)


async def token_read(request: web.Request) -> web.Response:
    _require_enabled(request)
    accessor = request.match_info["id"]
    if accessor == "self":
        return await token_self(request)
    token = await _read(request, "ACL.TokenRead", {"TokenID": accessor}, "Token")
    return json_response(request, token)


async def token_update(request: web.Request) -> web.Response:
    _require_enabled(request)
    accessor = request.match_info["id"]
    body = await _body(request)
    if body.get("AccessorID") and body["AccessorID"] != accessor:
        raise HTTPError(400, "Token Accessor ID in URL and payload do not match")
    body["AccessorID"] = accessor
    token = await rpc(request, "ACL.TokenSet", {"ACLToken": body})
    return json_response(request, token)


async def token_clone(request: web.Request) -> web.Response:
    _require_enabled(request)
    body = await _body(request)
    args = {"AccessorID": request.match_info["id"], "Description": body.get("Description")}
    token = await rpc(request, "ACL.TokenClone", {"ACLToken": args})
    return json_response(request, token)


async def token_delete(request: web.Request) -> web.Response:
    _require_enabled(request)
    await rpc(request, "ACL.TokenDelete", {"TokenID": request.match_info["id"]})
    return json_response(request, True)


async def token_list(request: web.Request) -> web.Response:
    _require_enabled(request)
    args = {**query_options(request)}
    for name, field in (("policy", "Policy"), ("role", "Role")):
        if request.query.get(name):
            args[field] = request.query[name]
    reply = await rpc(request, "ACL.TokenList", args)
    return json_response(request, (reply or {}).get("Tokens") or [])


# ------------------------------------------------------------------------ policies, roles


def _uuid_param(request: web.Request, what: str) -> str:
    """A policy or role ID in the path must be a UUID (Consul's state store refuses others)."""
    value = request.match_info["id"]
    try:
        uuid.UUID(value)
    except ValueError:
        raise HTTPError(400, f"Invalid {what} ID {json.dumps(value)}: not a UUID") from None
    return value


def _crud_routes(kind: str, plural: str, filters: tuple[str, ...] = ()) -> list[web.RouteDef]:
    """/v1/acl/<kind> create, read (by ID or name), update, delete and /v1/acl/<plural> list
    for policies and roles, over ACL.<Kind>Set/Read/Delete/List; `filters` are the list's
    query parameters (passed on capitalised)."""
    what = kind.lower()

    async def create(request: web.Request) -> web.Response:
        _require_enabled(request)
        body = await _body(request)
        body.pop("ID", None)
        return json_response(request, await rpc(request, f"ACL.{kind}Set", {kind: body}))

    async def read(request: web.Request) -> web.Response:
        _require_enabled(request)
        args = {f"{kind}ID": _uuid_param(request, what)}
        return json_response(request, await _read(request, f"ACL.{kind}Read", args, kind, 404))

    async def read_by_name(request: web.Request) -> web.Response:
        _require_enabled(request)
        args = {f"{kind}Name": request.match_info["name"]}
        return json_response(request, await _read(request, f"ACL.{kind}Read", args, kind, 404))

    async def update(request: web.Request) -> web.Response:
        _require_enabled(request)
        oid = request.match_info["id"]
        body = await _body(request)
        if body.get("ID") and body["ID"] != oid:
            raise HTTPError(400, f"{kind} ID in URL and payload do not match")
        body["ID"] = oid
        return json_response(request, await rpc(request, f"ACL.{kind}Set", {kind: body}))

    async def delete(request: web.Request) -> web.Response:
        _require_enabled(request)
        await rpc(request, f"ACL.{kind}Delete", {f"{kind}ID": request.match_info["id"]})
        return json_response(request, True)

    async def list_all(request: web.Request) -> web.Response:
        _require_enabled(request)
        args = {**query_options(request)}
        for name in filters:
            if request.query.get(name):
                args[name.capitalize()] = request.query[name]
        reply = await rpc(request, f"ACL.{kind}List", args)
        return json_response(request, (reply or {}).get(plural) or [])

    base = f"/v1/acl/{what}"
    return [
        web.put(base, create),
        web.get(f"{base}/name/{{name}}", read_by_name),
        web.get(f"{base}/{{id}}", read),
        web.put(f"{base}/{{id}}", update),
        web.delete(f"{base}/{{id}}", delete),
        web.get(f"/v1/acl/{plural.lower()}", list_all),
    ]


# ---------------------------------------------------------------- templated, replication

_NAME_SCHEMA = '{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}'


def _templated(name: str) -> dict[str, Any]:
    wanted, description = builtin.TEMPLATED_POLICIES[name]
    variables = {v: "${" + v + "}" for v in wanted}
    return {
        "TemplateName": name,
        "Schema": _NAME_SCHEMA if wanted else "",
        "Template": builtin.templated_rules(name, variables).strip("\n"),
        "Description": description,
    }


_TEMPLATED = {name: _templated(name) for name in builtin.TEMPLATED_POLICIES}


async def templated_policies(request: web.Request) -> web.Response:
    _require_enabled(request)
    await need(request, "acl", "read")
    return json_response(request, _TEMPLATED)


async def templated_policy(request: web.Request) -> web.Response:
    _require_enabled(request)
    await need(request, "acl", "read")
    found = _TEMPLATED.get(request.match_info["name"])
    if found is None:
        raise HTTPError(404, f"Invalid templated policy Name: {request.match_info['name']}")
    return json_response(request, found)


async def templated_policy_preview(request: web.Request) -> web.Response:
    """POST /v1/acl/templated-policy/preview/<name> {"Name": ...}: the synthetic policy a
    templated policy stands for with these variables."""
    _require_enabled(request)
    await need(request, "acl", "read")
    name = request.match_info["name"]
    if name not in builtin.TEMPLATED_POLICIES:
        raise HTTPError(404, f"Invalid templated policy Name: {name}")
    body = await _body(request)
    variables = {str(k).lower(): str(v) for k, v in body.items()}
    wanted, _desc = builtin.TEMPLATED_POLICIES[name]
    for var in wanted:
        if not variables.get(var):
            raise HTTPError(400, f"Failed to generate policy: {var} is required")
    rules = builtin.templated_rules(name, variables)
    digest = hashlib.sha256(f"{name}{sorted(variables.items())}".encode()).hexdigest()
    return json_response(
        request,
        {
            "ID": str(uuid.UUID(digest[:32])),
            "Name": f"synthetic-policy-{digest[:16]}",
            "Description": f"synthetic policy generated from templated policy: {name}",
            "Rules": rules,
            "Datacenters": None,
            "Hash": None,
            "CreateIndex": 0,
            "ModifyIndex": 0,
        },
    )


async def unsupported_auth(request: web.Request) -> web.Response:
    """Auth methods, binding rules and login: senate has no auth method types (no JWT,
    OIDC or Kubernetes login), and says so instead of accepting what it cannot honour."""
    _require_enabled(request)
    await need(request, "acl", "write")
    raise HTTPError(400, "Invalid Auth Method: senate implements no auth method types")


async def login(request: web.Request) -> web.Response:
    _require_enabled(request)
    body = await _body(request)
    method = str(body.get("AuthMethod") or "")
    raise HTTPError(403, f"ACL not found: auth method {json.dumps(method)} not found")


async def logout(request: web.Request) -> web.Response:
    """POST /v1/acl/logout: only a token made by a login may log out; senate makes none."""
    _require_enabled(request)
    await rpc(
        request, "ACL.TokenRead", {"TokenID": request_token(request), "TokenIDType": "secret"}
    )
    raise HTTPError(403, "Permission denied: token was not created by a login")


async def replication(request: web.Request) -> web.Response:
    _require_enabled(request)
    agent: Any = agent_of(request)
    primary = agent.config.primary_datacenter if hasattr(agent, "config") else agent.datacenter
    return json_response(
        request,
        {
            "Enabled": False,
            "Running": False,
            "SourceDatacenter": primary,
            "ReplicationType": "",
            "ReplicatedIndex": 0,
            "ReplicatedRoleIndex": 0,
            "ReplicatedTokenIndex": 0,
            "LastSuccess": "0001-01-01T00:00:00Z",
            "LastError": "0001-01-01T00:00:00Z",
            "LastErrorMessage": "",
        },
    )


async def empty_list(request: web.Request) -> web.Response:
    """Auth methods and binding rules: senate has none (no login via external identities)."""
    _require_enabled(request)
    await need(request, "acl", "read")
    return json_response(request, [])


# ------------------------------------------------------------------------- agent tokens


async def agent_token(request: web.Request) -> web.Response:
    """PUT /v1/agent/token/<kind> {"Token": "..."}: replace one of the agent's tokens."""
    _require_enabled(request)
    await need(request, "acl", "write")
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise HTTPError(404, f"Token {json.dumps(kind)} is unknown")  # Go's %q
    body = await _body(request)
    token = body.get("Token")
    if not isinstance(token, str):
        raise HTTPError(400, "Request decode failed: Token must be a string")
    agent_of(request).tokens.set(kind, token)
    log.info("Updated agent's ACL token %r", KINDS[kind])
    return web.Response(status=200)


async def not_found(request: web.Request) -> web.Response:
    _require_enabled(request)
    raise HTTPError(404, f"Invalid URL path: not a recognized HTTP API endpoint: {request.path}")


def routes() -> list[web.RouteDef]:
    return [
        web.put("/v1/acl/bootstrap", bootstrap),
        web.put("/v1/acl/token", token_create),
        web.get("/v1/acl/token/self", token_self),
        web.get("/v1/acl/token/{id}", token_read),
        web.put("/v1/acl/token/{id}/clone", token_clone),
        web.put("/v1/acl/token/{id}", token_update),
        web.delete("/v1/acl/token/{id}", token_delete),
        web.get("/v1/acl/tokens", token_list),
        *_crud_routes("Policy", "Policies"),
        *_crud_routes("Role", "Roles", ("policy",)),
        web.get("/v1/acl/templated-policies", templated_policies),
        web.get("/v1/acl/templated-policy/name/{name:.+}", templated_policy),
        web.get("/v1/acl/replication", replication),
        web.post("/v1/acl/templated-policy/preview/{name:.+}", templated_policy_preview),
        web.get("/v1/acl/auth-methods", empty_list),
        web.get("/v1/acl/binding-rules", empty_list),
        web.put("/v1/acl/auth-method", unsupported_auth),
        web.put("/v1/acl/auth-method/{name}", unsupported_auth),
        web.put("/v1/acl/binding-rule", unsupported_auth),
        web.put("/v1/acl/binding-rule/{id}", unsupported_auth),
        web.post("/v1/acl/login", login),
        web.post("/v1/acl/logout", logout),
        web.put("/v1/agent/token/{kind}", agent_token),
        web.route("*", "/v1/acl/{tail:.*}", not_found),
    ]
