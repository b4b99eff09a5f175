"""What only servers do for the datacenter: bootstrap raft, and the leader's duties.

- `BootstrapExpect`: bootstrap raft exactly once when `bootstrap_expect` servers of our
  datacenter (all expecting the same number) are known through LAN gossip, and never on a server
  that already has raft state (Consul's `maybeBootstrap`).
- `LeaderDuties`: while this server leads, reconcile LAN gossip membership into the catalog (a
  `serfHealth` check passing for alive members, critical for failed ones; left and reaped nodes
  deregistered), add joining servers to raft, remove servers that left, and remove servers that
  stayed failed past a grace period when quorum survives without them (autopilot's dead-server
  cleanup). Consul's `leader.go`, with its log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.api import RPCError
from agent.tasks import cancel_and_wait

log = logging.getLogger("consul")

SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"
SERF_CHECK_ALIVE_OUTPUT = "Agent alive and reachable"
SERF_CHECK_FAILED_OUTPUT = "Agent not live or unreachable"
#: Consul's ReconcileInterval.
RECONCILE_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class ServerParts:
    """What a LAN member's tags say about it as a server (Consul's agent.IsConsulServer)."""

    name: str
    datacenter: str
    address: str  # "ip:port" of its server RPC/raft port; also its raft ID in Consul 0.7
    bootstrap: bool
    expect: int
    node_id: str


class MemberLike(Protocol):
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: str


def server_parts(member: MemberLike) -> ServerParts | None:
    tags = member.tags
    if tags.get("role") != "consul":
        return None
    try:
        port = int(tags.get("port", "8300"))
        expect = int(tags.get("expect", "0"))
    except ValueError:
        return None
    return ServerParts(
        name=member.name,
        datacenter=tags.get("dc", ""),
        address=f"{member.addr}:{port}",
        bootstrap=tags.get("bootstrap") == "1",
        expect=expect,
        node_id=tags.get("id", ""),
    )


class RaftOps(Protocol):
    def has_existing_state(self) -> bool: ...
    async def bootstrap(self, servers: list[Any]) -> bool: ...
    def is_leader(self) -> bool: ...
    def configuration(self) -> list[Any]: ...
    async def add_voter(self, id: str, address: str) -> None: ...
    async def remove_server(self, id: str) -> None: ...


ServerInfoFactory = Callable[[str, str, str], Any]  # (id, address, suffrage) -> ServerInfo


class BootstrapExpect:
    """Consul's maybeBootstrap: once, only with `expect` matching servers, only without state."""

    def __init__(
        self,
        *,
        datacenter: str,
        expect: int,
        raft: RaftOps,
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

    async def maybe_bootstrap(self, members: list[MemberLike]) -> bool:
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
            config = [self.make_server(p.address, p.address, "Voter") for p in servers]
            self.done = True
            ok = await self.raft.bootstrap(config)
            if not ok:
                log.info("Raft data found, disabling bootstrap mode")
            return ok


@dataclass
class _Tracked:
    """What the leader last wrote to the catalog for a member (to skip no-op writes)."""

    status: str
    address: str


@dataclass
class LeaderDuties:
    """Runs while this server is the raft leader; `notify()` on every LAN membership change."""

    node_name: str
    datacenter: str
    raft: RaftOps
    #: the endpoints' handle (writes go through raft because we are the leader)
    handle: Callable[[str, dict[str, Any]], Awaitable[Any]]
    lan_members: Callable[[], list[MemberLike]]
    dead_server_grace: float = 300.0
    reconcile_interval: float = RECONCILE_INTERVAL
    _tracked: dict[str, _Tracked] = field(default_factory=dict)
    _failed_since: dict[str, float] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._tracked.clear()
            self._wake.set()
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while self.raft.is_leader():
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except RPCError as exc:
                log.error("failed to reconcile: %s", exc)
                await asyncio.sleep(1.0)
                self._wake.set()
            except Exception:
                log.exception("failed to reconcile")
                await asyncio.sleep(1.0)
                self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.reconcile_interval)
            # Coalesce bursts of membership events (a cluster starting) into one pass.
            await asyncio.sleep(0.05)

    async def reconcile(self) -> None:
        members = self.lan_members()
        known = {m.name for m in members}
        for m in members:
            if not self.raft.is_leader():
                return
            await self._reconcile_member(m)
        await self._reap_catalog(known)
        await self._cleanup_dead_servers(members)

    async def _reconcile_member(self, m: MemberLike) -> None:
        parts = server_parts(m)
        if m.tags.get("dc", self.datacenter) != self.datacenter:
            return
        status = m.status
        tracked = self._tracked.get(m.name)
        if status in ("alive", "failed"):
            if tracked is None or tracked.status != status or tracked.address != m.addr:
                if await self._catalog_needs_update(m, status):
                    await self._register(m, status, parts)
                    if status == "alive":
                        log.info("member '%s' joined, marking health alive", m.name)
                    else:
                        log.info("member '%s' failed, marking health critical", m.name)
                self._tracked[m.name] = _Tracked(status, m.addr)
            if status == "alive" and parts is not None and parts.datacenter == self.datacenter:
                self._failed_since.pop(parts.address, None)
                await self._join_server(parts)
            elif status == "failed" and parts is not None:
                self._failed_since.setdefault(parts.address, time.monotonic())
        elif status in ("left", "reap"):
            if tracked is None or tracked.status != "left":
                await self._deregister(m.name)
                self._tracked[m.name] = _Tracked("left", m.addr)
            if parts is not None and parts.datacenter == self.datacenter:
                await self._remove_server(parts, "left")

    async def _catalog_needs_update(self, m: MemberLike, status: str) -> bool:
        want = "passing" if status == "alive" else "critical"
        try:
            reply = await self.handle("Health.NodeChecks", {"Node": m.name, "AllowStale": True})
            node_reply = await self.handle(
                "Catalog.NodeServices", {"Node": m.name, "AllowStale": True}
            )
        except RPCError:
            return True
        checks = (reply or {}).get("HealthChecks") or []
        serf = [c for c in checks if c.get("CheckID") == SERF_CHECK_ID]
        ns = (node_reply or {}).get("NodeServices") or {}
        node = ns.get("Node") or {}
        if node.get("Address") != m.addr:
            return True
        if (
            server_parts(m) is not None
            and m.name != self.node_name
            and "consul" not in (ns.get("Services") or {})
        ):
            return True
        return not serf or serf[0].get("Status") != want

    async def _register(self, m: MemberLike, status: str, parts: ServerParts | None) -> None:
        req: dict[str, Any] = {
            "Datacenter": self.datacenter,
            "Node": m.name,
            "ID": m.tags.get("id", ""),
            "Address": m.addr,
            "Check": {
                "Node": m.name,
                "CheckID": SERF_CHECK_ID,
                "Name": SERF_CHECK_NAME,
                "Status": "passing" if status == "alive" else "critical",
                "Output": SERF_CHECK_ALIVE_OUTPUT
                if status == "alive"
                else SERF_CHECK_FAILED_OUTPUT,
                "Notes": "",
                "ServiceID": "",
                "ServiceName": "",
            },
        }
        if parts is not None and status == "alive" and m.name != self.node_name:
            # Our own `consul` service is synced by our agent's anti-entropy, as in Consul.
            port = int(parts.address.rpartition(":")[2])
            req["Service"] = {
                "ID": "consul",
                "Service": "consul",
                "Tags": [],
                "Address": "",
                "Port": port,
            }
        await self.handle("Catalog.Register", req)

    async def _deregister(self, node: str) -> None:
        if node == self.node_name:
            return
        log.info("member '%s' left, deregistering", node)
        await self.handle("Catalog.Deregister", {"Datacenter": self.datacenter, "Node": node})

    async def _reap_catalog(self, known: set[str]) -> None:
        """Nodes that gossip has forgotten (reaped while we were not leader) are deregistered.

        As Consul's reconcileReaped, only nodes carrying a serfHealth check are ours to reap:
        nodes registered directly through the catalog API (external services) are left alone.
        """
        try:
            reply = await self.handle("Health.ChecksInState", {"State": "any", "AllowStale": True})
        except RPCError:
            return
        reaped = {
            str(check.get("Node", ""))
            for check in (reply or {}).get("HealthChecks") or []
            if check.get("CheckID") == SERF_CHECK_ID
        }
        for name in sorted(reaped - known - {"", self.node_name}):
            log.info("member '%s' reaped, deregistering", name)
            await self.handle("Catalog.Deregister", {"Datacenter": self.datacenter, "Node": name})

    def _config_ids(self) -> dict[str, Any]:
        return {getattr(s, "id", ""): s for s in self.raft.configuration()}

    async def _join_server(self, parts: ServerParts) -> None:
        if parts.address in self._config_ids():
            return
        # Servers of a cluster that is still waiting for bootstrap_expect must not be added
        # one by one; they are in the initial configuration once bootstrapped.
        log.info(
            "Adding server %s (Addr: tcp/%s) (DC: %s) to raft",
            parts.name,
            parts.address,
            parts.datacenter,
        )
        try:
            await self.raft.add_voter(parts.address, parts.address)
        except Exception as exc:
            log.error("failed to add raft peer: %s", exc)

    async def _remove_server(self, parts: ServerParts, why: str) -> None:
        if parts.address not in self._config_ids():
            return
        log.info('removing server by ID: "%s"', parts.address)
        try:
            await self.raft.remove_server(parts.address)
        except Exception as exc:
            log.error("failed to remove raft peer '%s': %s", parts.address, exc)

    async def _cleanup_dead_servers(self, members: list[MemberLike]) -> None:
        """Autopilot: drop servers failed longer than the grace period, keeping quorum."""
        now = time.monotonic()
        config = self._config_ids()
        voters = len(config)
        by_addr = {p.address: (m, p) for m in members if (p := server_parts(m)) is not None}
        alive = sum(1 for a in config if a in by_addr and by_addr[a][0].status == "alive")
        for addr, since in list(self._failed_since.items()):
            if addr not in config:
                self._failed_since.pop(addr, None)
                continue
            if now - since < self.dead_server_grace:
                continue
            # Removing one dead voter keeps quorum if the alive ones are a majority of the rest.
            if alive >= (voters - 1) // 2 + 1:
                log.info("Attempting removal of failed server: %s", addr)
                with contextlib.suppress(Exception):
                    await self.raft.remove_server(addr)
                    voters -= 1
                self._failed_since.pop(addr, None)
