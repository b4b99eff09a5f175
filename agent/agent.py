"""The agent: one process that is a Consul client or server, wired from its parts.

Every agent runs a LAN gossip pool, its local state with anti-entropy, the HTTP API and the CLI
RPC server. A server adds the server port (8300: raft and server RPC on one PortMux), a WAN
gossip pool, the raft node with the state machine and the RPC endpoints, bootstrap-expect and
the leader's duties. `Agent` implements `agent.api.AgentAPI` for the HTTP/CLI/DNS front ends.

Routing of `rpc()`: a server answers through its endpoints (which forward to the leader or to
another datacenter through `forward_leader` / `forward_dc` below); a client sends to one server
of its datacenter known from gossip (tag role=consul), rotating to another when that one cannot
be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import platform
import random
import re
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agent import codec
from agent.api import STATUS_NAMES, JoinError, RPCError
from agent.config import PROTOCOL_MAX, PROTOCOL_MIN, AgentConfig, resolve_advertise
from agent.dns.server import DNSServer, start_dns
from agent.local import rexec
from agent.local.logstream import LogHub
from agent.local.registry import LocalRegistry, RegistrationError
from agent.local.state import AntiEntropy, LocalState
from agent.mux import PortMux
from agent.server.leader import BootstrapExpect, LeaderDuties, server_parts
from agent.server.rpc import ConnectFailed, ConnPool, RPCServer

log = logging.getLogger("agent")
consul_log = logging.getLogger("consul")

VERSION = "0.7.2"
REVISION = "senate"
#: Consul's RPCHoldTimeout: how long a request waits out a leader election before failing.
RPC_HOLD_TIMEOUT = 5.0
#: Errors that mean the request was never executed: retried within the hold timeout.
ERR_NO_LEADER = "No cluster leader"
ERR_LEADER_UNREACHABLE = "rpc error: leader unreachable"
USER_EVENT_PREFIX = "consul:event:"
#: Each part gets this long to stop at shutdown before the agent moves on without it.
SHUTDOWN_STEP_TIMEOUT = 5.0
USER_EVENT_SIZE_LIMIT = 512
MAX_USER_EVENTS = 256
_STATUS_CODES = {v: k for k, v in STATUS_NAMES.items()}


class StartError(Exception):
    """The agent cannot start; the message says why (e.g. the data dir is in use)."""


class DataDirLock:
    """An exclusive flock on <data_dir>/senate.lock held for the agent's life."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "senate.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            finally:
                os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise StartError(
                f"Error starting agent: data directory {self.path.parent} is in use by another "
                f"agent{who}; each agent needs its own -data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _load_node_id(cfg: AgentConfig, data_dir: Path | None) -> str:
    if cfg.node_id:
        return cfg.node_id
    if data_dir is None:
        return str(uuid.uuid4())
    path = data_dir / "node-id"
    try:
        text = path.read_text().strip()
        uuid.UUID(text)
        return text
    except (OSError, ValueError):
        node_id = str(uuid.uuid4())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(node_id)
        os.replace(tmp, path)
        return node_id


def _coord_dict(coord: Any) -> dict[str, Any] | None:
    if coord is None:
        return None
    if isinstance(coord, dict):
        return coord
    to_dict = getattr(coord, "to_wire", None) or getattr(coord, "to_dict", None)
    if callable(to_dict):
        d = to_dict()
        return d if isinstance(d, dict) else None
    vec = getattr(coord, "vec", None)
    if vec is None:
        return None
    return {
        "Vec": list(vec),
        "Error": float(getattr(coord, "error", 0.0)),
        "Adjustment": float(getattr(coord, "adjustment", 0.0)),
        "Height": float(getattr(coord, "height", 0.0)),
    }


def rebalance_interval(servers: int, members: int) -> float:
    """How long a client keeps its server (Consul's router manager): at least 120 s plus up to
    60 s of stagger, and long enough that all `members` moving at once stay within 64 new
    connections per second per server."""
    low = 120.0 + random.random() * 60.0
    return max(low, members / (max(1, servers) * 64.0))


class Agent:
    """A running senate agent (implements agent.api.AgentAPI)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        log_hub: LogHub | None = None,
        reload_config: Callable[[], AgentConfig] | None = None,
    ) -> None:
        self.config = config
        self.node_name = config.node_name
        self.datacenter = config.datacenter
        self.is_server = config.server
        self.log_hub = log_hub
        self._reload_config = reload_config
        self.advertise = resolve_advertise(config)
        self.advertise_wan = config.advertise_addr_wan or self.advertise
        self.data_dir = None if config.dev else Path(config.data_dir)
        self.node_id = ""
        self._lock: DataDirLock | None = None
        self.pool = ConnPool()
        self.local = LocalState(
            node_name=config.node_name, check_update_interval=config.check_update_interval
        )
        self.registry = LocalRegistry(
            state=self.local,
            data_dir=self.data_dir,
            enable_script_checks=config.enable_script_checks,
        )
        self.anti_entropy: AntiEntropy | None = None
        self.lan: Any = None
        self.wan: Any = None
        self.raft: Any = None
        self.fsm: Any = None
        self.state: Any = None
        self.endpoints: Any = None
        self.mux: PortMux | None = None
        self.rpc_server: RPCServer | None = None
        self.bootstrapper: BootstrapExpect | None = None
        self.leader_duties: LeaderDuties | None = None
        self._http_runner: Any = None
        self._cli_rpc: Any = None
        self._dns: DNSServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client_server: str | None = None  # the server a client currently talks to
        self._client_server_until = 0.0  # monotonic time at which a client picks again
        self._lan_servers: dict[str, str] = {}  # name -> "ip:port" (servers of our dc)
        self._wan_servers: dict[str, tuple[str, str]] = {}  # "node.dc" -> (dc, "ip:port")
        self._flooding: set[str] = set()
        self._bootstrap_retrying = False
        self._sync_at_start = True
        self._keyrings: dict[bool, Any] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_USER_EVENTS)
        self._last_leader: str | None = None
        self.shutdown_requested = asyncio.Event()
        self._stopped = False
        self.started_at = time.monotonic()

    # ------------------------------------------------------------------------------------
    # start / stop
    # ------------------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _tags(self, wan: bool = False) -> dict[str, str]:
        cfg = self.config
        tags = {
            "role": "consul" if cfg.server else "node",
            "dc": cfg.datacenter,
            "id": self.node_id,
            "vsn": str(cfg.protocol),
            "vsn_min": str(PROTOCOL_MIN - 1),
            "vsn_max": str(PROTOCOL_MAX),
            "build": f"{VERSION}:{REVISION}",
        }
        if cfg.server:
            tags["port"] = str(cfg.ports.server)
            tags["raft_vsn"] = "1"
            tags["wan_join_port"] = str(cfg.ports.serf_wan)
            if cfg.bootstrap:
                tags["bootstrap"] = "1"
            if cfg.bootstrap_expect:
                tags["expect"] = str(cfg.bootstrap_expect)
        return tags

    async def start(self, *, sync: bool = True) -> None:
        """Start every part. With sync=False anti-entropy waits for `start_sync()` (the
        command starts it after the startup join, as Consul does)."""
        self._sync_at_start = sync
        cfg = self.config
        if self.data_dir is not None:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartError(
                    f"Error starting agent: cannot create data directory {self.data_dir}: {exc.strerror}"
                ) from None
            self._lock = DataDirLock(self.data_dir)
            self._lock.acquire()
        self.node_id = _load_node_id(cfg, self.data_dir)
        try:
            await self._start_parts()
        except BaseException:
            await self.shutdown()
            raise

    async def _start_parts(self) -> None:
        cfg = self.config
        from agent.gossip.config import Profile
        from agent.gossip.consul import lan_merge_check, wan_merge_check
        from agent.gossip.runner import GossipPool

        self._keyrings = {False: self._make_keyring(False)}
        if cfg.server:
            self._keyrings[True] = self._make_keyring(True)
        profile = Profile.local() if cfg.dev else Profile.lan()
        profile = dataclasses.replace(profile, reconnect_timeout=cfg.reconnect_timeout)
        serf_dir = None if self.data_dir is None else self.data_dir / "serf"
        if serf_dir is not None:
            serf_dir.mkdir(exist_ok=True)
        if cfg.server:
            await self._start_server()
        self.lan = GossipPool(
            name="lan",
            node_name=cfg.node_name,
            bind_addr=cfg.bind_addr,
            bind_port=cfg.ports.serf_lan,
            advertise_addr=self.advertise,
            advertise_port=cfg.ports.serf_lan,
            tags=self._tags(),
            profile=profile,
            keyring=self._keyrings[False],
            snapshot_path=None if serf_dir is None else serf_dir / "local.snapshot",
            merge_check=lan_merge_check(cfg.datacenter),
            on_event=self._on_lan_event,
            rejoin_after_leave=cfg.rejoin_after_leave,
        )
        await self._listen(self.lan.start(), f"{cfg.bind_addr}:{cfg.ports.serf_lan} (LAN gossip)")
        self._refresh_servers()
        if cfg.server:
            self.wan = GossipPool(
                name="wan",
                node_name=f"{cfg.node_name}.{cfg.datacenter}",
                bind_addr=cfg.bind_addr,
                bind_port=cfg.ports.serf_wan,
                advertise_addr=self.advertise_wan,
                advertise_port=cfg.ports.serf_wan,
                tags=self._tags(wan=True),
                profile=dataclasses.replace(
                    Profile.local() if cfg.dev else Profile.wan(),
                    reconnect_timeout=cfg.reconnect_timeout_wan,
                ),
                keyring=self._keyrings[True],
                snapshot_path=None if serf_dir is None else serf_dir / "remote.snapshot",
                merge_check=wan_merge_check(),
                on_event=self._on_wan_event,
                rejoin_after_leave=cfg.rejoin_after_leave,
            )
            await self._listen(
                self.wan.start(), f"{cfg.bind_addr}:{cfg.ports.serf_wan} (WAN gossip)"
            )
            # Our own members are known before any event arrives.
            self._refresh_servers()
            if self.bootstrapper is not None:
                self._spawn(self._bootstrap_check(), "bootstrap")
            self._spawn(self._watch_leader(), "leader-watch")
        # Local state: the consul service on servers, then config services and checks.
        if cfg.server:
            self.local.add_service(
                {
                    "ID": "consul",
                    "Service": "consul",
                    "Tags": [],
                    "Address": "",
                    "Port": cfg.ports.server,
                    "Meta": {},
                    "EnableTagOverride": False,
                }
            )
        # Config files first, then what the HTTP API registered before a restart; checks run.
        try:
            self.registry.load_config(cfg.services, cfg.checks)
        except RegistrationError as exc:
            raise StartError(f"Error starting agent: {exc.message}") from None
        self.registry.load_persisted()
        self.registry.start()
        self.anti_entropy = AntiEntropy(
            state=self.local,
            rpc=self.rpc,
            datacenter=cfg.datacenter,
            node_id=self.node_id,
            address=lambda: self.advertise,
            tagged_addresses=lambda: {"lan": self.advertise, "wan": self.advertise_wan},
            node_meta=dict(cfg.node_meta),
        )
        if self._sync_at_start:
            self.anti_entropy.start()
        self._spawn(self._coordinate_loop(), "coordinates")
        await self._start_frontends()

    def start_sync(self) -> None:
        """Begin anti-entropy (if start() was told to wait)."""
        if self.anti_entropy is not None and not self.anti_entropy.running:
            self.anti_entropy.start()

    @property
    def gossip_encrypted(self) -> bool:
        return self._keyrings.get(False) is not None

    @staticmethod
    async def _listen(start: Any, what: str) -> None:
        try:
            await start
        except OSError as exc:
            reason = exc.strerror or str(exc.__cause__ or exc)
            raise StartError(f"Error starting agent: cannot listen on {what}: {reason}") from None

    def _keyring_path(self, wan: bool) -> Path | None:
        if self.data_dir is None:
            return None
        return self.data_dir / "serf" / ("remote.keyring" if wan else "local.keyring")

    def _make_keyring(self, wan: bool = False) -> Any:
        """The gossip keyring: from <data_dir>/serf/*.keyring when present (it outlives
        -encrypt, as keys may have been rotated since), else from -encrypt, persisted."""
        import base64
        import binascii
        import json

        from agent.gossip.keyring import Keyring

        path = self._keyring_path(wan)
        if path is not None and path.exists():
            try:
                keys = json.loads(path.read_text())
                if (
                    not isinstance(keys, list)
                    or not keys
                    or not all(isinstance(k, str) for k in keys)
                ):
                    raise ValueError("expected a JSON list of base64 keys")
                ring = Keyring([base64.b64decode(k, validate=True) for k in keys])
            except (OSError, ValueError, binascii.Error) as exc:
                raise StartError(f"Error starting agent: bad keyring file {path}: {exc}") from None
            if self.config.encrypt:
                log.warning("loaded keyring from file; ignoring -encrypt (%s)", path)
            return ring
        if not self.config.encrypt:
            return None
        key = base64.b64decode(self.config.encrypt)
        ring = Keyring([key], key)
        self._persist_keyring(ring, wan)
        return ring

    def _persist_keyring(self, ring: Any, wan: bool) -> None:
        import base64
        import json

        path = self._keyring_path(wan)
        if path is None or ring is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        primary = ring.primary
        keys = [primary] + [k for k in ring.list_keys() if k != primary]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([base64.b64encode(k).decode() for k in keys]))
        os.replace(tmp, path)

    async def _start_server(self) -> None:
        cfg = self.config
        from agent.raft.config import RaftConfig
        from agent.raft.log_store import RaftStoreError
        from agent.raft.runner import RaftNode, ServerInfo
        from agent.server.endpoints import Endpoints
        from agent.state.fsm import StateFSM
        from agent.state.store import StateStore

        self.mux = PortMux()
        self.state = StateStore()
        self.fsm = StateFSM(self.state)
        raft_cfg = (
            RaftConfig.dev()
            if cfg.dev
            else RaftConfig.for_multiplier(cfg.effective_raft_multiplier)
        )
        server_addr = f"{self.advertise}:{cfg.ports.server}"
        self.raft = RaftNode(
            node_id=server_addr,
            address=server_addr,
            data_dir=self.data_dir,
            fsm=self.fsm,
            mux=self.mux,
            config=raft_cfg,
        )
        self.endpoints = Endpoints(
            datacenter=cfg.datacenter,
            state=self.state,
            raft=self.raft,
            forward_leader=self.forward_leader,
            forward_dc=self.forward_dc,
            known_datacenters=self.known_datacenters,
            wan_coordinates=self._wan_coordinates,
            server_name=self._server_name,
        )
        self.rpc_server = RPCServer(self.mux, self.endpoints.handle)
        await self._listen(
            self.mux.start(cfg.bind_addr, cfg.ports.server),
            f"{cfg.bind_addr}:{cfg.ports.server} (server RPC)",
        )
        self.leader_duties = LeaderDuties(
            node_name=cfg.node_name,
            datacenter=cfg.datacenter,
            raft=self.raft,
            handle=self.endpoints.handle,
            lan_members=lambda: self.lan.members() if self.lan is not None else [],
        )
        self.raft.add_leadership_observer(self._on_leadership)
        self.raft.add_leadership_observer(self.endpoints.on_leadership)
        try:
            if cfg.bootstrap or cfg.bootstrap_expect == 1:
                # Before start(), so the log shows Consul's sequence (configuration, then Follower).
                await self.raft.bootstrap(
                    [ServerInfo(id=server_addr, address=server_addr, suffrage="Voter")]
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
                self_address=server_addr,
                peers_of=lambda addr: self.pool.call(addr, "Status.Peers", {}, 5.0),
            )
            if self.raft.has_existing_state():
                consul_log.info("Raft data found, disabling bootstrap mode")
                self.bootstrapper.done = True

    async def _start_frontends(self) -> None:
        cfg = self.config
        try:
            from aiohttp import web

            from agent.http.app import make_app
        except ImportError as exc:
            log.warning("HTTP API not available in this build: %s", exc)
        else:
            if cfg.ports.http > 0:
                runner = web.AppRunner(make_app(self), access_log=None, handle_signals=False)
                await runner.setup()
                self._http_runner = runner
                for host in cfg.http_addr.split():
                    site = web.TCPSite(runner, host, cfg.ports.http, reuse_address=True)
                    await self._listen(site.start(), f"{host}:{cfg.ports.http} (HTTP)")
        try:
            from agent.rpc_cli import CLIRPCServer
        except ImportError as exc:
            log.warning("CLI RPC not available in this build: %s", exc)
        else:
            if cfg.ports.rpc > 0:
                self._cli_rpc = CLIRPCServer(self)
                host = cfg.rpc_addr.split()[0]
                await self._listen(
                    self._cli_rpc.start(host, cfg.ports.rpc), f"{host}:{cfg.ports.rpc} (RPC)"
                )
        if cfg.ports.dns > 0:
            try:
                self._dns = await start_dns(self, cfg)
            except OSError as exc:
                log.error("DNS server failed to start: %s", exc)

    async def _stop_step(
        self, what: str, stop: Any, timeout: float = SHUTDOWN_STEP_TIMEOUT
    ) -> None:
        """Run one shutdown step, bounded: a part that does not stop is named, not waited on."""
        try:
            await asyncio.wait_for(stop, timeout)
        except TimeoutError:
            log.error("shutdown: %s did not stop within %gs, continuing", what, timeout)
        except Exception as exc:
            log.error("shutdown: stopping %s failed: %s", what, exc)

    async def shutdown(self) -> None:
        """Stop everything (without leaving the cluster); safe to call twice. Every step is
        bounded, so the process always exits."""
        if self._stopped:
            return
        self._stopped = True
        log.info("requesting shutdown")
        if self.anti_entropy is not None:
            await self._stop_step("anti-entropy", self.anti_entropy.stop())
        await self._stop_step("checks", self.registry.stop())
        if self.leader_duties is not None:
            await self._stop_step("leader duties", self.leader_duties.stop())
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await self._stop_step("background tasks", asyncio.wait(tasks))
        if self._cli_rpc is not None:
            await self._stop_step("CLI RPC", self._cli_rpc.stop())
        if self._dns is not None:
            await self._stop_step("DNS", self._dns.stop())
        if self._http_runner is not None:
            await self._stop_step("HTTP", self._http_runner.cleanup())
        for name, pool in (("WAN gossip", self.wan), ("LAN gossip", self.lan)):
            if pool is not None:
                await self._stop_step(name, pool.shutdown())
        if self.raft is not None:
            await self._stop_step("raft", self.raft.stop())
        if self.mux is not None:
            await self._stop_step("server port", self.mux.close())
        await self._stop_step("RPC connection pool", self.pool.close())
        if self._lock is not None:
            self._lock.release()
        log.info("shutdown complete")

    async def hand_off_leadership(self, timeout: float = 5.0) -> None:
        """A leader about to stop hands leadership to a caught-up voter, so the datacenter
        does not wait out an election timeout."""
        if self.raft is None or not self.raft.is_leader() or len(self.raft.configuration()) < 2:
            return
        try:
            await asyncio.wait_for(self.raft.transfer_leadership(), timeout)
        except Exception as exc:
            consul_log.error("failed to transfer leadership: %s", exc or type(exc).__name__)

    async def graceful_leave(self) -> None:
        """Leave the cluster as Consul does: a leader hands leadership over first."""
        if self.raft is not None:
            consul_log.info("server starting leave")
            await self.hand_off_leadership()
        for pool in (self.wan, self.lan):
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.leave(), 10.0)
                except Exception as exc:
                    log.error("leave failed: %s", exc)

    # ------------------------------------------------------------------------------------
    # gossip events
    # ------------------------------------------------------------------------------------

    def _refresh_servers(self) -> None:
        """Recompute the known servers from gossip, logging each one added or removed."""
        if self.lan is not None:
            servers: dict[str, str] = {}
            for m in self.lan.members():
                parts = server_parts(m)
                if (
                    parts is not None
                    and parts.datacenter == self.datacenter
                    and m.status == "alive"
                ):
                    servers[m.name] = parts.address
            add_word, rm_word = (
                ("Adding LAN server", "Removing LAN server")
                if self.is_server
                else ("adding server", "removing server")
            )
            for name, addr in servers.items():
                if name not in self._lan_servers:
                    consul_log.info(
                        "%s %s (Addr: tcp/%s) (DC: %s)", add_word, name, addr, self.datacenter
                    )
            for name, addr in self._lan_servers.items():
                if name not in servers:
                    consul_log.info(
                        "%s %s (Addr: tcp/%s) (DC: %s)", rm_word, name, addr, self.datacenter
                    )
            had_none = not self._lan_servers
            self._lan_servers = servers
            if had_none and servers and self.anti_entropy is not None:
                self.anti_entropy.trigger()
        if self.wan is not None:
            wan: dict[str, tuple[str, str]] = {}
            for m in self.wan.members():
                parts = server_parts(m)
                if parts is not None and m.status == "alive":
                    wan[m.name] = (parts.datacenter, parts.address)
            for name, (dc, addr) in wan.items():
                if name not in self._wan_servers:
                    consul_log.info("Adding WAN server %s (Addr: tcp/%s) (DC: %s)", name, addr, dc)
            for name, (dc, addr) in self._wan_servers.items():
                if name not in wan:
                    consul_log.info(
                        "Removing WAN server %s (Addr: tcp/%s) (DC: %s)", name, addr, dc
                    )
            self._wan_servers = wan
            self._flood_wan()

    def _flood_wan(self) -> None:
        """WAN-join the servers of our datacenter that gossip shows on the LAN but not on the
        WAN (Consul 0.8's flood joiner), so `members -wan` lists every server."""
        if self.wan is None or self.lan is None or self._stopped:
            return
        on_wan = {m.name for m in self.wan.members() if m.status in ("alive", "leaving")}
        for m in self.lan.members():
            parts = server_parts(m)
            if parts is None or parts.datacenter != self.datacenter or m.status != "alive":
                continue
            wan_name = f"{m.name}.{self.datacenter}"
            port = m.tags.get("wan_join_port")
            if wan_name in on_wan or not port or wan_name in self._flooding:
                continue
            self._flooding.add(wan_name)
            self._spawn(self._flood_one(wan_name, f"{m.addr}:{port}"), "wan-flood")

    async def _flood_one(self, wan_name: str, addr: str) -> None:
        try:
            await self.wan.join([addr])
        except Exception as exc:
            consul_log.debug("error flood joining %s: %s", addr, exc)
        finally:
            self._flooding.discard(wan_name)

    def _on_lan_event(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind is None:
            if hasattr(event, "respond"):
                return  # queries arrive with later issues (exec, ping)
            if hasattr(event, "payload") and hasattr(event, "ltime"):
                self._on_user_event(event)
            return
        # Handled on the next loop turn: gossip calls us from inside its own processing, and
        # Consul logs serf's lines before the ones they cause.
        asyncio.get_running_loop().call_soon(self._after_lan_change)

    def _after_lan_change(self) -> None:
        if self._stopped:
            return
        self._refresh_servers()
        if self.bootstrapper is not None and not self.bootstrapper.done:
            self._spawn(self._bootstrap_check(), "bootstrap")
        if self.leader_duties is not None and self.raft is not None and self.raft.is_leader():
            self.leader_duties.notify()

    def _on_wan_event(self, event: Any) -> None:
        if getattr(event, "type", None) is not None:
            asyncio.get_running_loop().call_soon(self._refresh_servers)

    async def _bootstrap_check(self) -> None:
        if self.bootstrapper is None or self.lan is None:
            return
        try:
            await self.bootstrapper.maybe_bootstrap(self.lan.members())
        except Exception as exc:
            consul_log.error("failed to bootstrap cluster: %s", exc)
            return
        if self.bootstrapper.retry and not self._stopped and not self._bootstrap_retrying:
            self._bootstrap_retrying = True
            try:
                await asyncio.sleep(1.0)
            finally:
                self._bootstrap_retrying = False
            self._spawn(self._bootstrap_check(), "bootstrap")

    def _on_leadership(self, is_leader: bool) -> None:
        if self.leader_duties is None:
            return
        if is_leader:
            consul_log.info("cluster leadership acquired")
            self.leader_duties.start()
        else:
            consul_log.info("cluster leadership lost")
            self._spawn(self.leader_duties.stop(), "leader-stop")

    async def _watch_leader(self) -> None:
        """Log `New leader elected: <node>` whenever raft's leader changes (as Consul does)."""
        while True:
            await asyncio.sleep(0.1)
            if self.raft is None:
                continue
            leader = self.raft.leader()
            addr = getattr(leader, "address", None) if leader is not None else None
            if addr != self._last_leader:
                self._last_leader = addr
                if addr:
                    name = next((n for n, a in self._lan_servers.items() if a == addr), addr)
                    consul_log.info("New leader elected: %s", name)
                    if self.anti_entropy is not None:
                        self.anti_entropy.trigger()

    def _on_user_event(self, event: Any) -> None:
        name: str = event.name
        if not name.startswith(USER_EVENT_PREFIX):
            return
        try:
            body = codec.unpackb(event.payload)
        except codec.FrameError:
            log.warning("failed to decode event: malformed payload")
            return
        if not isinstance(body, dict):
            return
        if not self._event_matches(body):
            return
        record = {
            "ID": str(body.get("ID", "")),
            "Name": str(body.get("Name", name[len(USER_EVENT_PREFIX) :])),
            "Payload": body.get("Payload"),
            "NodeFilter": str(body.get("NodeFilter", "")),
            "ServiceFilter": str(body.get("ServiceFilter", "")),
            "TagFilter": str(body.get("TagFilter", "")),
            "Version": int(body.get("Version", 1)),
            "LTime": int(event.ltime),
        }
        if any(e["ID"] == record["ID"] for e in self._events):
            return
        log.debug("new event: %s (%s)", record["Name"], record["ID"])
        self._events.append(record)
        if record["Name"] == rexec.EVENT_NAME:
            self._remote_exec(record)

    def _remote_exec(self, record: dict[str, Any]) -> None:
        if dict(self.config.passthrough).get("disable_remote_exec") == "true":
            log.info("ignoring remote exec event (%s), disabled.", record["ID"])
            return
        payload = record["Payload"] if isinstance(record["Payload"], bytes) else b""
        self._spawn(
            rexec.handle_remote_exec(self.rpc, self.node_name, self.datacenter, payload), "rexec"
        )

    def _event_matches(self, body: dict[str, Any]) -> bool:
        try:
            nf = str(body.get("NodeFilter") or "")
            if nf and not re.search(nf, self.node_name):
                return False
            sf = str(body.get("ServiceFilter") or "")
            if sf:
                tf = str(body.get("TagFilter") or "")
                for svc in self.local.services.values():
                    if re.search(sf, svc["Service"]) and (
                        not tf or any(re.search(tf, t) for t in svc.get("Tags") or [])
                    ):
                        return True
                return False
        except re.error:
            return False
        return True

    async def _coordinate_loop(self) -> None:
        """Send our LAN coordinate to the servers now and then (Consul: every ~15 s)."""
        await asyncio.sleep(2.0 + random.random())
        while True:
            try:
                coord = _coord_dict(self.lan.coordinate()) if self.lan is not None else None
                if (
                    coord is not None
                    and self.anti_entropy is not None
                    and self.anti_entropy.synced_once.is_set()
                ):
                    await self.rpc(
                        "Coordinate.Update",
                        {"Datacenter": self.datacenter, "Node": self.node_name, "Coord": coord},
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("coordinate update failed: %s", exc)
            await asyncio.sleep(10.0 + random.random() * 5.0)

    # ------------------------------------------------------------------------------------
    # server RPC routing
    # ------------------------------------------------------------------------------------

    @staticmethod
    def _rpc_timeout(args: dict[str, Any]) -> float:
        wait = args.get("MaxQueryTime")
        if isinstance(wait, int | float) and wait > 0:
            return min(float(wait), 600.0) * 1.07 + 10.0
        return 30.0 if not args.get("MinQueryIndex") else 330.0

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        deadline = time.monotonic() + RPC_HOLD_TIMEOUT
        while True:
            try:
                if self.endpoints is not None:
                    return await self.endpoints.handle(method, args)
                return await self._client_rpc(method, args)
            except RPCError as exc:
                # Wait out a leader election, as Consul's RPCHoldTimeout does.
                msg = str(exc)
                retry = msg == ERR_NO_LEADER or msg.startswith(ERR_LEADER_UNREACHABLE)
                if not retry or time.monotonic() >= deadline or self._stopped:
                    raise
                await asyncio.sleep(0.1 + random.random() * 0.1)

    async def _client_rpc(self, method: str, args: dict[str, Any]) -> Any:
        servers = list(self._lan_servers.values())
        if not servers:
            raise RPCError("No known Consul servers")
        now = time.monotonic()
        if self._client_server not in servers or now >= self._client_server_until:
            # Consul's router rebalances: a client moves to a random server every 2-3 minutes
            # (longer in big clusters), so clients that failed over during a server's restart
            # spread out again.
            rebalance = self._client_server is not None
            self._client_server = random.choice(servers)
            self._client_server_until = now + rebalance_interval(
                len(servers), len(self.lan.members()) if self.lan is not None else 1
            )
            if rebalance:
                consul_log.debug(
                    "manager: Rebalanced %d servers, next active server is %s",
                    len(servers),
                    self._client_server,
                )
        tried: list[str] = []
        last: Exception | None = None
        for _ in range(min(3, len(servers))):
            addr = self._client_server
            assert addr is not None
            tried.append(addr)
            try:
                return await self.pool.call(addr, method, args, self._rpc_timeout(args))
            except (ConnectionError, OSError) as exc:
                last = exc
                self.pool.drop(addr)
                rest = [s for s in servers if s not in tried]
                if not rest:
                    break
                consul_log.warning("RPC to %s failed (%s), rotating to another server", addr, exc)
                self._client_server = random.choice(rest)
        raise RPCError(f"rpc error: failed to reach a server: {last}")

    async def forward_leader(self, method: str, args: dict[str, Any]) -> Any:
        leader = self.raft.leader() if self.raft is not None else None
        if leader is None or not getattr(leader, "address", ""):
            raise RPCError("No cluster leader")
        try:
            return await self.pool.call(leader.address, method, args, self._rpc_timeout(args))
        except ConnectFailed as exc:
            self.pool.drop(leader.address)
            raise RPCError(f"{ERR_LEADER_UNREACHABLE}: {exc}") from None
        except (ConnectionError, OSError) as exc:
            self.pool.drop(leader.address)
            raise RPCError(
                f"rpc error: lost the connection to the leader at {leader.address}: {exc}"
            ) from None

    async def forward_dc(self, dc: str, method: str, args: dict[str, Any]) -> Any:
        servers = [addr for (d, addr) in self._wan_servers.values() if d == dc]
        if not servers:
            raise RPCError("No path to datacenter")
        random.shuffle(servers)
        last: Exception | None = None
        for addr in servers[:3]:
            try:
                return await self.pool.call(addr, method, args, self._rpc_timeout(args))
            except (ConnectionError, OSError) as exc:
                last = exc
                self.pool.drop(addr)
        raise RPCError(f"rpc error: failed to reach datacenter {dc}: {last}")

    def _server_name(self, address: str) -> str | None:
        for m in self.lan.members() if self.lan is not None else []:
            parts = server_parts(m)
            if parts is not None and parts.address == address:
                return str(m.name)
        return None

    def _wan_coordinates(self) -> list[dict[str, Any]]:
        if self.wan is None:
            return []
        by_dc: dict[str, list[dict[str, Any]]] = {}
        for m in self.wan.members():
            parts = server_parts(m)
            if parts is None or m.status != "alive":
                continue
            coord = None
            with contextlib.suppress(Exception):
                coord = _coord_dict(self.wan.cached_coordinate(m.name))
            if coord is not None:
                by_dc.setdefault(parts.datacenter, []).append({"Node": m.name, "Coord": coord})
        return [{"Datacenter": dc, "Coordinates": c} for dc, c in sorted(by_dc.items())]

    def known_datacenters(self) -> list[str]:
        dcs = {d for (d, _) in self._wan_servers.values()}
        dcs.add(self.datacenter)
        return sorted(dcs)

    # ------------------------------------------------------------------------------------
    # AgentAPI
    # ------------------------------------------------------------------------------------

    @staticmethod
    def _member_dict(m: Any) -> dict[str, Any]:
        return {
            "Name": m.name,
            "Addr": m.addr,
            "Port": m.port,
            "Tags": dict(m.tags),
            "Status": _STATUS_CODES.get(m.status, 0),
            "ProtocolMin": m.protocol_min,
            "ProtocolMax": m.protocol_max,
            "ProtocolCur": m.protocol_cur,
            "DelegateMin": m.delegate_min,
            "DelegateMax": m.delegate_max,
            "DelegateCur": m.delegate_cur,
        }

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        pool = self.wan if wan else self.lan
        if pool is None:
            return []
        return [self._member_dict(m) for m in pool.members()]

    async def join(self, addrs: list[str], wan: bool = False) -> int:
        pool = self.wan if wan else self.lan
        which = "WAN" if wan else "LAN"
        if pool is None:
            raise JoinError("Must be a server to join WAN cluster")
        log.info("(%s) joining: %s", which, "[" + " ".join(addrs) + "]")
        try:
            n = int(await pool.join(addrs))
        except Exception as exc:
            log.info("(%s) joined: 0 Err: %s", which, exc)
            raise JoinError(str(exc)) from None
        log.info("(%s) joined: %d Err: <nil>", which, n)
        self._refresh_servers()
        if self.anti_entropy is not None:
            self.anti_entropy.trigger()
        return n

    async def leave(self) -> None:
        await self.graceful_leave()
        self.shutdown_requested.set()

    async def force_leave(self, node: str) -> None:
        log.info("Force leaving node: %s", node)
        self.lan.force_leave(node)
        if self.wan is not None:
            self.wan.force_leave(f"{node}.{self.datacenter}" if "." not in node else node)

    def stats(self) -> dict[str, dict[str, str]]:
        checks = list(self.local.checks.values())
        runners = self.registry.stats()
        out: dict[str, dict[str, str]] = {
            "agent": {
                "check_monitors": str(runners["check_monitors"]),
                "check_ttls": str(runners["check_ttls"]),
                "checks": str(len(checks)),
                "services": str(len(self.local.services)),
            },
            "build": {"prerelease": "", "revision": REVISION, "version": VERSION},
        }
        if self.is_server and self.raft is not None:
            leader = self.raft.leader()
            out["consul"] = {
                "bootstrap": str(self.config.bootstrap).lower(),
                "known_datacenters": str(len(self.known_datacenters())),
                "leader": str(self.raft.is_leader()).lower(),
                "leader_addr": getattr(leader, "address", "") if leader is not None else "",
                "server": "true",
            }
            out["raft"] = dict(self.raft.stats())
        else:
            out["consul"] = {"known_servers": str(len(self._lan_servers)), "server": "false"}
        if self.lan is not None:
            out["serf_lan"] = dict(self.lan.stats())
        if self.wan is not None:
            out["serf_wan"] = dict(self.wan.stats())
        out["runtime"] = {
            "arch": platform.machine(),
            "cpu_count": str(os.cpu_count() or 1),
            "goroutines": str(len(asyncio.all_tasks())),
            "max_procs": str(os.cpu_count() or 1),
            "os": sys.platform,
            "version": f"python{platform.python_version()}",
        }
        return out

    def self_info(self) -> dict[str, Any]:
        cfg = self.config
        p = cfg.ports
        config = {
            "Bootstrap": cfg.bootstrap,
            "BootstrapExpect": cfg.bootstrap_expect,
            "Server": cfg.server,
            "Datacenter": cfg.datacenter,
            "DataDir": cfg.data_dir,
            "DNSRecursor": cfg.recursors[0] if cfg.recursors else "",
            "DNSRecursors": list(cfg.recursors),
            "Domain": cfg.domain,
            "LogLevel": cfg.log_level,
            "NodeID": self.node_id,
            "NodeName": cfg.node_name,
            "ClientAddr": cfg.client_addr,
            "BindAddr": cfg.bind_addr,
            "AdvertiseAddr": self.advertise,
            "AdvertiseAddrWan": self.advertise_wan,
            "Ports": {
                "DNS": p.dns,
                "HTTP": p.http,
                "HTTPS": p.https,
                "RPC": p.rpc,
                "SerfLan": p.serf_lan,
                "SerfWan": p.serf_wan,
                "Server": p.server,
            },
            "Addresses": {
                "HTTP": cfg.addresses.http,
                "DNS": cfg.addresses.dns,
                "RPC": cfg.addresses.rpc,
            },
            "LeaveOnTerm": cfg.leave_on_term,
            "SkipLeaveOnInt": cfg.skip_leave_on_int,
            "StartJoin": list(cfg.start_join),
            "StartJoinWan": list(cfg.start_join_wan),
            "RetryJoin": list(cfg.retry_join),
            "RetryJoinWan": list(cfg.retry_join_wan),
            "RejoinAfterLeave": cfg.rejoin_after_leave,
            "Protocol": cfg.protocol,
            "DevMode": cfg.dev,
            "EnableDebug": False,
            "Version": VERSION,
            "Revision": REVISION,
            "VersionPrerelease": "",
            "NodeMeta": dict(cfg.node_meta),
            "Performance": {"RaftMultiplier": cfg.effective_raft_multiplier},
            "EncryptKey": "",
        }
        coord = None
        member: dict[str, Any] = {}
        if self.lan is not None:
            with contextlib.suppress(Exception):
                coord = _coord_dict(self.lan.coordinate())
            member = self._member_dict(self.lan.local_member())
        return {"Config": config, "Coord": coord, "Member": member}

    async def reload(self) -> None:
        log.info("Reloading configuration...")
        if self._reload_config is None:
            return
        new = self._reload_config()
        self.registry.enable_script_checks = new.enable_script_checks
        try:
            self.registry.load_config(new.services, new.checks)
        except RegistrationError as exc:
            raise RPCError(f"Failed reloading services: {exc.message}") from None
        self.config = new

    def local_services(self) -> dict[str, dict[str, Any]]:
        """/v1/agent/services: the services this agent registered, by ID."""
        return {sid: dict(svc) for sid, svc in self.local.services.items()}

    def local_checks(self) -> dict[str, dict[str, Any]]:
        """/v1/agent/checks: this agent's checks with their latest results, by CheckID."""
        return {cid: dict(chk) for cid, chk in self.local.checks.items()}

    async def log_stream(self, level: str) -> AsyncIterator[str]:
        if self.log_hub is None:
            return
        async for line in self.log_hub.stream_lines(level):
            yield line

    async def keyring(self, op: str, key: str | None = None) -> list[dict[str, Any]]:
        if op not in ("list", "install", "use", "remove"):
            raise RPCError(f"unknown keyring operation {op!r}")
        out: list[dict[str, Any]] = []
        for wan, pool in ((True, self.wan), (False, self.lan)):
            if pool is None:
                continue
            resp = await pool.keyring_op(op, key)
            if op != "list":
                self._persist_keyring(self._keyrings.get(wan), wan)
            if isinstance(resp, dict):
                item = dict(resp)
            else:
                item = {
                    "Keys": dict(getattr(resp, "keys", {}) or {}),
                    "NumNodes": int(getattr(resp, "num_nodes", 0)),
                    "Messages": dict(getattr(resp, "messages", {}) or {}),
                }
                err = getattr(resp, "error", "")
                if err:
                    raise RPCError(str(err))
            item.update(WAN=wan, Datacenter="" if wan else self.datacenter)
            out.append(item)
        return out

    async def fire_event(
        self,
        name: str,
        payload: bytes,
        node_filter: str = "",
        service_filter: str = "",
        tag_filter: str = "",
    ) -> dict[str, Any]:
        if not name:
            raise RPCError("User event missing name")
        for what, pattern in (
            ("node", node_filter),
            ("service", service_filter),
            ("tag", tag_filter),
        ):
            if pattern:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise RPCError(f"Invalid {what} filter: {exc}") from None
        event = {
            "ID": str(uuid.uuid4()),
            "Name": name,
            "Payload": payload or None,
            "NodeFilter": node_filter,
            "ServiceFilter": service_filter,
            "TagFilter": tag_filter,
            "Version": 1,
            "LTime": 0,
        }
        body = codec.packb(event)
        if len(body) + len(USER_EVENT_PREFIX) + len(name) > USER_EVENT_SIZE_LIMIT:
            raise RPCError(f"user event exceeds limit of {USER_EVENT_SIZE_LIMIT} bytes")
        self.lan.user_event(USER_EVENT_PREFIX + name, body, False)
        return event

    def user_events(self) -> list[dict[str, Any]]:
        return list(self._events)
