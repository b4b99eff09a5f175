"""`Server`: what only a server agent has (Consul's consul.Server).

It owns the state store and the FSM that fills it, the raft node, the RPC endpoints and their
listener on the server port (8300: raft and RPC on one PortMux), the WAN gossip pool,
bootstrap-expect and the leader's duties. Requests reach it through `rpc(method, args)`:
the endpoints answer, or forward to the leader (`forward_leader`) or to a server of another
datacenter known from the WAN pool (`forward_dc`). The agent tells it of LAN membership with
`on_lan_change(members)`; raft tells it of leadership changes through its observers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.errors import RPCError
from agent.gossip.config import Profile
from agent.gossip.consul import wan_merge_check
from agent.gossip.coordinate import parse_coordinates
from agent.gossip.keyring import Keyring
from agent.gossip.runner import GossipPool
from agent.gossip.serf_types import Member
from agent.metadata import TAG_WAN_JOIN_PORT, MemberLike, server_member, server_parts
from agent.mux import PortMux
from agent.raft.config import RaftConfig
from agent.raft.log_store import RaftStoreError
from agent.raft.runner import RaftNode, ServerInfo
from agent.server.autopilot import initial_config as initial_autopilot_config
from agent.server.bootstrap import BootstrapExpect
from agent.server.endpoints import Endpoints
from agent.server.endpoints.autopilot import current_config as current_autopilot_config
from agent.server.leader import LeaderDuties
from agent.server.rpc import ConnectFailed, ConnPool, RPCServer
from agent.state.fsm import StateFSM
from agent.state.store import StateStore
from agent.tasks import Background, StartError, listen, stop_step
from agent.tlsutil import RPCTLS

log = logging.getLogger("consul")

#: Errors that mean the request was never executed (retried within the hold timeout).
ERR_LEADER_UNREACHABLE = "rpc error: leader unreachable"
#: How long bootstrap-expect waits before asking the peers again after one did not answer.
BOOTSTRAP_RETRY = 1.0


def rpc_timeout(args: dict[str, Any]) -> float:
    """How long one RPC may take: a blocking query's wait (capped as Consul's) plus slack."""
    wait = args.get("MaxQueryTime")
    if isinstance(wait, int | float) and wait > 0:
        return min(float(wait), 600.0) * 1.07 + 10.0
    return 30.0 if not args.get("MinQueryIndex") else 330.0


def wan_servers(members: Sequence[MemberLike]) -> dict[str, tuple[str, str]]:
    """The alive servers among WAN members: "node.dc" -> (datacenter, "ip:port")."""
    out: dict[str, tuple[str, str]] = {}
    for m in members:
        parts = server_parts(m)
        if parts is not None and m.status == "alive":
            out[m.name] = (parts.datacenter, parts.address)
    return out


class Server:
    """A server's parts, started and stopped as one."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        node_id: str,
        advertise: str,
        advertise_wan: str,
        data_dir: Path | None,
        wan_keyring: Keyring | None,
        wan_tags: dict[str, str],
        lan_members: Callable[[], list[Member]],
        on_new_leader: Callable[[], None] | None = None,
        user_event: Callable[[str, bytes], None] | None = None,
        rpc_tls: RPCTLS | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.datacenter = config.datacenter
        self.address = f"{advertise}:{config.ports.server}"
        self._advertise_wan = advertise_wan
        self._data_dir = data_dir
        self._wan_keyring = wan_keyring
        self._wan_tags = wan_tags
        self._lan_members = lan_members
        self._on_new_leader = on_new_leader
        # TLS of the server port (tls.internal_rpc): served by the mux, dialled by the pool and
        # by raft's transport (which dials with the mux's)
        self.pool = ConnPool(tls=rpc_tls, log_name="agent.server.rpc")
        self.mux = PortMux(rpc_tls, max_conns_per_client=config.rpc_max_conns_per_client)
        self.state = StateStore()
        self.fsm = StateFSM(self.state)
        # raft protocol 3 names this server by its node ID (persisted in the data dir, so it
        # survives a new address); 2 by its address. Either way the other is an alias: a
        # configuration written under protocol 2 still names it by address until the leader
        # rewrites the entry (the upgrade, agent/server/leader.py).
        self.raft_id = node_id if config.raft_protocol >= 3 and node_id else self.address
        self.raft = RaftNode(
            node_id=self.raft_id,
            aliases=tuple(a for a in (self.address, node_id) if a and a != self.raft_id),
            address=self.address,
            data_dir=data_dir,
            fsm=self.fsm,
            mux=self.mux,
            config=RaftConfig.dev()
            if config.dev
            else RaftConfig.for_multiplier(config.effective_raft_multiplier),
            on_fatal=on_fatal,
        )
        self.endpoints = Endpoints(
            datacenter=config.datacenter,
            state=self.state,
            raft=self.raft,
            forward_leader=self.forward_leader,
            forward_dc=self.forward_dc,
            known_datacenters=self.known_datacenters,
            wan_coordinates=self.wan_coordinates,
            server_name=self.server_name,
            server_tags=self.server_tags,
            user_event=user_event,
            acl=config.acl,
            data_dir=config.data_dir,
            datacenters_by_distance=self.datacenters_by_distance,
        )
        self.rpc_server = RPCServer(self.mux, self.endpoints.handle)
        self.leader_duties = LeaderDuties(
            node_name=config.node_name,
            datacenter=config.datacenter,
            raft=self.raft,
            handle=self.endpoints.handle_internal,
            lan_members=lan_members,
            autopilot_config=lambda: current_autopilot_config(self.endpoints),
        )
        self.endpoints.autopilot_defaults = initial_autopilot_config(config.autopilot)
        self.endpoints.autopilot_health = lambda: self.leader_duties.health
        self.bootstrapper: BootstrapExpect | None = None
        self.wan: GossipPool | None = None
        #: the servers of every datacenter WAN gossip shows alive: "node.dc" -> (dc, "ip:port")
        self.wan_servers: dict[str, tuple[str, str]] = {}
        self._flooding: set[str] = set()
        self._bootstrap_retrying = False
        self._background = Background()
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on the server port, start raft (bootstrapping it in bootstrap mode), then
        the WAN pool. Raises StartError with the reason."""
        cfg = self.config
        await listen(
            self.mux.start(cfg.bind_addr, cfg.ports.server),
            f"{cfg.bind_addr}:{cfg.ports.server} (server RPC)",
        )
        self.raft.add_leadership_observer(self._on_leadership)
        self.raft.add_leadership_observer(self.endpoints.on_leadership)
        self.raft.add_leader_observer(self._on_leader)
        try:
            if cfg.bootstrap or cfg.bootstrap_expect == 1:
                # Before start(), so the log shows Consul's sequence (configuration, then Follower).
                await self.raft.bootstrap(
                    [ServerInfo(id=self.raft_id, address=self.address, suffrage="Voter")]
                )
            await self.raft.start()
        except RaftStoreError as exc:
            raise StartError(f"Error starting agent: {exc}") from None
        if cfg.bootstrap_expect > 1:
            self.bootstrapper = BootstrapExpect(
                datacenter=cfg.datacenter,
                expect=cfg.bootstrap_expect,
                raft=self.raft,
                make_server=lambda i, a, s: ServerInfo(id=i, address=a, suffrage=s),
                self_address=self.address,
                peers_of=lambda addr: self.pool.call(addr, "Status.Peers", {}, 5.0),
            )
            if self.raft.has_existing_state():
                log.info("Raft data found, disabling bootstrap mode")
                self.bootstrapper.done = True
        serf_dir = None if self._data_dir is None else self._data_dir / "serf"
        self.wan = GossipPool(
            name="wan",
            node_name=f"{cfg.node_name}.{cfg.datacenter}",
            bind_addr=cfg.bind_addr,
            bind_port=cfg.ports.serf_wan,
            advertise_addr=self._advertise_wan,
            advertise_port=cfg.ports.serf_wan,
            tags=self._wan_tags,
            profile=dataclasses.replace(
                Profile.local() if cfg.dev else Profile.wan(),
                reconnect_timeout=cfg.reconnect_timeout_wan,
            ),
            keyring=self._wan_keyring,
            snapshot_path=None if serf_dir is None else serf_dir / "remote.snapshot",
            merge_check=wan_merge_check(),
            on_event=self._on_wan_event,
            rejoin_after_leave=cfg.rejoin_after_leave,
        )
        await listen(self.wan.start(), f"{cfg.bind_addr}:{cfg.ports.serf_wan} (WAN gossip)")
        self._refresh_wan()

    async def stop(self) -> None:
        """Stop every part (without leaving); each step bounded."""
        if self._stopped:
            return
        self._stopped = True
        await stop_step("leader duties", self.leader_duties.stop())
        self.endpoints.on_leadership(False)
        await self._background.stop()
        if self.wan is not None:
            await stop_step("WAN gossip", self.wan.shutdown())
        await stop_step("raft", self.raft.stop())
        await stop_step("server port", self.mux.close())
        await stop_step("server RPC connection pool", self.pool.close())

    async def leave(self) -> None:
        """Leave as Consul's server does: a leader hands leadership over first, then the WAN
        pool is left (the agent leaves the LAN pool)."""
        log.info("server starting leave")
        await self.hand_off_leadership()
        if self.wan is not None:
            try:
                await asyncio.wait_for(self.wan.leave(), 10.0)
            except Exception as exc:
                logging.getLogger("agent").error("leave failed: %s", exc)

    async def hand_off_leadership(self, timeout: float = 5.0) -> None:
        """A leader about to stop hands leadership to a caught-up voter, so the datacenter
        does not wait out an election timeout."""
        if not self.raft.is_leader() or len(self.raft.configuration()) < 2:
            return
        try:
            await asyncio.wait_for(self.raft.transfer_leadership(), timeout)
        except Exception as exc:
            log.error("failed to transfer leadership: %s", exc or type(exc).__name__)

    # ------------------------------------------------------------------ requests

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        return await self.endpoints.handle(method, args)

    async def forward_leader(self, method: str, args: dict[str, Any]) -> Any:
        leader = self.raft.leader()
        if leader is None or not leader.address:
            raise RPCError("No cluster leader")
        try:
            return await self.pool.call(leader.address, method, args, rpc_timeout(args))
        except ConnectFailed as exc:
            self.pool.drop(leader.address)
            raise RPCError(f"{ERR_LEADER_UNREACHABLE}: {exc}") from None
        except (ConnectionError, OSError) as exc:
            self.pool.drop(leader.address)
            raise RPCError(
                f"rpc error: lost the connection to the leader at {leader.address}: {exc}"
            ) from None

    async def forward_dc(self, dc: str, method: str, args: dict[str, Any]) -> Any:
        servers = [addr for (d, addr) in self.wan_servers.values() if d == dc]
        if not servers:
            raise RPCError("No path to datacenter")
        random.shuffle(servers)
        last: Exception | None = None
        for addr in servers[:3]:
            try:
                return await self.pool.call(addr, method, args, rpc_timeout(args), datacenter=dc)
            except (ConnectionError, OSError) as exc:
                last = exc
                self.pool.drop(addr)
        raise RPCError(f"rpc error: failed to reach datacenter {dc}: {last}")

    def known_datacenters(self) -> list[str]:
        dcs = {d for (d, _) in self.wan_servers.values()}
        dcs.add(self.datacenter)
        return sorted(dcs)

    def _server_member(self, address: str, raft_id: str) -> Member | None:
        """The LAN member of raft server (`raft_id`, `address`): the one with that node ID
        (protocol 3), else the one at that address."""
        return server_member(self._lan_members(), address, raft_id)

    def server_name(self, address: str, raft_id: str = "") -> str | None:
        """The LAN member name of a raft server."""
        m = self._server_member(address, raft_id)
        return str(m.name) if m is not None else None

    def server_tags(self, address: str, raft_id: str = "") -> dict[str, str] | None:
        """The gossip tags of a raft server (its node ID, raft_vsn)."""
        m = self._server_member(address, raft_id)
        return dict(m.tags) if m is not None else None

    def wan_coordinates(self) -> list[dict[str, Any]]:
        """Coordinate.ListDatacenters: the WAN coordinates of the servers, by datacenter."""
        if self.wan is None:
            return []
        by_dc: dict[str, list[dict[str, Any]]] = {}
        for m in self.wan.members():
            parts = server_parts(m)
            if parts is None or m.status != "alive":
                continue
            coord = self.wan.cached_coordinate(m.name)
            if coord is not None:
                by_dc.setdefault(parts.datacenter, []).append(
                    {"Node": m.name, "Coord": coord.to_wire()}
                )
        return [{"Datacenter": dc, "Coordinates": c} for dc, c in sorted(by_dc.items())]

    def datacenters_by_distance(self) -> list[str]:
        """Every known datacenter, nearest first: by the median estimated RTT from this
        server's WAN coordinate to that datacenter's servers (Consul's
        GetDatacentersByDistance); ours is nearest, those without coordinates go last."""
        known = self.known_datacenters()
        if self.wan is None:
            return [self.datacenter, *(dc for dc in known if dc != self.datacenter)]
        origin = self.wan.coordinate()
        rtts: dict[str, list[float]] = {}
        for entry in self.wan_coordinates():
            for coord in parse_coordinates(entry["Coordinates"]).values():
                if coord.is_compatible_with(origin):
                    rtts.setdefault(entry["Datacenter"], []).append(origin.distance_to(coord))

        def median(dc: str) -> float:
            if dc == self.datacenter:
                return -1.0
            values = sorted(rtts.get(dc) or ())
            return values[len(values) // 2] if values else math.inf

        return sorted(known, key=lambda dc: (median(dc), dc))

    def stats(self) -> dict[str, dict[str, str]]:
        """The `consul`, `raft` and `serf_wan` sections of `senate info`."""
        leader = self.raft.leader()
        out = {
            "consul": {
                "bootstrap": str(self.config.bootstrap).lower(),
                "known_datacenters": str(len(self.known_datacenters())),
                "leader": str(self.raft.is_leader()).lower(),
                "leader_addr": leader.address if leader is not None else "",
                "server": "true",
            },
            "raft": dict(self.raft.stats()),
        }
        if self.wan is not None:
            out["serf_wan"] = dict(self.wan.stats())
        return out

    # ------------------------------------------------------------------ events

    def on_lan_change(self, members: list[Member]) -> None:
        """LAN membership changed: bootstrap may now find its peers, the leader reconciles
        the catalog, and new servers of our datacenter are joined to the WAN pool."""
        if self._stopped:
            return
        if self.bootstrapper is not None and not self.bootstrapper.done:
            self._background.spawn(self._bootstrap_check(), "bootstrap")
        if self.raft.is_leader():
            self.leader_duties.notify()
        self._flood_wan(members)

    def _on_wan_event(self, event: Any) -> None:
        if getattr(event, "type", None) is not None:
            asyncio.get_running_loop().call_soon(self._refresh_wan)

    def _refresh_wan(self) -> None:
        """Recompute the servers of every datacenter from WAN gossip, logging each change."""
        if self.wan is None or self._stopped:
            return
        wan = wan_servers(self.wan.members())
        for name, (dc, addr) in wan.items():
            if name not in self.wan_servers:
                log.info("Adding WAN server %s (Addr: tcp/%s) (DC: %s)", name, addr, dc)
        for name, (dc, addr) in self.wan_servers.items():
            if name not in wan:
                log.info("Removing WAN server %s (Addr: tcp/%s) (DC: %s)", name, addr, dc)
        self.wan_servers = wan
        self._flood_wan(self._lan_members())

    def _flood_wan(self, lan_members: list[Member]) -> None:
        """WAN-join the servers of our datacenter that gossip shows on the LAN but not on the
        WAN (Consul 0.8's flood joiner), so `members -wan` lists every server."""
        if self.wan is None or self._stopped:
            return
        on_wan = {m.name for m in self.wan.members() if m.status in ("alive", "leaving")}
        for m in lan_members:
            parts = server_parts(m)
            if parts is None or parts.datacenter != self.datacenter or m.status != "alive":
                continue
            wan_name = f"{m.name}.{self.datacenter}"
            port = m.tags.get(TAG_WAN_JOIN_PORT)
            if wan_name in on_wan or not port or wan_name in self._flooding:
                continue
            self._flooding.add(wan_name)
            self._background.spawn(self._flood_one(wan_name, f"{m.addr}:{port}"), "wan-flood")

    async def _flood_one(self, wan_name: str, addr: str) -> None:
        assert self.wan is not None
        try:
            await self.wan.join([addr])
        except Exception as exc:
            log.debug("error flood joining %s: %s", addr, exc)
        finally:
            self._flooding.discard(wan_name)

    async def _bootstrap_check(self) -> None:
        if self.bootstrapper is None:
            return
        try:
            await self.bootstrapper.maybe_bootstrap(self._lan_members())
        except Exception as exc:
            log.error("failed to bootstrap cluster: %s", exc)
            return
        if self.bootstrapper.retry and not self._stopped and not self._bootstrap_retrying:
            self._bootstrap_retrying = True
            try:
                await asyncio.sleep(BOOTSTRAP_RETRY)
            finally:
                self._bootstrap_retrying = False
            self._background.spawn(self._bootstrap_check(), "bootstrap")

    def _on_leadership(self, is_leader: bool) -> None:
        if self._stopped:
            return
        if is_leader:
            log.info("cluster leadership acquired")
            self.leader_duties.start()
        else:
            log.info("cluster leadership lost")
            self._background.spawn(self.leader_duties.stop(), "leader-stop")

    def _on_leader(self, leader: ServerInfo | None) -> None:
        """Log `New leader elected: <node>` whenever raft's leader changes (as Consul does)."""
        if leader is None or not leader.address:
            return
        name = self.server_name(leader.address, leader.id)
        log.info("New leader elected: %s", name or leader.address)
        if self._on_new_leader is not None:
            with contextlib.suppress(Exception):
                self._on_new_leader()
