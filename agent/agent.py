"""The agent: one process that is a Consul client or server (Consul's agent.Agent).

Every agent runs a LAN gossip pool, its own services and checks with anti-entropy, user
events and remote exec, the front ends (HTTP, DNS, CLI RPC) and the one `AgentAPI` they call.
A server agent adds a `Server` (agent/server/server.py: state, raft, RPC endpoints, WAN pool,
leader duties); a client agent sends its requests to a server of its datacenter chosen by
its `ServerRouter` (agent/router.py).
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
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from agent.acl.resolver import Access
from agent.acl.tokens import TokenStore
from agent.api import STATUS_NAMES
from agent.config import AgentConfig, resolve_advertise
from agent.dns.server import DNSServer, start_dns
from agent.errors import AgentError, JoinError, RPCError, StartError
from agent.fsutil import write_atomic
from agent.gossip.config import Profile
from agent.gossip.consul import lan_merge_check
from agent.gossip.keyring import Keyring, KeyringError, load_keyring_file, save_keyring_file
from agent.gossip.runner import GossipPool
from agent.gossip.serf_types import Member
from agent.local import rexec
from agent.local.acl import LocalACL
from agent.local.events import UserEvents
from agent.local.logstream import LogHub
from agent.local.registry import LocalRegistry, RegistrationError
from agent.local.state import AntiEntropy, LocalState
from agent.metadata import agent_tags, server_parts
from agent.metrics.telemetry import Telemetry
from agent.netaddr import join_host_port
from agent.router import ServerRouter
from agent.server.rpc import ConnPool
from agent.server.server import ERR_LEADER_UNREACHABLE, Server, rpc_timeout
from agent.tasks import Background, listen, stop_step
from agent.tlsutil import rpc_tls
from agent.version import BUILD_DATE, PROTOCOL_MAX, PROTOCOL_MIN, REVISION, VERSION
from agent.watches import ConfigWatches

log = logging.getLogger("agent")
consul_log = logging.getLogger("consul")

__all__ = ["ERR_LEADER_UNREACHABLE", "Agent", "StartError"]

#: Consul's RPCHoldTimeout: how long a request waits out a leader election before failing.
RPC_HOLD_TIMEOUT = 5.0
ERR_NO_LEADER = "No cluster leader"
#: How many servers a client tries for one request before it gives up.
MAX_SERVERS_PER_RPC = 3
_STATUS_CODES = {v: k for k, v in STATUS_NAMES.items()}


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


def load_node_id(cfg: AgentConfig, data_dir: Path | None) -> str:
    """-node-id, else <data_dir>/node-id (made once, a UUID), else a new UUID (dev mode)."""
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
        write_atomic(path, node_id, mode=0o600)
        return node_id


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
        self.local = LocalState(
            node_name=config.node_name, check_update_interval=config.check_update_interval
        )
        self.registry = LocalRegistry(
            state=self.local,
            data_dir=self.data_dir,
            enable_script_checks=config.enable_script_checks,
            enable_local_script_checks=config.enable_local_script_checks,
        )
        self.events = UserEvents(
            datacenter=config.datacenter,
            node_name=config.node_name,
            services=lambda: self.local.services.values(),
            send=lambda name, body: self._lan().user_event(name, body, False),
            on_event=self._on_user_event,
        )
        self.anti_entropy: AntiEntropy | None = None
        self.lan: GossipPool | None = None
        self.server: Server | None = None
        persist = config.acl.enable_token_persistence and self.data_dir is not None
        self.tokens = TokenStore(
            default=config.acl.token_default,
            agent=config.acl.token_agent,
            agent_recovery=config.acl.token_agent_recovery,
            config_file_service_registration=config.acl.token_config_file_service_registration,
            persist_dir=self.data_dir if persist else None,
        )
        self.registry.config_file_token = self.tokens.config_file_registration_token
        self.acl = LocalACL(
            config.acl,
            node_name=config.node_name,
            tokens=self.tokens,
            rpc=self.rpc,
            server_resolve=lambda: (
                self.server.endpoints.resolve_access if self.server is not None else None
            ),
        )
        self.router = ServerRouter()
        #: TLS of server RPC (tls.internal_rpc): this agent's connections to servers and, on a
        #: server, its server port
        self.rpc_tls = rpc_tls(
            config.internal_rpc_tls, datacenter=config.datacenter, domain=config.domain
        )
        self.pool = ConnPool(tls=self.rpc_tls)  # a client's connections to its servers
        self._lan_keyring: Keyring | None = None
        self._http_runner: Any = None
        self._watches = ConfigWatches()
        self._cli_rpc: Any = None
        self._dns: DNSServer | None = None
        self._background = Background()
        self.telemetry = Telemetry(config.telemetry)
        self._sync_at_start = True
        self.shutdown_requested = asyncio.Event()
        #: set with `fatal_error` when a part cannot go on (raft's store failed): exit 1
        self.fatal = asyncio.Event()
        self.fatal_error = ""
        self._stopped = False

    # ------------------------------------------------------------------------------------
    # start / stop
    # ------------------------------------------------------------------------------------

    def _tags(self) -> dict[str, str]:
        cfg = self.config
        return agent_tags(
            server=cfg.server,
            datacenter=cfg.datacenter,
            node_id=self.node_id,
            protocol=cfg.protocol,
            protocol_min=PROTOCOL_MIN - 1,
            protocol_max=PROTOCOL_MAX,
            build=f"{VERSION}:{REVISION}",
            server_port=cfg.ports.server,
            wan_join_port=cfg.ports.serf_wan,
            bootstrap=cfg.bootstrap,
            expect=cfg.bootstrap_expect,
            read_replica=cfg.read_replica,
            raft_protocol=cfg.raft_protocol,
        )

    def _keyring_path(self, wan: bool) -> Path | None:
        if self.data_dir is None:
            return None
        return self.data_dir / "serf" / ("remote.keyring" if wan else "local.keyring")

    def _load_keyring(self, wan: bool) -> Keyring | None:
        try:
            return load_keyring_file(self._keyring_path(wan), self.config.encrypt)
        except KeyringError as exc:
            raise StartError(f"Error starting agent: {exc}") from None

    def _lan(self) -> GossipPool:
        if self.lan is None:
            raise RPCError("the agent is not running")
        return self.lan

    def _lan_members(self) -> list[Member]:
        return self.lan.members() if self.lan is not None else []

    async def start(self, *, sync: bool = True) -> None:
        """Start every part. With sync=False anti-entropy waits for `start_sync()` (the
        command starts it after the startup join, as Consul does)."""
        self._sync_at_start = sync
        if self.data_dir is not None:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartError(
                    f"Error starting agent: cannot create data directory {self.data_dir}: {exc.strerror}"
                ) from None
            self._lock = DataDirLock(self.data_dir)
            self._lock.acquire()
        self.node_id = load_node_id(self.config, self.data_dir)
        try:
            await self._start_parts()
        except BaseException:
            await self.shutdown()
            raise

    async def _start_parts(self) -> None:
        cfg = self.config
        await self.telemetry.start()
        self._lan_keyring = self._load_keyring(False)
        serf_dir = None if self.data_dir is None else self.data_dir / "serf"
        if serf_dir is not None:
            serf_dir.mkdir(exist_ok=True)
        if cfg.server:
            self.server = Server(
                cfg,
                node_id=self.node_id,
                advertise=self.advertise,
                advertise_wan=self.advertise_wan,
                data_dir=self.data_dir,
                wan_keyring=self._load_keyring(True),
                wan_tags=self._tags(),
                lan_members=self._lan_members,
                on_new_leader=self._sync_soon,
                user_event=lambda name, body: self._lan().user_event(name, body, False),
                rpc_tls=self.rpc_tls,
                on_fatal=self._fail,
            )
            await self.server.start()
        self.lan = GossipPool(
            name="lan",
            node_name=cfg.node_name,
            bind_addr=cfg.bind_addr,
            bind_port=cfg.ports.serf_lan,
            advertise_addr=self.advertise,
            advertise_port=cfg.ports.serf_lan,
            tags=self._tags(),
            profile=dataclasses.replace(
                Profile.local() if cfg.dev else Profile.lan(),
                reconnect_timeout=cfg.reconnect_timeout,
            ),
            keyring=self._lan_keyring,
            snapshot_path=None if serf_dir is None else serf_dir / "local.snapshot",
            merge_check=lan_merge_check(cfg.datacenter),
            on_event=self._on_lan_event,
            rejoin_after_leave=cfg.rejoin_after_leave,
        )
        await listen(self.lan.start(), f"{cfg.bind_addr}:{cfg.ports.serf_lan} (LAN gossip)")
        self._after_lan_change()
        # Local state: the services and checks of the config files, then what the HTTP API
        # registered before a restart; checks run. (A server's `consul` service is not one of
        # them: the leader registers it in the catalog only, as Consul 1.x does.)
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
        self._background.spawn(self._coordinate_loop(), "coordinates")
        await self._start_frontends()
        self._start_watches(cfg)

    def _start_watches(self, cfg: AgentConfig) -> None:
        if not cfg.watches:
            return
        if cfg.ports.http <= 0 or self._http_runner is None:
            log.error("agent: watch plans need the HTTP API, which is disabled; not started")
            return
        host = cfg.http_addr.split()[0]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self._watches.start(join_host_port(host, cfg.ports.http), cfg.watches)

    def start_sync(self) -> None:
        """Begin anti-entropy (if start() was told to wait)."""
        if self.anti_entropy is not None and not self.anti_entropy.running:
            self.anti_entropy.start()

    def _sync_soon(self) -> None:
        if self.anti_entropy is not None:
            self.anti_entropy.trigger()

    @property
    def gossip_encrypted(self) -> bool:
        return self._lan_keyring is not None

    async def _start_frontends(self) -> None:
        cfg = self.config
        try:
            from agent.http.serve import start_http
        except ImportError as exc:
            log.warning("HTTP API not available in this build: %s", exc)
        else:
            self._http_runner = await start_http(self, cfg)
        try:
            from agent.rpc_cli import CLIRPCServer
        except ImportError as exc:
            log.warning("CLI RPC not available in this build: %s", exc)
        else:
            if cfg.ports.rpc > 0:
                self._cli_rpc = CLIRPCServer(self)
                host = cfg.rpc_addr.split()[0]
                await listen(
                    self._cli_rpc.start(host, cfg.ports.rpc), f"{host}:{cfg.ports.rpc} (RPC)"
                )
        if cfg.ports.dns > 0:
            try:
                self._dns = await start_dns(self, cfg)
            except OSError as exc:
                log.error("DNS server failed to start: %s", exc)

    def _fail(self, why: str) -> None:
        log.error("agent: %s; exiting, so that a supervisor restarts the agent", why)
        self.fatal_error = why
        self.fatal.set()

    async def shutdown(self) -> None:
        """Stop everything (without leaving the cluster); safe to call twice. Every step is
        bounded, so the process always exits."""
        if self._stopped:
            return
        self._stopped = True
        log.info("requesting shutdown")
        if self.anti_entropy is not None:
            await stop_step("anti-entropy", self.anti_entropy.stop())
        await stop_step("checks", self.registry.stop())
        self._watches.stop()
        await self._background.stop()
        if self._cli_rpc is not None:
            await stop_step("CLI RPC", self._cli_rpc.stop())
        if self._dns is not None:
            await stop_step("DNS", self._dns.stop())
        if self._http_runner is not None:
            await stop_step("HTTP", self._http_runner.cleanup())
        if self.server is not None:
            await self.server.stop()
        if self.lan is not None:
            await stop_step("LAN gossip", self.lan.shutdown())
        await stop_step("RPC connection pool", self.pool.close())
        await stop_step("telemetry", self.telemetry.stop())
        if self._lock is not None:
            self._lock.release()
        log.info("shutdown complete")

    async def hand_off_leadership(self, timeout: float = 5.0) -> None:
        """A leader about to stop hands leadership to a caught-up voter."""
        if self.server is not None:
            await self.server.hand_off_leadership(timeout)

    async def graceful_leave(self) -> None:
        """Leave the cluster as Consul does: a server leaves the WAN (a leader hands
        leadership over first), then every agent leaves the LAN."""
        if self.server is not None:
            await self.server.leave()
        if self.lan is not None:
            try:
                await asyncio.wait_for(self.lan.leave(), 10.0)
            except Exception as exc:
                log.error("leave failed: %s", exc)

    # ------------------------------------------------------------------------------------
    # gossip events
    # ------------------------------------------------------------------------------------

    def _on_lan_event(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind is None:
            if hasattr(event, "respond"):
                return  # serf queries: none of Consul's are answered here
            if hasattr(event, "payload") and hasattr(event, "ltime"):
                self.events.receive(event.name, event.payload, event.ltime)
            return
        # Handled on the next loop turn: gossip calls us from inside its own processing, and
        # Consul logs serf's lines before the ones they cause.
        asyncio.get_running_loop().call_soon(self._after_lan_change)

    def _after_lan_change(self) -> None:
        if self._stopped or self.lan is None:
            return
        members = self.lan.members()
        self._refresh_servers(members)
        if self.server is not None:
            self.server.on_lan_change(members)

    def _refresh_servers(self, members: list[Member]) -> None:
        """The servers of our datacenter from gossip, each one added or removed logged."""
        servers: dict[str, str] = {}
        for m in members:
            parts = server_parts(m)
            if parts is not None and parts.datacenter == self.datacenter and m.status == "alive":
                servers[m.name] = parts.address
        had_none = not self.router.servers
        added, removed = self.router.update(servers)
        add_word, rm_word = (
            ("Adding LAN server", "Removing LAN server")
            if self.is_server
            else ("adding server", "removing server")
        )
        for name, addr in added.items():
            consul_log.info("%s %s (Addr: tcp/%s) (DC: %s)", add_word, name, addr, self.datacenter)
        for name, addr in removed.items():
            consul_log.info("%s %s (Addr: tcp/%s) (DC: %s)", rm_word, name, addr, self.datacenter)
        if had_none and servers:
            self._sync_soon()

    def _on_user_event(self, record: dict[str, Any]) -> None:
        if record["Name"] != rexec.EVENT_NAME:
            return
        if self.config.disable_remote_exec:
            log.info("ignoring remote exec event (%s), disabled.", record["ID"])
            return
        payload = record["Payload"] if isinstance(record["Payload"], bytes) else b""
        self._background.spawn(
            rexec.handle_remote_exec(self.rpc, self.node_name, self.datacenter, payload), "rexec"
        )

    async def _coordinate_loop(self) -> None:
        """Send our LAN coordinate to the servers now and then (Consul: every ~15 s)."""
        await asyncio.sleep(2.0 + random.random())
        while True:
            try:
                if (
                    self.lan is not None
                    and self.anti_entropy is not None
                    and self.anti_entropy.synced_once.is_set()
                ):
                    coord = self.lan.coordinate().to_wire()
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

    async def resolve_token(self, secret: str) -> Access:
        """The ACL access of a request carrying `secret` ("" is the anonymous token)."""
        return await self.acl.resolve(secret)

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        """Server RPC; a request of the agent's own (one without a Token) carries the agent
        token, as Consul's agent sends its internal requests."""
        if "Token" not in args:
            token = self.tokens.agent_token()
            if token:
                args = {**args, "Token": token}
        deadline = time.monotonic() + RPC_HOLD_TIMEOUT
        while True:
            try:
                if self.server is not None:
                    return await self.server.rpc(method, args)
                return await self._client_rpc(method, args)
            except RPCError as exc:
                # Wait out a leader election, as Consul's RPCHoldTimeout does.
                msg = str(exc)
                retry = msg == ERR_NO_LEADER or msg.startswith(ERR_LEADER_UNREACHABLE)
                if not retry or time.monotonic() >= deadline or self._stopped:
                    raise
                await asyncio.sleep(0.1 + random.random() * 0.1)

    async def _client_rpc(self, method: str, args: dict[str, Any]) -> Any:
        addr = self.router.current(time.monotonic(), max(1, len(self._lan_members())))
        if addr is None:
            raise RPCError("No known Consul servers")
        tried: list[str] = []
        last: Exception | None = None
        while addr is not None and len(tried) < MAX_SERVERS_PER_RPC:
            tried.append(addr)
            try:
                return await self.pool.call(addr, method, args, rpc_timeout(args))
            except (ConnectionError, OSError) as exc:
                last = exc
                self.pool.drop(addr)
                failed, addr = addr, self.router.failed(addr, tried)
                if addr is not None:
                    consul_log.warning(
                        "RPC to %s failed (%s), rotating to another server", failed, exc
                    )
        raise RPCError(f"rpc error: failed to reach a server: {last}")

    # ------------------------------------------------------------------------------------
    # AgentAPI
    # ------------------------------------------------------------------------------------

    @staticmethod
    def _member_dict(m: Member) -> dict[str, Any]:
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

    def _pool(self, wan: bool) -> GossipPool | None:
        if wan:
            return self.server.wan if self.server is not None else None
        return self.lan

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        pool = self._pool(wan)
        if pool is None:
            return []
        return [self._member_dict(m) for m in pool.members()]

    async def join(self, addrs: list[str], wan: bool = False) -> int:
        pool = self._pool(wan)
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
        self._after_lan_change()
        self._sync_soon()
        return n

    async def leave(self) -> None:
        await self.graceful_leave()
        self.shutdown_requested.set()

    async def force_leave(self, node: str, prune: bool = False) -> None:
        """As Consul 1.x's RemoveFailedNode: the LAN member `node` and the WAN member
        `node`.<dc> (a name already ending in .<dc> is taken as is), whichever exist."""
        log.info("Force leaving node: %s%s", node, " (prune)" if prune else "")
        found = False
        lan = self._lan()
        if any(m.name == node for m in lan.members()):
            lan.force_leave(node, prune)
            found = True
        wan = self._pool(True)
        if wan is not None:
            suffix = f".{self.datacenter}"
            wan_node = node if node.endswith(suffix) else node + suffix
            if any(m.name == wan_node for m in wan.members()):
                wan.force_leave(wan_node, prune)
                found = True
        if not found:
            err = f"agent: No node found with name '{node}'"
            log.warning("Failed to remove node %s: %s", node, err)
            raise AgentError(err)

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
        server = self.server.stats() if self.server is not None else {}
        out["consul"] = server.get("consul") or {
            "known_servers": str(len(self.router.servers)),
            "server": "false",
        }
        if "raft" in server:
            out["raft"] = server["raft"]
        if self.lan is not None:
            out["serf_lan"] = dict(self.lan.stats())
        if "serf_wan" in server:
            out["serf_wan"] = server["serf_wan"]
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
            "DisableRemoteExec": cfg.disable_remote_exec,
            "Version": VERSION,
            "Revision": REVISION,
            "VersionPrerelease": "",
            "NodeMeta": dict(cfg.node_meta),
            "Performance": {"RaftMultiplier": cfg.effective_raft_multiplier},
            "EncryptKey": "",
            # Consul 1.x's Config fields (it keeps only these; DebugConfig has the rest)
            "PrimaryDatacenter": cfg.datacenter,
            "BuildDate": BUILD_DATE,
        }
        coord = None
        member: dict[str, Any] = {}
        if self.lan is not None:
            coord = self.lan.coordinate().to_wire()
            member = self._member_dict(self.lan.local_member())
        debug = dict(config, ServerMode=cfg.server, NodeMeta=dict(cfg.node_meta))
        return {
            "Config": config,
            "DebugConfig": debug,
            "Coord": coord,
            "Member": member,
            "Stats": self.stats(),
            "Meta": dict(cfg.node_meta),
        }

    async def reload(self) -> None:
        log.info("Reloading configuration...")
        if self._reload_config is None:
            return
        new = self._reload_config()
        self.registry.enable_script_checks = new.enable_script_checks
        self.registry.enable_local_script_checks = new.enable_local_script_checks
        try:
            self.registry.load_config(new.services, new.checks)
        except RegistrationError as exc:
            raise RPCError(f"Failed reloading services: {exc.message}") from None
        if new.watches != self.config.watches:
            self._watches.stop()
            self._start_watches(new)
        self.config = new

    def local_services(self) -> dict[str, dict[str, Any]]:
        """/v1/agent/services: the services this agent registered, by ID."""
        return {sid: dict(svc) for sid, svc in self.local.services.items()}

    def local_checks(self) -> dict[str, dict[str, Any]]:
        """/v1/agent/checks: this agent's checks with their latest results, by CheckID."""
        return {cid: dict(chk) for cid, chk in self.local.checks.items()}

    async def log_stream(self, level: str, log_json: bool = False) -> AsyncIterator[str]:
        if self.log_hub is None:
            return
        async for line in self.log_hub.stream_lines(level, log_json):
            yield line

    async def keyring(self, op: str, key: str | None = None) -> list[dict[str, Any]]:
        if op not in ("list", "install", "use", "remove"):
            raise RPCError(f"unknown keyring operation {op!r}")
        out: list[dict[str, Any]] = []
        for wan in (True, False):
            pool = self._pool(wan)
            if pool is None:
                continue
            resp = await pool.keyring_op(op, key)
            if op != "list":
                save_keyring_file(self._keyring_path(wan), pool.keyring)
            entry: dict[str, Any] = {
                "Keys": dict(resp.keys),
                "NumNodes": resp.num_nodes,
                "Messages": dict(resp.messages),
                "WAN": wan,
                "Datacenter": self.datacenter,
            }
            if resp.error:  # e.g. "1/1 nodes reported failure": no gossip encryption
                entry["Error"] = resp.error
            out.append(entry)
        return out

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
        async def rpc(method: str, args: dict[str, Any]) -> Any:
            return await self.rpc(method, {**args, "Token": token} if token else args)

        return await self.events.fire_in(
            datacenter, rpc, name, payload, node_filter, service_filter, tag_filter
        )

    def user_events(self) -> list[dict[str, Any]]:
        return self.events.recent()
