"""Enforcement decisions, as Consul 1.x's acl/authorizer.go, policy_authorizer.go,
static_authorizer.go and chained_authorizer.go compute them.

Every check returns a `Decision`: ALLOW or DENY when a rule decided, DEFAULT when none
applies. A `PolicyAuthorizer` (a token's merged policies) answers DEFAULT where it has no
rule; `chain(policy_authorizer, default)` asks each authorizer in turn and takes the first
answer that is not DEFAULT, and DENY if all of them abstain - with `allow_all()` or
`deny_all()` (the `acl.default_policy`) last, that is how a token's rules sit on top of
the default policy. `manage_all()` is the management token.

Lookup of a labelled resource (policyAuthorizer.getPolicy over a radix tree): an exact
rule for the very name wins; otherwise the longest prefix rule that is a prefix of the
name; otherwise DEFAULT. A rule's level then decides (`enforce_level`): write allows read,
list and write; list allows read and list; read allows read only; deny denies all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Protocol

from agent.acl._hcl import go_quote as _go_quote
from agent.acl.policy import AccessLevel


class Decision(enum.Enum):
    """Consul's EnforcementDecision (same order: Deny, Allow, Default)."""

    DENY = 0
    ALLOW = 1
    DEFAULT = 2

    def __str__(self) -> str:
        return self.name.capitalize()

    @property
    def allowed(self) -> bool:
        return self is Decision.ALLOW


ALLOW, DENY, DEFAULT = Decision.ALLOW, Decision.DENY, Decision.DEFAULT


class Resource(enum.StrEnum):
    ACL = "acl"
    AGENT = "agent"
    EVENT = "event"
    INTENTION = "intention"
    KEY = "key"
    KEYRING = "keyring"
    NODE = "node"
    OPERATOR = "operator"
    MESH = "mesh"
    QUERY = "query"
    SERVICE = "service"
    SESSION = "session"
    PEERING = "peering"


def enforce_level(rule: AccessLevel, required: AccessLevel) -> Decision:
    """policy_authorizer.go `enforce`: what a rule of level `rule` decides for `required`."""
    if rule is AccessLevel.WRITE:
        return ALLOW
    if rule is AccessLevel.LIST:
        return ALLOW if required in (AccessLevel.LIST, AccessLevel.READ) else DENY
    if rule is AccessLevel.READ:
        return ALLOW if required is AccessLevel.READ else DENY
    if rule is AccessLevel.DENY:
        return DENY
    return DEFAULT


class Authorizer(Protocol):
    """What Consul enforces (the Authorizer interface, without the enterprise context)."""

    def acl_read(self) -> Decision: ...
    def acl_write(self) -> Decision: ...
    def agent_read(self, node: str) -> Decision: ...
    def agent_write(self, node: str) -> Decision: ...
    def event_read(self, name: str) -> Decision: ...
    def event_write(self, name: str) -> Decision: ...
    def intention_default_allow(self) -> Decision: ...
    def intention_read(self, name: str) -> Decision: ...
    def intention_write(self, name: str) -> Decision: ...
    def key_list(self, prefix: str) -> Decision: ...
    def key_read(self, key: str) -> Decision: ...
    def key_write(self, key: str) -> Decision: ...
    def key_write_prefix(self, prefix: str) -> Decision: ...
    def keyring_read(self) -> Decision: ...
    def keyring_write(self) -> Decision: ...
    def mesh_read(self) -> Decision: ...
    def mesh_write(self) -> Decision: ...
    def peering_read(self) -> Decision: ...
    def peering_write(self) -> Decision: ...
    def node_read(self, name: str) -> Decision: ...
    def node_read_all(self) -> Decision: ...
    def node_write(self, name: str) -> Decision: ...
    def operator_read(self) -> Decision: ...
    def operator_write(self) -> Decision: ...
    def query_read(self, name: str) -> Decision: ...
    def query_write(self, name: str) -> Decision: ...
    def service_read(self, name: str) -> Decision: ...
    def service_read_all(self) -> Decision: ...
    def service_write(self, name: str) -> Decision: ...
    def service_write_any(self) -> Decision: ...
    def session_read(self, node: str) -> Decision: ...
    def session_write(self, node: str) -> Decision: ...
    def snapshot(self) -> Decision: ...


