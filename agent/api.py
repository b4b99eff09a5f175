"""What the HTTP API, the CLI RPC server and the DNS server need from a running agent.

`agent.agent.Agent` implements `AgentAPI`; `agent/http`, `agent/rpc_cli.py` and `agent/dns`
depend only on this Protocol, so they can be tested against a fake and never reach into the
agent's internals (as Consul's command/ and api/ packages never do).

Server RPC requests and replies are dicts with Consul's struct field names (PascalCase):
see the modules of `agent/server/endpoints/` for every method and its shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from agent.errors import AgentError, JoinError, RPCError

if TYPE_CHECKING:
    from agent.acl.resolver import Access
    from agent.acl.tokens import TokenStore
    from agent.local.registry import LocalRegistry
    from agent.metrics.telemetry import Telemetry


__all__ = ["STATUS_NAMES", "AgentAPI", "AgentError", "JoinError", "RPCError"]

#: Serf member status as Consul's /v1/agent/members reports it (serf.MemberStatus).
STATUS_NONE, STATUS_ALIVE, STATUS_LEAVING, STATUS_LEFT, STATUS_FAILED = 0, 1, 2, 3, 4
STATUS_NAMES = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


class AgentAPI(Protocol):
    node_name: str
    datacenter: str
    is_server: bool
    #: this agent's own services and checks (registration, TTL updates, maintenance)
    registry: LocalRegistry
    #: the agent's own ACL tokens (default, agent, agent_recovery)
    tokens: TokenStore
    #: the metrics registry's sinks, as the telemetry block set them up
    telemetry: Telemetry

    async def resolve_token(self, secret: str) -> Access:
        """The ACL access of a request carrying `secret` (Access.disabled without ACLs);
        RPCError("ACL not found") for a secret no token has."""
        ...

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        """Server RPC. Routed to a server (and on to the leader or to args["Datacenter"]).

        Raises RPCError with Consul's message."""
        ...

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        """Members as /v1/agent/members: Name, Addr, Port, Tags, Status (int), Protocol*/Delegate*."""
        ...

    async def join(self, addrs: list[str], wan: bool = False) -> int: ...

    async def leave(self) -> None: ...

    async def force_leave(self, node: str, prune: bool = False) -> None:
        """Mark a failed member left; `prune` removes it from the member list at once.

        Raises AgentError "agent: No node found with name '<node>'" when neither pool (LAN,
        and a server's WAN as <node>.<dc>) has that member, as Consul 1.x."""
        ...

    def stats(self) -> dict[str, dict[str, str]]:
        """The sections of `senate info`: agent, build, consul, raft, serf_lan, serf_wan, runtime."""
        ...

    def self_info(self) -> dict[str, Any]:
        """The body of /v1/agent/self: {"Config": ..., "Coord": ..., "Member": ...}."""
        ...

    async def reload(self) -> None: ...

    def log_stream(self, level: str, log_json: bool = False) -> AsyncIterator[str]:
        """Formatted log lines at or above `level`, as they are written, for `monitor`."""
        ...

    async def keyring(self, op: str, key: str | None = None) -> list[dict[str, Any]]:
        """op in list/install/use/remove; replies as /v1/operator/keyring."""
        ...

    async def fire_event(
        self,
        name: str,
        payload: bytes,
        node_filter: str = "",
        service_filter: str = "",
        tag_filter: str = "",
        datacenter: str = "",
        token: str = "",
    ) -> dict[str, Any]:
        """Fire a user event (in `datacenter`, default ours; a server there checks `token`);
        returns the event as /v1/event/fire does (ID, Name, LTime...)."""
        ...

    def local_services(self) -> dict[str, dict[str, Any]]:
        """/v1/agent/services: the services this agent registered, by ID."""
        ...

    def local_checks(self) -> dict[str, dict[str, Any]]:
        """/v1/agent/checks: this agent's checks with their latest results, by CheckID."""
        ...

    def user_events(self) -> list[dict[str, Any]]:
        """Recent user events seen by this agent, as /v1/event/list."""
        ...
