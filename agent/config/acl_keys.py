"""The `acl` block (Consul 1.4+) and the legacy top-level ACL keys it replaced, as handlers
of the config document: everything lands in `acc["acl"]`, which becomes an `ACLConfig`.

Consul's mapping of the legacy keys (agent/config/builder.go): `acl_datacenter` turns ACLs on
and names the primary datacenter; `acl_master_token` is `acl.tokens.initial_management`,
`acl_agent_master_token` `acl.tokens.agent_recovery`, `acl_agent_token` `acl.tokens.agent`,
`acl_token` `acl.tokens.default`; `acl_default_policy`, `acl_down_policy`, `acl_ttl` and
`acl_enable_key_list_policy` are their `acl.*` namesakes. The 1.x names win over the legacy
ones when both are given (the later source wins within each name).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.config import convert as c

Acc = dict[str, Any]
Handler = Callable[[Any, Acc], None]

DEFAULT_POLICIES = ("allow", "deny")
DOWN_POLICIES = ("allow", "deny", "extend-cache", "async-cache")


def _choice(choices: tuple[str, ...]) -> c.Conv:
    def conv(value: Any) -> str:
        s = c.expect_str(value)
        if s not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {json.dumps(value)}")
        return s

    return conv


def _acl(name: str, conv: c.Conv, *, legacy: bool = False) -> Handler:
    """Set `acc["acl"][name]`; a legacy key only fills what no 1.x key set."""

    def handle(value: Any, acc: Acc) -> None:
        block = acc.setdefault("acl", {})
        converted = conv(value)
        if legacy:
            block.setdefault("_legacy", {})[name] = converted
        else:
            block[name] = converted

    return handle


def _legacy_datacenter(value: Any, acc: Acc) -> None:
    dc = c.expect_datacenter(value)
    block = acc.setdefault("acl", {})
    block.setdefault("_legacy", {})["enabled"] = True
    block["_legacy"]["primary_datacenter"] = dc


_TOKENS = {
    "initial_management": ("master", "acl_master_token"),
    "agent_recovery": ("agent_master", "acl_agent_master_token"),
    "agent": (None, "acl_agent_token"),
    "default": (None, "acl_token"),
    "config_file_service_registration": (None, ""),
}

ACL_HANDLERS: dict[str, Handler] = {
    "acl.enabled": _acl("enabled", c.expect_bool),
    "acl.default_policy": _acl("default_policy", _choice(DEFAULT_POLICIES)),
    "acl.down_policy": _acl("down_policy", _choice(DOWN_POLICIES)),
    "acl.enable_key_list_policy": _acl("enable_key_list_policy", c.expect_bool),
    "acl.enable_token_persistence": _acl("enable_token_persistence", c.expect_bool),
    "acl.token_ttl": _acl("token_ttl", c.expect_duration),
    "acl.policy_ttl": _acl("policy_ttl", c.expect_duration),
    "acl.role_ttl": _acl("role_ttl", c.expect_duration),
    "primary_datacenter": _acl("primary_datacenter", c.expect_datacenter),
    "acl_datacenter": _legacy_datacenter,
    "acl_default_policy": _acl("default_policy", _choice(DEFAULT_POLICIES), legacy=True),
    "acl_down_policy": _acl("down_policy", _choice(DOWN_POLICIES), legacy=True),
    "acl_ttl": _acl("token_ttl", c.expect_duration, legacy=True),
    "acl_enable_key_list_policy": _acl("enable_key_list_policy", c.expect_bool, legacy=True),
}
for _name, (_old_block_name, _legacy_key) in _TOKENS.items():
    ACL_HANDLERS[f"acl.tokens.{_name}"] = _acl(f"token_{_name}", c.expect_str)
    if _old_block_name:
        ACL_HANDLERS[f"acl.tokens.{_old_block_name}"] = _acl(
            f"token_{_name}", c.expect_str, legacy=True
        )
    if _legacy_key:
        ACL_HANDLERS[_legacy_key] = _acl(f"token_{_name}", c.expect_str, legacy=True)


def acl_values(acc: Acc) -> dict[str, Any]:
    """`acc["acl"]` with the legacy names filling what the 1.x names left unset."""
    block = dict(acc.get("acl") or {})
    legacy = block.pop("_legacy", {})
    for key, value in legacy.items():
        block.setdefault(key, value)
    return block
