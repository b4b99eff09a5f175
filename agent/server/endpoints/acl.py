"""ACL.*: Consul 1.x's tokens, policies and roles (acl_endpoint.go), and the identity of a
token as the resolvers of clients and other datacenters ask for it.

ACL.BootstrapTokens {ResetIndex?}                -> Token (the first management token)
ACL.TokenSet        {ACLToken: Token, Create?}   -> Token
ACL.TokenRead       {TokenID, TokenIDType ("accessor"|"secret")} -> {Token | None, Index}
ACL.TokenClone      {ACLToken: {AccessorID, Description?}} -> Token
ACL.TokenDelete     {TokenID}                    -> str (the AccessorID)
ACL.TokenList       {Policy?, Role?, +QueryOptions} -> {Tokens: [Token], Index}
ACL.PolicySet       {Policy}                     -> Policy
ACL.PolicyRead      {PolicyID | PolicyName}      -> {Policy | None, Index}
ACL.PolicyDelete    {PolicyID}                   -> str (the policy's name)
ACL.PolicyList      {+QueryOptions}              -> {Policies: [Policy stub], Index}
ACL.RoleSet / RoleRead {RoleID | RoleName} / RoleDelete / RoleList, as the policies'
ACL.Resolve         {Token}                      -> Identity {AccessorID, Rules: [str]}

Shapes as Consul's JSON: Token {AccessorID, SecretID, Description, Policies: [{ID, Name}],
Roles: [{ID, Name}], ServiceIdentities: [{ServiceName, Datacenters}], NodeIdentities:
[{NodeName, Datacenter}], Local, ExpirationTime?, CreateTime, Hash, CreateIndex,
ModifyIndex}; Policy {ID, Name, Description, Rules, Datacenters, Hash, CreateIndex,
ModifyIndex}; Role {ID, Name, Description, Policies, ServiceIdentities, NodeIdentities, Hash,
CreateIndex, ModifyIndex}. Reading tokens needs `acl = "read"` (SecretIDs then show as
`<hidden>`; `acl = "write"` shows them); every write needs `acl = "write"`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import uuid
from typing import Any

from agent.acl import builtin
from agent.acl.errors import ERR_DISABLED, ERR_NOT_FOUND
from agent.acl.policy import PolicyError, parse_rules
from agent.acl.resolver import Identity
from agent.errors import RPCError
from agent.server.endpoints.base import Context, Kind, Methods, access, get_str
from agent.state.acl import ANONYMOUS_ACCESSOR_ID, ANONYMOUS_SECRET
from agent.state.commands import MessageType

ACL_TABLES = ("acl-tokens", "acl-policies", "acl-roles")
HIDDEN = "<hidden>"
_POLICY_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,128}$")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,256}$")
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$", re.IGNORECASE)
_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9\-_]*[a-z0-9])?$", re.IGNORECASE)


def _uuid_ok(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _hash(obj: dict[str, Any], fields: tuple[str, ...]) -> str:
    data = json.dumps({f: obj.get(f) for f in fields}, sort_keys=True, default=str).encode()
    return base64.b64encode(hashlib.blake2b(data, digest_size=32).digest()).decode()


def _require_enabled(ctx: Context) -> None:
    if not ctx.acl_enabled:
        raise RPCError(ERR_DISABLED)


def _require_primary(ctx: Context, what: str) -> None:
    if ctx.datacenter != ctx.primary_datacenter:
        raise RPCError(f"{what} is only allowed in the primary datacenter")


# ------------------------------------------------------------------------------- identity


def _expired(token: dict[str, Any]) -> bool:
    exp = token.get("ExpirationTime")
    if not exp:
        return False
    try:
        when = datetime.datetime.fromisoformat(str(exp).replace("Z", "+00:00"))
    except ValueError:
        return False
    return when <= datetime.datetime.now(datetime.UTC)


def find_token_by_secret(ctx: Context, secret: str) -> dict[str, Any] | None:
    if not secret or secret == ANONYMOUS_SECRET:
        return ctx.state.acl_token(ANONYMOUS_ACCESSOR_ID)[1] or {
            "AccessorID": ANONYMOUS_ACCESSOR_ID,
            "SecretID": ANONYMOUS_SECRET,
        }
    token = ctx.state.acl_token_by_secret(secret)
    if token is None or _expired(token):
        return None
    return token


def _policy_of_link(ctx: Context, link: Any) -> dict[str, Any] | None:
    if not isinstance(link, dict):
        return None
    if link.get("ID"):
        return ctx.state.acl_policy(str(link["ID"]))[1]
    if link.get("Name"):
        return ctx.state.acl_policy_by_name(str(link["Name"]))
    return None


def _role_of_link(ctx: Context, link: Any) -> dict[str, Any] | None:
    if not isinstance(link, dict):
        return None
    if link.get("ID"):
        return ctx.state.acl_role(str(link["ID"]))[1]
    if link.get("Name"):
        for role in ctx.state.acl_roles()[1]:
            if role["Name"] == link["Name"]:
                return role
    return None


def _applies_here(ctx: Context, datacenters: Any) -> bool:
    return not datacenters or ctx.datacenter in datacenters


def identity_rules(ctx: Context, holder: dict[str, Any]) -> list[str]:
    """The rule texts of a token's or role's policies and identities, as they apply here."""
    rules: list[str] = []
    for link in holder.get("Policies") or []:
        pol = _policy_of_link(ctx, link)
        if pol is not None and _applies_here(ctx, pol.get("Datacenters")):
            rules.append(str(pol.get("Rules") or ""))
    for si in holder.get("ServiceIdentities") or []:
        if isinstance(si, dict) and _applies_here(ctx, si.get("Datacenters")):
            rules.append(builtin.service_identity_rules(str(si.get("ServiceName") or "")))
    for ni in holder.get("NodeIdentities") or []:
        if isinstance(ni, dict) and ni.get("Datacenter") == ctx.datacenter:
            rules.append(builtin.node_identity_rules(str(ni.get("NodeName") or "")))
    for tp in holder.get("TemplatedPolicies") or []:
        if isinstance(tp, dict) and _applies_here(ctx, tp.get("Datacenters")):
            try:
                rules.append(
                    builtin.templated_rules(
                        str(tp.get("TemplateName")), dict(tp.get("TemplateVariables") or {})
                    )
                )
            except KeyError:
                continue
    return rules


def identity_of(ctx: Context, secret: str) -> Identity:
    token = find_token_by_secret(ctx, secret)
    if token is None:
        raise RPCError(ERR_NOT_FOUND)
    rules = identity_rules(ctx, token)
    for link in token.get("Roles") or []:
        role = _role_of_link(ctx, link)
        if role is not None:
            rules.extend(identity_rules(ctx, role))
    return Identity(str(token["AccessorID"]), tuple(rules))


async def resolve(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    return identity_of(ctx, get_str(args, "Token")).to_wire()


# -------------------------------------------------------------------------------- tokens

_TOKEN_HASH_FIELDS = (
    "Description",
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "TemplatedPolicies",
    "Local",
)


def _links(ctx: Context, links: Any, kind: str) -> list[dict[str, str]]:
    """Policy or role links by ID or Name, each made {ID, Name}; Consul's error for one
    that does not exist."""
    if links is None:
        return []
    if not isinstance(links, list):
        raise RPCError(f"Invalid {kind} links: expected a list")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for link in links:
        if not isinstance(link, dict):
            raise RPCError(f"Invalid {kind} link: expected an object with ID or Name")
        found = _policy_of_link(ctx, link) if kind == "policy" else _role_of_link(ctx, link)
        if found is None:
            if link.get("ID"):
                raise RPCError(f"No such ACL {kind} with ID {json.dumps(str(link['ID']))}")
            raise RPCError(f"No such ACL {kind} with name {json.dumps(str(link.get('Name')))}")
        if found["ID"] not in seen:
            seen.add(found["ID"])
            out.append({"ID": found["ID"], "Name": found["Name"]})
    return out


def _service_identities(value: Any) -> list[dict[str, Any]]:
    out = []
    for si in value or []:
        if not isinstance(si, dict) or not si.get("ServiceName"):
            raise RPCError("Service identity is missing the service name field on this token")
        name = str(si["ServiceName"])
        if not _SERVICE_NAME.match(name):
            raise RPCError(f"Service identity {json.dumps(name)} has an invalid name")
        entry: dict[str, Any] = {"ServiceName": name}
        if si.get("Datacenters"):
            entry["Datacenters"] = [str(d) for d in si["Datacenters"]]
        out.append(entry)
    return out


def _node_identities(value: Any) -> list[dict[str, Any]]:
    out = []
    for ni in value or []:
        if not isinstance(ni, dict) or not ni.get("NodeName"):
            raise RPCError("Node identity is missing the node name field on this token")
        if not ni.get("Datacenter"):
            raise RPCError("Node identity is missing the datacenter field on this token")
        name = str(ni["NodeName"])
        if not _NODE_NAME.match(name):
            raise RPCError(f"Node identity has an invalid name {json.dumps(name)}")
        out.append({"NodeName": name, "Datacenter": str(ni["Datacenter"])})
    return out


def templated_policies(value: Any) -> list[dict[str, Any]]:
    """TemplatedPolicies of a token or role, validated: a template Consul has, with the
    variables it takes (their names folded to lower case, as Consul's JSON shows them)."""
    out = []
    for tp in value or []:
        if not isinstance(tp, dict) or not tp.get("TemplateName"):
            raise RPCError("templated policy is missing the template name field on this token")
        name = str(tp["TemplateName"])
        if name not in builtin.TEMPLATED_POLICIES:
            raise RPCError(f"templated policy {json.dumps(name)} does not exist")
        wanted, _desc = builtin.TEMPLATED_POLICIES[name]
        raw = tp.get("TemplateVariables") or {}
        if not isinstance(raw, dict):
            raise RPCError(f"templated policy {json.dumps(name)}: TemplateVariables must be a map")
        variables = {str(k).lower(): str(v) for k, v in raw.items()}
        for var in wanted:
            if not variables.get(var):
                raise RPCError(
                    f"templated policy {json.dumps(name)}: variable {json.dumps(var)} is required"
                )
        entry: dict[str, Any] = {"TemplateName": name}
        if wanted:
            entry["TemplateVariables"] = {v: variables[v] for v in wanted}
        if tp.get("Datacenters"):
            entry["Datacenters"] = [str(d) for d in tp["Datacenters"]]
        out.append(entry)
    return out


def _expiration(token: dict[str, Any], existing: dict[str, Any] | None) -> str | None:
    ttl = token.get("ExpirationTTL")
    when = token.get("ExpirationTime")
    if existing is not None:
        if (ttl or when) and (when or "") != (existing.get("ExpirationTime") or ""):
            raise RPCError("Cannot change expiration time of " + existing["AccessorID"])
        return existing.get("ExpirationTime")
    if ttl and when:
        raise RPCError("Expiration TTL and Expiration Time cannot both be set")
    if ttl:
        from agent.durations import DurationError, parse_duration

        try:
            ns = parse_duration(str(ttl)) if isinstance(ttl, str) else int(ttl)
        except (DurationError, ValueError, TypeError):
            raise RPCError(f"Invalid Token: ExpirationTTL {ttl!r} is not a duration") from None
        seconds = ns / 1e9
        if seconds <= 0:
            raise RPCError("Token Expiration TTL '" + str(ttl) + "' should be > 0")
        if not 60 <= seconds <= 24 * 3600:
            raise RPCError(f"Token Expiration TTL '{ttl}' should be between 1m0s and 24h0m0s")
        at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
        return at.isoformat().replace("+00:00", "Z")
    return str(when) if when else None


def make_token(ctx: Context, token: Any, *, create: bool) -> dict[str, Any]:
    """Validate a TokenSet request as Consul's aclTokenSetInternal; the record to write."""
    if not isinstance(token, dict):
        raise RPCError("Invalid Token: expected an object")
    accessor = str(token.get("AccessorID") or "")
    secret = str(token.get("SecretID") or "")
    existing: dict[str, Any] | None = None
    if create or not accessor:
        if accessor:
            if not _uuid_ok(accessor):
                raise RPCError("Invalid Token: AccessorID is not a valid UUID")
            if ctx.state.acl_token(accessor)[1] is not None:
                raise RPCError("Invalid Token: AccessorID is already in use")
        else:
            accessor = str(uuid.uuid4())
        if secret:
            if not _uuid_ok(secret):
                raise RPCError("Invalid Token: SecretID is not a valid UUID")
            if ctx.state.acl_token_by_secret(secret) is not None:
                raise RPCError("Invalid Token: SecretID is already in use")
        else:
            secret = str(uuid.uuid4())
    else:
        existing = ctx.state.acl_token(accessor)[1]
        if existing is None:
            raise RPCError(f"Cannot find token {json.dumps(accessor)}")
        if secret and secret != existing["SecretID"]:
            raise RPCError("Changing a tokens SecretID is not permitted")
        secret = existing["SecretID"]
        if bool(token.get("Local")) != bool(existing.get("Local")):
            raise RPCError(f"Cannot toggle local mode of {accessor}")
    record: dict[str, Any] = {
        "AccessorID": accessor,
        "SecretID": secret,
        "Description": str(token.get("Description") or ""),
        "Policies": _links(ctx, token.get("Policies"), "policy"),
        "Roles": _links(ctx, token.get("Roles"), "role"),
        "ServiceIdentities": _service_identities(token.get("ServiceIdentities")),
        "NodeIdentities": _node_identities(token.get("NodeIdentities")),
        "TemplatedPolicies": templated_policies(token.get("TemplatedPolicies")),
        "Local": bool(token.get("Local")),
        "CreateTime": existing["CreateTime"] if existing else _now(),
    }
    expiration = _expiration(token, existing)
    if expiration:
        record["ExpirationTime"] = expiration
    if accessor == ANONYMOUS_ACCESSOR_ID:
        record["SecretID"] = ANONYMOUS_SECRET
    record["Hash"] = _hash(record, _TOKEN_HASH_FIELDS)
    return record


_LINKED = (("Policies", _policy_of_link), ("Roles", _role_of_link))
_OPTIONAL_LISTS = ("Policies", "Roles", "ServiceIdentities", "NodeIdentities", "TemplatedPolicies")


def _linked_view(ctx: Context, record: dict[str, Any]) -> dict[str, Any]:
    """A token or role as the API shows it: its policy and role links as they are now
    (deleted ones dropped, names current), empty lists left out as Consul's omitempty."""
    out = dict(record)
    for key, find in _LINKED:
        if key in record:
            found = (find(ctx, link) for link in record.get(key) or [])
            out[key] = [{"ID": x["ID"], "Name": x["Name"]} for x in found if x is not None]
    for key in _OPTIONAL_LISTS:
        if not out.get(key):
            out.pop(key, None)
    return out


def token_view(ctx: Context, token: dict[str, Any], *, show_secret: bool) -> dict[str, Any]:
    """A token as the API shows it: links to deleted policies and roles dropped, their
    names current; the secret `<hidden>` unless the reader may write ACLs."""
    out = _linked_view(ctx, token)
    if not show_secret:
        out["SecretID"] = HIDDEN
    return out


def _show_secrets() -> bool:
    return access().can("acl", "write")


async def bootstrap(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    _require_primary(ctx, "ACL Bootstrap")
    state = ctx.state.acl_bootstrap_state()
    reset = int(args.get("ResetIndex") or 0)
    if not state["AllowBootstrap"] and reset == 0:
        reset = ctx.bootstrap_reset_index()
        if reset != state["ResetIndex"]:
            raise RPCError(
                f"Permission denied: ACL bootstrap no longer allowed "
                f"(reset index: {state['ResetIndex']})"
            )
    token = {
        "AccessorID": str(uuid.uuid4()),
        "SecretID": str(args.get("BootstrapSecret") or uuid.uuid4()),
        "Description": "Bootstrap Token (Global Management)",
        "Policies": [{"ID": builtin.GLOBAL_MANAGEMENT_ID, "Name": builtin.GLOBAL_MANAGEMENT_NAME}],
        "Local": False,
        "CreateTime": _now(),
    }
    token["Hash"] = _hash(token, _TOKEN_HASH_FIELDS)
    result = await ctx.raft_apply(MessageType.ACL_BOOTSTRAP, {"Token": token, "ResetIndex": reset})
    if isinstance(result, dict) and reset:
        ctx.bootstrap_reset_done()
    return token_view(ctx, result if isinstance(result, dict) else token, show_secret=True)


async def token_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "write")
    record = make_token(ctx, args.get("ACLToken"), create=bool(args.get("Create")))
    result = await ctx.raft_apply(MessageType.ACL_TOKEN_SET, {"Token": record})
    return token_view(ctx, result if isinstance(result, dict) else record, show_secret=True)


async def token_read(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    token_id = get_str(args, "TokenID")
    by_secret = get_str(args, "TokenIDType") == "secret"

    def run() -> dict[str, Any]:
        idx = ctx.state.table_index("acl-tokens")
        if by_secret:
            # the token of the request itself (token/self): no acl read needed
            tok = find_token_by_secret(ctx, token_id)
            if tok is None:
                raise RPCError(ERR_NOT_FOUND)
            return {"Index": idx, "Token": token_view(ctx, tok, show_secret=True)}
        access().need("acl", "read")
        tok = ctx.state.acl_token(token_id)[1]
        if tok is None:
            return {"Index": idx, "Token": None}
        return {"Index": idx, "Token": token_view(ctx, tok, show_secret=_show_secrets())}

    return await ctx.blocking(args, ["acl-tokens"], run)


async def token_clone(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "write")
    req = args.get("ACLToken")
    if not isinstance(req, dict) or not req.get("AccessorID"):
        raise RPCError("Must specify a token AccessorID to clone")
    source = ctx.state.acl_token(str(req["AccessorID"]))[1]
    if source is None:
        raise RPCError("ACL not found")
    clone = {
        "Description": req.get("Description") or source.get("Description"),
        "Policies": source.get("Policies"),
        "Roles": source.get("Roles"),
        "ServiceIdentities": source.get("ServiceIdentities"),
        "NodeIdentities": source.get("NodeIdentities"),
        "TemplatedPolicies": source.get("TemplatedPolicies"),
        "Local": source.get("Local"),
        "ExpirationTime": source.get("ExpirationTime"),
    }
    record = make_token(ctx, clone, create=True)
    result = await ctx.raft_apply(MessageType.ACL_TOKEN_SET, {"Token": record})
    return token_view(ctx, result if isinstance(result, dict) else record, show_secret=True)


async def token_delete(ctx: Context, args: dict[str, Any]) -> str:
    _require_enabled(ctx)
    acc = access()
    acc.need("acl", "write")
    accessor = get_str(args, "TokenID")
    if accessor == ANONYMOUS_ACCESSOR_ID:
        raise RPCError("Delete operation not permitted on the anonymous token")
    token = ctx.state.acl_token(accessor)[1]
    if token is None:
        return ""
    if token["AccessorID"] == acc.accessor_id:
        raise RPCError("Deletion of the request's authorization token is not permitted")
    await ctx.raft_apply(MessageType.ACL_TOKEN_DELETE, {"AccessorID": accessor})
    return accessor


async def token_list(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "read")
    policy = get_str(args, "Policy")
    role = get_str(args, "Role")

    def run() -> dict[str, Any]:
        idx, tokens = ctx.state.acl_tokens()
        show = _show_secrets()
        out = []
        for tok in sorted(tokens, key=lambda t: t["CreateIndex"]):
            if policy and policy not in [p.get("ID") for p in tok.get("Policies") or []]:
                continue
            if role and role not in [r.get("ID") for r in tok.get("Roles") or []]:
                continue
            view = token_view(ctx, tok, show_secret=show)
            view["Legacy"] = False
            out.append(view)
        return {"Index": idx, "Tokens": out}

    return await ctx.blocking(args, ["acl-tokens", "acl-policies", "acl-roles"], run)


# ---------------------------------------------------------------------- policies, roles

_POLICY_HASH_FIELDS = ("Name", "Description", "Rules", "Datacenters")
_ROLE_HASH_FIELDS = ("Name", "Description", "Policies", "ServiceIdentities", "NodeIdentities")


def _new_or_existing(
    ctx: Context, obj: dict[str, Any], kind: str
) -> tuple[str, dict[str, Any] | None]:
    oid = str(obj.get("ID") or "")
    if not oid:
        return str(uuid.uuid4()), None
    existing = (ctx.state.acl_policy(oid) if kind == "policy" else ctx.state.acl_role(oid))[1]
    if existing is None:
        raise RPCError(f"cannot find {kind} {oid}")
    return oid, existing


async def policy_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "write")
    policy = args.get("Policy")
    if not isinstance(policy, dict):
        raise RPCError("Invalid Policy: expected an object")
    pid, existing = _new_or_existing(ctx, policy, "policy")
    name = str(policy.get("Name") or "")
    if not _POLICY_NAME.match(name):
        raise RPCError(
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
        )
    rules = str(policy.get("Rules") or "")
    if pid == builtin.GLOBAL_MANAGEMENT_ID:
        if existing is not None and rules != existing.get("Rules"):
            raise RPCError(
                "Changing the Rules for the builtin global-management policy is not permitted"
            )
        if existing is not None and name != existing.get("Name"):
            raise RPCError(
                "Changing the Name for the builtin global-management policy is not permitted"
            )
    try:
        parse_rules(rules)
    except PolicyError as exc:
        raise RPCError(f"Failed to parse policy: {exc}") from None
    other = ctx.state.acl_policy_by_name(name)
    if other is not None and other["ID"] != pid:
        raise RPCError(f"Invalid Policy: A Policy with Name {json.dumps(name)} already exists")
    record: dict[str, Any] = {
        "ID": pid,
        "Name": name,
        "Description": str(policy.get("Description") or ""),
        "Rules": rules,
    }
    dcs = policy.get("Datacenters")
    if dcs:
        if not isinstance(dcs, list) or not all(isinstance(d, str) for d in dcs):
            raise RPCError("Invalid Policy: Datacenters must be a list of names")
        record["Datacenters"] = dcs
    record["Hash"] = _hash(record, _POLICY_HASH_FIELDS)
    result = await ctx.raft_apply(MessageType.ACL_POLICY_SET, {"Policy": record})
    return result if isinstance(result, dict) else record


async def policy_read(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "read")
    pid = get_str(args, "PolicyID")
    name = get_str(args, "PolicyName")

    def run() -> dict[str, Any]:
        idx = ctx.state.table_index("acl-policies")
        pol = ctx.state.acl_policy(pid)[1] if pid else ctx.state.acl_policy_by_name(name)
        return {"Index": idx, "Policy": pol}

    return await ctx.blocking(args, ["acl-policies"], run)


async def policy_delete(ctx: Context, args: dict[str, Any]) -> str:
    _require_enabled(ctx)
    access().need("acl", "write")
    pid = get_str(args, "PolicyID")
    if pid == builtin.GLOBAL_MANAGEMENT_ID:
        raise RPCError("Delete operation not permitted on the builtin global-management policy")
    pol = ctx.state.acl_policy(pid)[1]
    if pol is None:
        return ""
    await ctx.raft_apply(MessageType.ACL_POLICY_DELETE, {"ID": pid})
    return str(pol["Name"])


async def policy_list(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "read")

    def run() -> dict[str, Any]:
        idx, pols = ctx.state.acl_policies()
        stubs = []
        for pol in sorted(pols, key=lambda p: p["CreateIndex"]):
            stub = {k: v for k, v in pol.items() if k != "Rules"}
            stub.setdefault("Datacenters", None)
            stubs.append(stub)
        return {"Index": idx, "Policies": stubs}

    return await ctx.blocking(args, ["acl-policies"], run)


async def role_set(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "write")
    role = args.get("Role")
    if not isinstance(role, dict):
        raise RPCError("Invalid Role: expected an object")
    rid, _existing = _new_or_existing(ctx, role, "role")
    name = str(role.get("Name") or "")
    if not _ROLE_NAME.match(name):
        raise RPCError(
            "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
        )
    for other in ctx.state.acl_roles()[1]:
        if other["Name"] == name and other["ID"] != rid:
            raise RPCError(f"Invalid Role: A Role with Name {json.dumps(name)} already exists")
    record: dict[str, Any] = {
        "ID": rid,
        "Name": name,
        "Description": str(role.get("Description") or ""),
        "Policies": _links(ctx, role.get("Policies"), "policy"),
        "ServiceIdentities": _service_identities(role.get("ServiceIdentities")),
        "NodeIdentities": _node_identities(role.get("NodeIdentities")),
        "TemplatedPolicies": templated_policies(role.get("TemplatedPolicies")),
    }
    record["Hash"] = _hash(record, _ROLE_HASH_FIELDS)
    result = await ctx.raft_apply(MessageType.ACL_ROLE_SET, {"Role": record})
    return role_view(ctx, result if isinstance(result, dict) else record)


def role_view(ctx: Context, role: dict[str, Any]) -> dict[str, Any]:
    return _linked_view(ctx, role)


async def role_read(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "read")
    rid = get_str(args, "RoleID")
    name = get_str(args, "RoleName")

    def run() -> dict[str, Any]:
        idx = ctx.state.table_index("acl-roles")
        role = _role_of_link(ctx, {"ID": rid} if rid else {"Name": name})
        return {"Index": idx, "Role": role_view(ctx, role) if role else None}

    return await ctx.blocking(args, ["acl-roles", "acl-policies"], run)


async def role_delete(ctx: Context, args: dict[str, Any]) -> str:
    _require_enabled(ctx)
    access().need("acl", "write")
    rid = get_str(args, "RoleID")
    role = ctx.state.acl_role(rid)[1]
    if role is None:
        return ""
    await ctx.raft_apply(MessageType.ACL_ROLE_DELETE, {"ID": rid})
    return str(role["Name"])


async def role_list(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    _require_enabled(ctx)
    access().need("acl", "read")
    policy = get_str(args, "Policy")

    def run() -> dict[str, Any]:
        idx, roles = ctx.state.acl_roles()
        out = [
            role_view(ctx, r)
            for r in sorted(roles, key=lambda r: r["CreateIndex"])
            if not policy or policy in [p.get("ID") for p in r.get("Policies") or []]
        ]
        return {"Index": idx, "Roles": out}

    return await ctx.blocking(args, ["acl-roles", "acl-policies"], run)


METHODS: Methods = {
    "ACL.BootstrapTokens": (bootstrap, Kind.WRITE),
    "ACL.TokenSet": (token_set, Kind.WRITE),
    "ACL.TokenRead": (token_read, Kind.READ),
    "ACL.TokenClone": (token_clone, Kind.WRITE),
    "ACL.TokenDelete": (token_delete, Kind.WRITE),
    "ACL.TokenList": (token_list, Kind.READ),
    "ACL.PolicySet": (policy_set, Kind.WRITE),
    "ACL.PolicyRead": (policy_read, Kind.READ),
    "ACL.PolicyDelete": (policy_delete, Kind.WRITE),
    "ACL.PolicyList": (policy_list, Kind.READ),
    "ACL.RoleSet": (role_set, Kind.WRITE),
    "ACL.RoleRead": (role_read, Kind.READ),
    "ACL.RoleDelete": (role_delete, Kind.WRITE),
    "ACL.RoleList": (role_list, Kind.READ),
    "ACL.Resolve": (resolve, Kind.LOCAL),
}
#: bootstrapping and resolving take no token of their own (Consul ignores one sent along)
UNCHECKED = frozenset({"ACL.BootstrapTokens", "ACL.Resolve"})
