"""Who a request is: a token's secret resolved into an `Access` (its accessor and authorizer),
as Consul 1.x's ACLResolver does it.

A secret is fetched as an `Identity` (the token's accessor and the rule texts of its policies,
its roles' policies and its service and node identities) by a `fetch` the caller provides:
servers of the primary datacenter read their own state, everyone else asks a server (clients
their datacenter's, servers of other datacenters the primary's). The empty secret is the
anonymous token. A secret no token has is Consul's `ACL not found`.

Caching follows Consul's settings: an identity is kept `token_ttl` seconds, or, when the
fetch reads local state, for as long as `version()` (the ACL tables' index) is unchanged. When
a fetch fails for any other reason than `ACL not found` (no leader, no server reachable), the
`down_policy` decides: `extend-cache` and `async-cache` keep using what was cached (however
old), else - as with `allow` or `deny` - every check is answered by that static policy.

ACLs disabled: every request has `DISABLED`, which allows everything and filters nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.acl.authorizer import (
    ALLOW,
    Authorizer,
    allow_all,
    chain,
    deny_all,
    enforce,
    manage_all,
)
from agent.acl.errors import ANONYMOUS_TOKEN_ID, ERR_NOT_FOUND, permission_denied
from agent.acl.policy import AccessLevel, Policy, PolicyError, parse_rules
from agent.acl.policy_authorizer import PolicyAuthorizer
from agent.errors import RPCError

T = TypeVar("T")

_LEVELS = {"read": AccessLevel.READ, "list": AccessLevel.LIST, "write": AccessLevel.WRITE}
#: how many parsed rule texts and resolved identities are kept
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Identity:
    """A token as enforcement needs it: its AccessorID and the rules that apply to it."""

    accessor_id: str
    rules: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"AccessorID": self.accessor_id, "Rules": list(self.rules)}

    @classmethod
    def from_wire(cls, reply: Any) -> Identity:
        if not isinstance(reply, dict):
            raise RPCError("invalid ACL identity reply")
        return cls(str(reply.get("AccessorID") or ""), tuple(reply.get("Rules") or ()))


class Access:
    """What one request may do: `can(resource, level, name)` and `need(...)` (which raises
    Consul's `Permission denied` RPCError), over the token's authorizer."""

    __slots__ = ("accessor_id", "authz", "disabled")

    def __init__(self, accessor_id: str, authz: Authorizer, *, disabled: bool = False) -> None:
        self.accessor_id = accessor_id
        self.authz = authz
        self.disabled = disabled

    def __repr__(self) -> str:
        return f"Access({self.accessor_id!r}, disabled={self.disabled})"

    def can(self, resource: str, level: str, name: str = "") -> bool:
        if self.disabled:
            return True
        return enforce(self.authz, resource, name, level) is ALLOW

    def need(self, resource: str, level: str, name: str = "") -> None:
        if not self.can(resource, level, name):
            shown = "write" if level == "write-prefix" else level
            raise RPCError(str(permission_denied(self.accessor_id, resource, _LEVELS[shown], name)))

    def filter(
        self, items: Iterable[T], resource: str, name: Callable[[T], str], level: str = "read"
    ) -> tuple[list[T], bool]:
        """The items this token may see, and whether any were left out."""
        if self.disabled:
            return list(items), False
        kept: list[T] = []
        dropped = False
        for item in items:
            if enforce(self.authz, resource, name(item), level) is ALLOW:
                kept.append(item)
            else:
                dropped = True
        return kept, dropped


DISABLED = Access("", manage_all(), disabled=True)


def static_access(policy: str) -> Access:
    """The access of a request when the servers cannot be asked: `allow` or `deny`."""
    return Access(ANONYMOUS_TOKEN_ID, allow_all() if policy == "allow" else deny_all())


Fetch = Callable[[str], Awaitable[Identity]]


class ACLResolver:
    def __init__(
        self,
        fetch: Fetch,
        *,
        default_policy: str = "allow",
        down_policy: str = "extend-cache",
        enable_key_list_policy: bool = False,
        token_ttl: float = 30.0,
        version: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.default_policy = default_policy
        self.down_policy = down_policy
        self.enable_key_list_policy = enable_key_list_policy
        self.token_ttl = token_ttl
        self._version = version
        self._clock = clock
        #: secret -> (version or expiry, Access)
        self._cache: OrderedDict[str, tuple[float, Access]] = OrderedDict()
        self._rules: OrderedDict[str, Policy] = OrderedDict()

    def _default(self) -> Authorizer:
        return allow_all() if self.default_policy == "allow" else deny_all()

    def compile(self, identity: Identity) -> Access:
        policies = [self._parse(text) for text in identity.rules]
        authz = chain(
            PolicyAuthorizer(policies),
            self._default(),
            enable_key_list_policy=self.enable_key_list_policy,
        )
        return Access(identity.accessor_id, authz)

    def _parse(self, text: str) -> Policy:
        policy = self._rules.get(text)
        if policy is not None:
            self._rules.move_to_end(text)
            return policy
        try:
            policy = parse_rules(text)
        except PolicyError:
            # a stored policy that no longer parses grants nothing (Consul logs and skips it)
            policy = parse_rules("")
        self._rules[text] = policy
        if len(self._rules) > _CACHE_SIZE:
            self._rules.popitem(last=False)
        return policy

    def _fresh(self, stamp: float) -> bool:
        if self._version is not None:
            return stamp == float(self._version())
        return self._clock() < stamp

    def invalidate(self) -> None:
        self._cache.clear()

    async def resolve(self, secret: str) -> Access:
        cached = self._cache.get(secret)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        stamp = (
            float(self._version()) if self._version is not None else self._clock() + self.token_ttl
        )
        try:
            identity = await self._fetch(secret)
        except RPCError as exc:
            if str(exc) == ERR_NOT_FOUND or str(exc).startswith("Permission denied"):
                self._cache.pop(secret, None)
                raise
            return self._down(cached)
        except (ConnectionError, OSError, TimeoutError):
            return self._down(cached)
        access = self.compile(identity)
        self._cache[secret] = (stamp, access)
        self._cache.move_to_end(secret)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return access

    def _down(self, cached: tuple[float, Access] | None) -> Access:
        if cached is not None and self.down_policy in ("extend-cache", "async-cache"):
            return cached[1]
        if self.down_policy == "allow":
            return static_access("allow")
        return static_access("deny")
