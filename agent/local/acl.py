"""ACLs as the agent enforces them for its own endpoints (Consul's agent/acl.go): the token
of a request resolved into an `Access`.

On a server the server's resolver answers (it reads the replicated tables, or the primary
datacenter's servers). On a client the identity comes from a server (`ACL.Resolve`) and is
cached the shortest of `acl.token_ttl`, `policy_ttl` and `role_ttl`; when no server answers, `acl.down_policy` decides. The
`acl.tokens.agent_recovery` token is resolved here alone, without any server: it may read
and write this agent (`agent "<node>"`) and read every node, as Consul's agent recovery
token does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agent.acl.resolver import DISABLED, Access, ACLResolver, Identity
from agent.acl.tokens import TokenStore


class ACLSettings(Protocol):
    """What this module reads of the `acl` block (agent.config.model.ACLConfig has it)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def default_policy(self) -> str: ...
    @property
    def down_policy(self) -> str: ...
    @property
    def enable_key_list_policy(self) -> bool: ...
    @property
    def identity_ttl(self) -> float: ...


AGENT_RECOVERY_ACCESSOR = "agent-recovery"

Rpc = Callable[[str, dict[str, Any]], Awaitable[Any]]
ServerResolve = Callable[[str], Awaitable[Access]]


class LocalACL:
    def __init__(
        self,
        cfg: ACLSettings,
        *,
        node_name: str,
        tokens: TokenStore,
        rpc: Rpc,
        server_resolve: Callable[[], ServerResolve | None],
    ) -> None:
        self.cfg = cfg
        self.node_name = node_name
        self.tokens = tokens
        self._rpc = rpc
        self._server_resolve = server_resolve
        self.resolver = ACLResolver(
            self._fetch,
            default_policy=cfg.default_policy,
            down_policy=cfg.down_policy,
            enable_key_list_policy=cfg.enable_key_list_policy,
            token_ttl=cfg.identity_ttl,
        )
        recovery_rules = (
            f'agent "{node_name}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}\n'
        )
        self._recovery = self.resolver.compile(Identity(AGENT_RECOVERY_ACCESSOR, (recovery_rules,)))

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    async def _fetch(self, secret: str) -> Identity:
        reply = await self._rpc("ACL.Resolve", {"Token": secret, "AllowStale": True})
        return Identity.from_wire(reply)

    async def resolve(self, secret: str) -> Access:
        """The access of a request with `secret` (already defaulted to the user token)."""
        if not self.cfg.enabled:
            return DISABLED
        recovery = self.tokens.agent_recovery_token()
        if recovery and secret == recovery:
            return self._recovery
        server = self._server_resolve()
        if server is not None:
            return await server(secret)
        return await self.resolver.resolve(secret)
