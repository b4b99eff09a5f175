"""Bootstrap-expect: bootstrap raft exactly once when `bootstrap_expect` servers of our
datacenter (all expecting the same number) are known through LAN gossip, and never on a server
that already has raft state (Consul's `maybeBootstrap`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from agent.metadata import MemberLike, ServerParts, server_parts

log = logging.getLogger("consul")


class BootstrapRaft(Protocol):
    def has_existing_state(self) -> bool: ...
    async def bootstrap(self, servers: list[Any]) -> bool: ...


ServerInfoFactory = Callable[[str, str, str], Any]  # (id, address, suffrage) -> ServerInfo


class BootstrapExpect:
    """Consul's maybeBootstrap: once, only with `expect` matching servers, only without state."""

    def __init__(
        self,
        *,
        datacenter: str,
        expect: int,
        raft: BootstrapRaft,
        make_server: ServerInfoFactory,
        self_address: str = "",
        peers_of: Callable[[str], Awaitable[Any]] | None = None,
    ) -> None:
        self.datacenter = datacenter
        self.expect = expect
        self.raft = raft
        self.make_server = make_server
        self.self_address = self_address
        #: asks a server for its raft peers (Status.Peers), to join an existing cluster
        #: instead of bootstrapping a second one (Consul 0.8's check)
        self.peers_of = peers_of
        self.done = expect <= 0
        #: set when a peer could not be asked; the caller retries a little later
        self.retry = False
        self._lock = asyncio.Lock()

    async def maybe_bootstrap(self, members: Sequence[MemberLike]) -> bool:
        """Returns True when this call bootstrapped raft."""
        async with self._lock:
            if self.done:
                return False
            if self.raft.has_existing_state():
                log.info("Raft data found, disabling bootstrap mode")
                self.done = True
                return False
            servers: list[ServerParts] = []
            for m in members:
                if m.status != "alive":
                    continue
                parts = server_parts(m)
                if parts is None or parts.datacenter != self.datacenter:
                    continue
                if parts.expect != 0 and parts.expect != self.expect:
                    log.error(
                        "Member %s has a conflicting expect value. All nodes should expect the same number.",
                        m.name,
                    )
                    return False
                if parts.bootstrap:
                    log.error("Member %s has bootstrap mode. Expect disabled.", m.name)
                    self.done = True
                    return False
                servers.append(parts)
            if len(servers) < self.expect:
                return False
            self.retry = False
            if self.peers_of is not None:
                for p in servers:
                    if p.address == self.self_address:
                        continue
                    try:
                        peers = await self.peers_of(p.address)
                    except Exception as exc:
                        log.error(
                            "Failed to confirm peer status for %s: %s. Retrying...", p.name, exc
                        )
                        self.retry = True
                        return False
                    if peers:
                        log.info(
                            "Existing Raft peers reported by %s, disabling bootstrap mode", p.name
                        )
                        self.done = True
                        return False
            servers.sort(key=lambda p: p.address)
            addrs = ",".join(p.address for p in servers)
            log.info("Found expected number of peers, attempting bootstrap: %s", addrs)
            # As Consul's: node IDs only when every one of them speaks raft protocol 3
            by_node_id = min(p.raft_version for p in servers) >= 3
            config = [
                self.make_server(p.raft_id if by_node_id else p.address, p.address, "Voter")
                for p in servers
            ]
            self.done = True
            ok = await self.raft.bootstrap(config)
            if not ok:
                log.info("Raft data found, disabling bootstrap mode")
            return ok