class StaticAuthorizer:
    """staticAuthorizer: the same answer for everything, except that ACL management and
    snapshots are allowed only with `allow_manage`."""

    def __init__(self, *, allow_manage: bool, default_allow: bool) -> None:
        self.allow_manage = allow_manage
        self.default_allow = default_allow
        self._d = ALLOW if default_allow else DENY
        self._m = ALLOW if allow_manage else DENY

    def __repr__(self) -> str:
        return f"StaticAuthorizer(allow_manage={self.allow_manage}, default_allow={self.default_allow})"

    def acl_read(self) -> Decision:
        return self._m

    def acl_write(self) -> Decision:
        return self._m

    def snapshot(self) -> Decision:
        return self._m

    def agent_read(self, node: str) -> Decision:
        return self._d

    def agent_write(self, node: str) -> Decision:
        return self._d

    def event_read(self, name: str) -> Decision:
        return self._d

    def event_write(self, name: str) -> Decision:
        return self._d

    def intention_default_allow(self) -> Decision:
        return self._d

    def intention_read(self, name: str) -> Decision:
        return self._d

    def intention_write(self, name: str) -> Decision:
        return self._d

    def key_list(self, prefix: str) -> Decision:
        return self._d

    def key_read(self, key: str) -> Decision:
        return self._d

    def key_write(self, key: str) -> Decision:
        return self._d

    def key_write_prefix(self, prefix: str) -> Decision:
        return self._d

    def keyring_read(self) -> Decision:
        return self._d

    def keyring_write(self) -> Decision:
        return self._d

    def mesh_read(self) -> Decision:
        return self._d

    def mesh_write(self) -> Decision:
        return self._d

    def peering_read(self) -> Decision:
        return self._d

    def peering_write(self) -> Decision:
        return self._d

    def node_read(self, name: str) -> Decision:
        return self._d

    def node_read_all(self) -> Decision:
        return self._d

    def node_write(self, name: str) -> Decision:
        return self._d

    def operator_read(self) -> Decision:
        return self._d

    def operator_write(self) -> Decision:
        return self._d

    def query_read(self, name: str) -> Decision:
        return self._d

    def query_write(self, name: str) -> Decision:
        return self._d

    def service_read(self, name: str) -> Decision:
        return self._d

    def service_read_all(self) -> Decision:
        return self._d

    def service_write(self, name: str) -> Decision:
        return self._d

    def service_write_any(self) -> Decision:
        return self._d

    def session_read(self, node: str) -> Decision:
        return self._d

    def session_write(self, node: str) -> Decision:
        return self._d


_ALLOW_ALL = StaticAuthorizer(allow_manage=False, default_allow=True)
_DENY_ALL = StaticAuthorizer(allow_manage=False, default_allow=False)
_MANAGE_ALL = StaticAuthorizer(allow_manage=True, default_allow=True)


def allow_all() -> StaticAuthorizer:
    """`acl.default_policy = "allow"`: everything but ACL management and snapshots."""
    return _ALLOW_ALL


def deny_all() -> StaticAuthorizer:
    """`acl.default_policy = "deny"`: nothing."""
    return _DENY_ALL


def manage_all() -> StaticAuthorizer:
    """Everything, ACL management included."""
    return _MANAGE_ALL


def root_authorizer(name: str) -> StaticAuthorizer | None:
    """RootAuthorizer: "allow", "deny" and "manage" name a static authorizer."""
    return {"allow": _ALLOW_ALL, "deny": _DENY_ALL, "manage": _MANAGE_ALL}.get(name)


class ChainedAuthorizer:
    """ChainedAuthorizer: each authorizer of `chain` in turn; the first decision that is not
    DEFAULT, else DENY.

    enable_key_list_policy is Consul's `acl.enable_key_list_policy`. When false (Consul's
    default) Consul never asks for `key:list`: listing a prefix is filtered entry by entry
    with `key_read`, so a `read` rule lets a token list what it may read. `key_list` then
    answers ALLOW and the caller filters by `key_read`; when true, `key_list` is enforced
    like any other check (a `list` or `write` rule on the prefix is needed).
    """

    def __init__(
        self, chain: Sequence[Authorizer], *, enable_key_list_policy: bool = False
    ) -> None:
        self.chain = tuple(chain)
        self.enable_key_list_policy = enable_key_list_policy

    def _first(self, check: Callable[[Authorizer], Decision]) -> Decision:
        for authz in self.chain:
            decision = check(authz)
            if decision is not DEFAULT:
                return decision
        return DENY

    def acl_read(self) -> Decision:
        return self._first(lambda a: a.acl_read())

    def acl_write(self) -> Decision:
        return self._first(lambda a: a.acl_write())

    def agent_read(self, node: str) -> Decision:
        return self._first(lambda a: a.agent_read(node))

    def agent_write(self, node: str) -> Decision:
        return self._first(lambda a: a.agent_write(node))

    def event_read(self, name: str) -> Decision:
        return self._first(lambda a: a.event_read(name))

    def event_write(self, name: str) -> Decision:
        return self._first(lambda a: a.event_write(name))

    def intention_default_allow(self) -> Decision:
        return self._first(lambda a: a.intention_default_allow())

    def intention_read(self, name: str) -> Decision:
        return self._first(lambda a: a.intention_read(name))

    def intention_write(self, name: str) -> Decision:
        return self._first(lambda a: a.intention_write(name))

    def key_list(self, prefix: str) -> Decision:
        if not self.enable_key_list_policy:
            return ALLOW
        return self._first(lambda a: a.key_list(prefix))

    def key_read(self, key: str) -> Decision:
        return self._first(lambda a: a.key_read(key))

    def key_write(self, key: str) -> Decision:
        return self._first(lambda a: a.key_write(key))

    def key_write_prefix(self, prefix: str) -> Decision:
        return self._first(lambda a: a.key_write_prefix(prefix))

    def keyring_read(self) -> Decision:
        return self._first(lambda a: a.keyring_read())

    def keyring_write(self) -> Decision:
        return self._first(lambda a: a.keyring_write())

    def mesh_read(self) -> Decision:
        return self._first(lambda a: a.mesh_read())

    def mesh_write(self) -> Decision:
        return self._first(lambda a: a.mesh_write())

    def peering_read(self) -> Decision:
        return self._first(lambda a: a.peering_read())

    def peering_write(self) -> Decision:
        return self._first(lambda a: a.peering_write())

    def node_read(self, name: str) -> Decision:
        return self._first(lambda a: a.node_read(name))

    def node_read_all(self) -> Decision:
        return self._first(lambda a: a.node_read_all())

    def node_write(self, name: str) -> Decision:
        return self._first(lambda a: a.node_write(name))

    def operator_read(self) -> Decision:
        return self._first(lambda a: a.operator_read())

    def operator_write(self) -> Decision:
        return self._first(lambda a: a.operator_write())

    def query_read(self, name: str) -> Decision:
        return self._first(lambda a: a.query_read(name))

    def query_write(self, name: str) -> Decision:
        return self._first(lambda a: a.query_write(name))

    def service_read(self, name: str) -> Decision:
        return self._first(lambda a: a.service_read(name))

    def service_read_all(self) -> Decision:
        return self._first(lambda a: a.service_read_all())

    def service_write(self, name: str) -> Decision:
        return self._first(lambda a: a.service_write(name))

    def service_write_any(self) -> Decision:
        return self._first(lambda a: a.service_write_any())

    def session_read(self, node: str) -> Decision:
        return self._first(lambda a: a.session_read(node))

    def session_write(self, node: str) -> Decision:
        return self._first(lambda a: a.session_write(node))

    def snapshot(self) -> Decision:
        return self._first(lambda a: a.snapshot())


