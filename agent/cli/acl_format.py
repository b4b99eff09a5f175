"""The output of the `senate acl ...` commands, as command/acl/{token,policy,role}/formatter.go
writes it.

`-format=pretty` (the default) is Consul's aligned blocks, `-format=json` the api structs as
Go's json.MarshalIndent writes them (fields in the structs' order, omitempty fields left out,
`<`, `>` and `&` escaped). Times are shown as Go prints a time.Time (`2024-01-02
15:04:05.123456 +0000 UTC`), hashes as hex (`%x`) in the pretty blocks and base64 in JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

PRETTY = "pretty"
JSON = "json"
FORMATS = (PRETTY, JSON)
ZERO_TIME = "0001-01-01T00:00:00Z"

# ------------------------------------------------------------------------- Go's values

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})$"
)


def _time_parts(text: str) -> tuple[str, str, str, str] | None:
    m = _RFC3339.match(text or "")
    if m is None:
        return None
    date, clock, frac, zone = m.groups()
    frac = (frac or "")[:9].rstrip("0")
    return date, clock, frac, zone.upper()


def go_time(text: Any) -> str:
    """A time.Time as `%v` prints it (time.Time.String): `2006-01-02 15:04:05.999999999 -0700
    MST`, the fraction without trailing zeros; UTC as `+0000 UTC`, another offset as its own
    name (the FixedZone Go's parser makes for it)."""
    parts = _time_parts(str(text or ZERO_TIME))
    if parts is None:
        return str(text)
    date, clock, frac, zone = parts
    shown = f"{date} {clock}" + (f".{frac}" if frac else "")
    if zone == "Z":
        return f"{shown} +0000 UTC"
    offset = zone.replace(":", "")
    return f"{shown} {offset} {offset}"


def go_json_time(text: Any) -> str:
    """A time.Time as Go's JSON writes it (RFC 3339 with nanoseconds, zeros trimmed)."""
    parts = _time_parts(str(text or ZERO_TIME))
    if parts is None:
        return str(text)
    date, clock, frac, zone = parts
    if zone != "Z" and ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    return f"{date}T{clock}" + (f".{frac}" if frac else "") + zone


def hash_hex(value: Any) -> str:
    """A []byte hash (base64 in JSON) as `%x` prints it."""
    if not value:
        return ""
    try:
        return base64.b64decode(str(value), validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


def go_json(value: Any) -> str:
    """json.MarshalIndent(value, "", "    "), with Go's HTML-safe escapes."""
    text = json.dumps(value, indent=4, ensure_ascii=False)
    for raw, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, esc)
    return text


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _links(value: Any) -> list[dict[str, str]]:
    return [
        {"ID": _str(link.get("ID")), "Name": _str(link.get("Name"))}
        for link in value or []
        if isinstance(link, dict)
    ]


def _service_identities(value: Any) -> list[dict[str, Any]]:
    out = []
    for si in value or []:
        if not isinstance(si, dict):
            continue
        entry: dict[str, Any] = {"ServiceName": _str(si.get("ServiceName"))}
        if si.get("Datacenters"):
            entry["Datacenters"] = [str(d) for d in si["Datacenters"]]
        out.append(entry)
    return out


def _node_identities(value: Any) -> list[dict[str, Any]]:
    return [
        {"NodeName": _str(ni.get("NodeName")), "Datacenter": _str(ni.get("Datacenter"))}
        for ni in value or []
        if isinstance(ni, dict)
    ]


def _templated_policies(value: Any) -> list[dict[str, Any]]:
    """api.ACLTemplatedPolicy: TemplateName, TemplateVariables {Name} (the agent writes the
    variables' names in lower case; the api's struct decodes them whatever their case),
    Datacenters."""
    out = []
    for tp in value or []:
        if not isinstance(tp, dict):
            continue
        entry: dict[str, Any] = {"TemplateName": _str(tp.get("TemplateName"))}
        variables = tp.get("TemplateVariables")
        if isinstance(variables, dict):
            folded = {str(k).lower(): v for k, v in variables.items()}
            entry["TemplateVariables"] = {"Name": _str(folded.get("name"))}
        if tp.get("Datacenters"):
            entry["Datacenters"] = [str(d) for d in tp["Datacenters"]]
        out.append(entry)
    return out


def _ttl_ns(value: Any) -> int:
    if isinstance(value, bool) or not value:
        return 0
    if isinstance(value, int | float):
        return int(value)
    from agent.durations import DurationError, parse_duration

    try:
        return parse_duration(str(value))
    except DurationError:
        return 0


def _put_links(out: dict[str, Any], obj: dict[str, Any], *, roles: bool = True) -> None:
    for key, shape in (
        ("Policies", _links),
        ("Roles", _links),
        ("ServiceIdentities", _service_identities),
        ("NodeIdentities", _node_identities),
        ("TemplatedPolicies", _templated_policies),
    ):
        if key == "Roles" and not roles:
            continue
        value = shape(obj.get(key))
        if value:
            out[key] = value


def _put_tenancy(out: dict[str, Any], obj: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if obj.get(key):
            out[key] = _str(obj[key])


def api_token(obj: dict[str, Any]) -> dict[str, Any]:
    """api.ACLToken's fields, in its order."""
    out: dict[str, Any] = {
        "CreateIndex": _int(obj.get("CreateIndex")),
        "ModifyIndex": _int(obj.get("ModifyIndex")),
        "AccessorID": _str(obj.get("AccessorID")),
        "SecretID": _str(obj.get("SecretID")),
        "Description": _str(obj.get("Description")),
    }
    _put_links(out, obj)
    out["Local"] = bool(obj.get("Local"))
    if obj.get("AuthMethod"):
        out["AuthMethod"] = _str(obj["AuthMethod"])
    ttl = _ttl_ns(obj.get("ExpirationTTL"))
    if ttl:
        out["ExpirationTTL"] = ttl
    if obj.get("ExpirationTime"):
        out["ExpirationTime"] = go_json_time(obj["ExpirationTime"])
    out["CreateTime"] = go_json_time(obj.get("CreateTime"))
    if obj.get("Hash"):
        out["Hash"] = _str(obj["Hash"])
    _put_tenancy(out, obj, "Namespace", "Partition", "AuthMethodNamespace")
    return out


def api_token_list_entry(obj: dict[str, Any]) -> dict[str, Any]:
    """api.ACLTokenListEntry's fields, in its order."""
    out: dict[str, Any] = {
        "CreateIndex": _int(obj.get("CreateIndex")),
        "ModifyIndex": _int(obj.get("ModifyIndex")),
        "AccessorID": _str(obj.get("AccessorID")),
        "SecretID": _str(obj.get("SecretID")),
        "Description": _str(obj.get("Description")),
    }
    _put_links(out, obj)
    out["Local"] = bool(obj.get("Local"))
    if obj.get("AuthMethod"):
        out["AuthMethod"] = _str(obj["AuthMethod"])
    if obj.get("ExpirationTime"):
        out["ExpirationTime"] = go_json_time(obj["ExpirationTime"])
    out["CreateTime"] = go_json_time(obj.get("CreateTime"))
    out["Hash"] = _str(obj["Hash"]) if obj.get("Hash") else None
    _put_tenancy(out, obj, "Namespace", "Partition", "AuthMethodNamespace")
    return out


def api_policy(obj: dict[str, Any], *, rules: bool = True) -> dict[str, Any]:
    """api.ACLPolicy (or, without rules, api.ACLPolicyListEntry), in its order."""
    out: dict[str, Any] = {
        "ID": _str(obj.get("ID")),
        "Name": _str(obj.get("Name")),
        "Description": _str(obj.get("Description")),
    }
    if rules:
        out["Rules"] = _str(obj.get("Rules"))
    dcs = obj.get("Datacenters")
    out["Datacenters"] = [str(d) for d in dcs] if isinstance(dcs, list) else None
    out["Hash"] = _str(obj["Hash"]) if obj.get("Hash") else None
    out["CreateIndex"] = _int(obj.get("CreateIndex"))
    out["ModifyIndex"] = _int(obj.get("ModifyIndex"))
    _put_tenancy(out, obj, "Namespace", "Partition")
    return out


def api_role(obj: dict[str, Any]) -> dict[str, Any]:
    """api.ACLRole's fields, in its order."""
    out: dict[str, Any] = {
        "ID": _str(obj.get("ID")),
        "Name": _str(obj.get("Name")),
        "Description": _str(obj.get("Description")),
    }
    _put_links(out, obj, roles=False)
    out["Hash"] = _str(obj["Hash"]) if obj.get("Hash") else None
    out["CreateIndex"] = _int(obj.get("CreateIndex"))
    out["ModifyIndex"] = _int(obj.get("ModifyIndex"))
    _put_tenancy(out, obj, "Namespace", "Partition")
    return out


# --------------------------------------------------------------------------- pretty blocks


def _identity_lines(obj: dict[str, Any], indent: str) -> list[str]:
    """The service and node identities and the templated policies of a token or role."""
    lines: list[str] = []
    sids = _service_identities(obj.get("ServiceIdentities"))
    if sids:
        lines.append(f"{indent}Service Identities:")
        for si in sids:
            dcs = ", ".join(si.get("Datacenters") or []) or "all"
            lines.append(f"{indent}   {si['ServiceName']} (Datacenters: {dcs})")
    nids = _node_identities(obj.get("NodeIdentities"))
    if nids:
        lines.append(f"{indent}Node Identities:")
        for ni in nids:
            lines.append(f"{indent}   {ni['NodeName']} (Datacenter: {ni['Datacenter']})")
    tps = _templated_policies(obj.get("TemplatedPolicies"))
    if tps:
        lines.append(f"{indent}Templated Policies:")
        for tp in tps:
            lines.append(f"{indent}   {tp['TemplateName']}")
            name = (tp.get("TemplateVariables") or {}).get("Name")
            if name:
                lines.append(f"{indent}      Name: {name}")
            dcs = ", ".join(tp.get("Datacenters") or []) or "all"
            lines.append(f"{indent}      Datacenters: {dcs}")
    return lines


def _link_lines(title: str, links: Any, indent: str) -> list[str]:
    shaped = _links(links)
    if not shaped:
        return []
    return [f"{indent}{title}:"] + [f"{indent}   {x['ID']} - {x['Name']}" for x in shaped]


def _token_head(token: dict[str, Any], show_meta: bool) -> list[str]:
    lines = [
        f"AccessorID:       {_str(token.get('AccessorID'))}",
        f"SecretID:         {_str(token.get('SecretID'))}",
    ]
    if token.get("Partition"):
        lines.append(f"Partition:        {token['Partition']}")
    if token.get("Namespace"):
        lines.append(f"Namespace:        {token['Namespace']}")
    lines.append(f"Description:      {_str(token.get('Description'))}")
    lines.append(f"Local:            {'true' if token.get('Local') else 'false'}")
    if token.get("AuthMethod"):
        ns = _str(token.get("AuthMethodNamespace"))
        lines.append(f"Auth Method:      {token['AuthMethod']} (Namespace: {ns})")
    lines.append(f"Create Time:      {go_time(token.get('CreateTime'))}")
    expiry = token.get("ExpirationTime")
    if expiry and go_json_time(expiry) != ZERO_TIME:
        lines.append(f"Expiration Time:  {go_time(expiry)}")
    if show_meta:
        lines.append(f"Hash:             {hash_hex(token.get('Hash'))}")
        lines.append(f"Create Index:     {_int(token.get('CreateIndex'))}")
        lines.append(f"Modify Index:     {_int(token.get('ModifyIndex'))}")
    return lines


def pretty_token(token: dict[str, Any], show_meta: bool) -> str:
    lines = _token_head(token, show_meta)
    lines += _link_lines("Policies", token.get("Policies"), "")
    lines += _link_lines("Roles", token.get("Roles"), "")
    lines += _identity_lines(token, "")
    return "\n".join(lines) + "\n"


def pretty_token_list(tokens: list[dict[str, Any]], show_meta: bool) -> str:
    return "\n".join(pretty_token(t, show_meta) for t in tokens)


def pretty_policy(policy: dict[str, Any], show_meta: bool) -> str:
    lines = [
        f"ID:           {_str(policy.get('ID'))}",
        f"Name:         {_str(policy.get('Name'))}",
    ]
    for key in ("Partition", "Namespace"):  # both ten characters with the colon
        if policy.get(key):
            lines.append(f"{key}:    {policy[key]}")
    lines.append(f"Description:  {_str(policy.get('Description'))}")
    lines.append(f"Datacenters:  {', '.join(policy.get('Datacenters') or [])}")
    if show_meta:
        lines.append(f"Hash:         {hash_hex(policy.get('Hash'))}")
        lines.append(f"Create Index: {_int(policy.get('CreateIndex'))}")
        lines.append(f"Modify Index: {_int(policy.get('ModifyIndex'))}")
    lines.append("Rules:")
    return "\n".join(lines) + "\n" + _str(policy.get("Rules"))


def pretty_policy_list(policies: list[dict[str, Any]], show_meta: bool) -> str:
    out = []
    for policy in policies:
        lines = [f"{_str(policy.get('Name'))}:", f"   ID:           {_str(policy.get('ID'))}"]
        lines.append(f"   Description:  {_str(policy.get('Description'))}")
        lines.append(f"   Datacenters:  {', '.join(policy.get('Datacenters') or [])}")
        if show_meta:
            lines.append(f"   Hash:         {hash_hex(policy.get('Hash'))}")
            lines.append(f"   Create Index: {_int(policy.get('CreateIndex'))}")
            lines.append(f"   Modify Index: {_int(policy.get('ModifyIndex'))}")
        out.append("\n".join(lines) + "\n")
    return "".join(out)


def _role_lines(role: dict[str, Any], show_meta: bool, indent: str) -> list[str]:
    """A role's block; a list entry (indented) has its name as its heading instead."""
    lines = [f"{indent}ID:           {_str(role.get('ID'))}"]
    if not indent:
        lines.append(f"Name:         {_str(role.get('Name'))}")
    for key in ("Partition", "Namespace"):
        if role.get(key):
            lines.append(f"{indent}{key}:    {role[key]}")
    lines.append(f"{indent}Description:  {_str(role.get('Description'))}")
    if show_meta:
        lines.append(f"{indent}Hash:         {hash_hex(role.get('Hash'))}")
        lines.append(f"{indent}Create Index: {_int(role.get('CreateIndex'))}")
        lines.append(f"{indent}Modify Index: {_int(role.get('ModifyIndex'))}")
    lines += _link_lines("Policies", role.get("Policies"), indent)
    lines += _identity_lines(role, indent)
    return lines


def pretty_role(role: dict[str, Any], show_meta: bool) -> str:
    return "\n".join(_role_lines(role, show_meta, "")) + "\n"


def pretty_role_list(roles: list[dict[str, Any]], show_meta: bool) -> str:
    return "".join(
        "\n".join([f"{_str(r.get('Name'))}:", *_role_lines(r, show_meta, "   ")]) + "\n"
        for r in roles
    )


def format_token(token: dict[str, Any], fmt: str, show_meta: bool) -> str:
    return go_json(api_token(token)) if fmt == JSON else pretty_token(token, show_meta)


def format_token_list(tokens: list[dict[str, Any]], fmt: str, show_meta: bool) -> str:
    if fmt == JSON:
        return go_json([api_token_list_entry(t) for t in tokens])
    return pretty_token_list(tokens, show_meta)


def format_policy(policy: dict[str, Any], fmt: str, show_meta: bool) -> str:
    return go_json(api_policy(policy)) if fmt == JSON else pretty_policy(policy, show_meta)


def format_policy_list(policies: list[dict[str, Any]], fmt: str, show_meta: bool) -> str:
    if fmt == JSON:
        return go_json([api_policy(p, rules=False) for p in policies])
    return pretty_policy_list(policies, show_meta)


def format_role(role: dict[str, Any], fmt: str, show_meta: bool) -> str:
    return go_json(api_role(role)) if fmt == JSON else pretty_role(role, show_meta)


def format_role_list(roles: list[dict[str, Any]], fmt: str, show_meta: bool) -> str:
    if fmt == JSON:
        return go_json([api_role(r) for r in roles])
    return pretty_role_list(roles, show_meta)