def chain(
    policy_authorizer: Authorizer, default: Authorizer, *, enable_key_list_policy: bool = False
) -> ChainedAuthorizer:
    """A token's authorizer (NewPolicyAuthorizerWithDefaults): its rules, then `default`
    (allow_all() or deny_all(), the acl.default_policy) where they say nothing."""
    return ChainedAuthorizer(
        [policy_authorizer, default], enable_key_list_policy=enable_key_list_policy
    )


_ENFORCE: dict[Resource, dict[str, Callable[[Authorizer, str], Decision]]] = {
    Resource.ACL: {"read": lambda a, _: a.acl_read(), "write": lambda a, _: a.acl_write()},
    Resource.AGENT: {"read": lambda a, s: a.agent_read(s), "write": lambda a, s: a.agent_write(s)},
    Resource.EVENT: {"read": lambda a, s: a.event_read(s), "write": lambda a, s: a.event_write(s)},
    Resource.INTENTION: {
        "read": lambda a, s: a.intention_read(s),
        "write": lambda a, s: a.intention_write(s),
    },
    Resource.KEY: {
        "read": lambda a, s: a.key_read(s),
        "list": lambda a, s: a.key_list(s),
        "write": lambda a, s: a.key_write(s),
        "write-prefix": lambda a, s: a.key_write_prefix(s),
    },
    Resource.KEYRING: {
        "read": lambda a, _: a.keyring_read(),
        "write": lambda a, _: a.keyring_write(),
    },
    Resource.MESH: {"read": lambda a, _: a.mesh_read(), "write": lambda a, _: a.mesh_write()},
    Resource.NODE: {"read": lambda a, s: a.node_read(s), "write": lambda a, s: a.node_write(s)},
    Resource.OPERATOR: {
        "read": lambda a, _: a.operator_read(),
        "write": lambda a, _: a.operator_write(),
    },
    Resource.QUERY: {"read": lambda a, s: a.query_read(s), "write": lambda a, s: a.query_write(s)},
    Resource.SERVICE: {
        "read": lambda a, s: a.service_read(s),
        "write": lambda a, s: a.service_write(s),
    },
    Resource.SESSION: {
        "read": lambda a, s: a.session_read(s),
        "write": lambda a, s: a.session_write(s),
    },
    Resource.PEERING: {
        "read": lambda a, _: a.peering_read(),
        "write": lambda a, _: a.peering_write(),
    },
}


def enforce(authz: Authorizer, resource: str, segment: str, access: str) -> Decision:
    """acl.Enforce: the check named by a resource and an access level (case-insensitive),
    as the /v1/internal/acl/authorize endpoint asks them. ValueError with Consul's message
    for an unknown resource or access level."""
    try:
        checks = _ENFORCE[Resource(resource)]
    except ValueError:
        raise ValueError(f"Invalid ACL resource requested: {_go_quote(resource)}") from None
    check = checks.get(access.lower())
    if check is None:
        raise ValueError(f"Invalid access level for {resource} resource: {access}")
    return check(authz, segment)
