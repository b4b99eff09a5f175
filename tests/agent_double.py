"""A server agent for the HTTP API, CLI RPC and CLI tests whose server side is the product.

`AgentDouble.rpc` is the real `Endpoints.handle` over a real `StateStore` and `StateFSM`, written
through a real `RaftNode`: a single voter bootstrapped in memory (no data dir, and a `PortMux`
that never listens: a lone voter sends nothing). While it leads, the real `LeaderDuties`
reconcile the gossip members into the catalog (node + `serfHealth`), and the real
`AntiEntropy` syncs the agent's own services and checks, which live in a real `LocalRegistry`
over a real `LocalState` (which, as in Consul 1.x, does not hold the `consul` service: the
leader registers it in the catalog).

What needs sockets to be real is scripted, and only that: `ScriptedGossip` is the gossip side
(LAN/WAN members, join/leave/force-leave, keyring, gossip coordinates, and the delivery of the
user events this agent fires back to itself, where the real `UserEvents` filters and keeps
them); the log stream replays `log_lines`.

`start()` returns once raft leads and the catalog holds every alive member and the agent's
services, so a test starts from a quiet cluster: the next write gets index
`raft.last_log_index + 1`. `AgentDouble(bootstrap=False)` is a server that never joined a
cluster: no leader ("No cluster leader"), stale reads still answered.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.acl.resolver import DISABLED, Access
from agent.acl.tokens import TokenStore
from agent.api import STATUS_NAMES, AgentError, JoinError
from agent.http.app import make_app
from agent.local import rexec
from agent.local.events import UserEvents
from agent.local.registry import LocalRegistry
from agent.local.state import AntiEntropy, LocalState
from agent.metadata import server_member
from agent.metrics.config import TelemetryConfig
from agent.metrics.telemetry import Telemetry
from agent.mux import PortMux
from agent.raft.config import RaftConfig
from agent.raft.runner import RaftNode, ServerInfo
from agent.rpc_cli import CLIRPCServer
from agent.server.autopilot import DEFAULT_CONFIG as AUTOPILOT_DEFAULTS
from agent.server.endpoints import Endpoints
from agent.server.leader import LeaderDuties
from agent.state.fsm import StateFSM
from agent.state.store import StateStore
from agent.version import REVISION, VERSION

#: A lone voter's timings: it elects itself after 50-100 ms (nobody else is there to hear).
FAST_RAFT = RaftConfig(
    election_timeout=0.05,
    heartbeat_interval=0.01,
    leader_lease_timeout=0.03,
    transfer_timeout=0.05,
)
SEED_BUILD = "0.7.2:'a9afa0c"  # the seed transcript's Consul, as its gossip build tag says
SERVER_PORT = 8300


def member(
    name: str, addr: str, role: str, status: int = 1, build: str = SEED_BUILD, node_id: str = ""
) -> dict[str, Any]:
    """A gossip member as /v1/agent/members shows it (Status: serf's number)."""
    tags = {"role": role, "dc": "mydc", "vsn": "2", "build": build}
    if node_id:
        tags["id"] = node_id
    if role == "consul":
        tags["port"] = str(SERVER_PORT)
        tags["raft_vsn"] = "3"
    return {
        "Name": name,
        "Addr": addr,
        "Port": 8301,
        "Tags": tags,
        "Status": status,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 4,
        "DelegateCur": 4,
    }


@dataclass
class _MemberView:
    """A scripted member as LeaderDuties reads gossip members (serf.Member's fields)."""

    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: str


@dataclass
class ScriptedGossip:
    """The gossip side of the double: what a real agent learns and does over serf's sockets.

    Tests edit `lan` (members as /v1/agent/members), `lan_coords` / `wan_coords` (Vivaldi
    coordinates by member name) and read `joined`, `force_left`, `left` and `keys`."""

    datacenter: str
    lan: list[dict[str, Any]]
    joined: list[tuple[list[str], bool]] = field(default_factory=list)
    force_left: list[str] = field(default_factory=list)
    left: bool = False
    keys: dict[str, int] = field(default_factory=lambda: {"pUqJrVyVRj5jsiYEkM/tFQ==": 2})
    lan_coords: dict[str, dict[str, Any]] = field(default_factory=dict)
    wan_coords: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: this agent's receiver of serf user events: (name, payload, Lamport time)
    deliver: Callable[[str, bytes, int], None] | None = None
    ltime: int = 0

    def user_event(self, name: str, payload: bytes) -> None:
        """Broadcast; serf hands a user event to its own node at once, as here."""
        self.ltime += 1
        if self.deliver is not None:
            self.deliver(name, payload, self.ltime)

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        if wan:  # servers only, named <node>.<dc>, on the WAN port
            return [
                {**m, "Name": f"{m['Name']}.{self.datacenter}", "Port": 8302}
                for m in self.lan
                if m["Tags"]["role"] == "consul"
            ]
        return [dict(m) for m in self.lan]

    def member_views(self) -> list[_MemberView]:
        return [
            _MemberView(m["Name"], m["Addr"], m["Port"], m["Tags"], STATUS_NAMES[m["Status"]])
            for m in self.lan
        ]

    def join(self, addrs: list[str], wan: bool) -> int:
        """Addresses in 10.99.0.0/16 do not answer; every other one does."""
        self.joined.append((addrs, wan))
        good = [a for a in addrs if not a.startswith("10.99.")]
        if not good:
            raise JoinError(
                f"1 error(s) occurred:\n\n* Failed to join {addrs[0]}: "
                f"dial tcp {addrs[0]}:8301: i/o timeout"
            )
        return len(good)

    def keyring(self, op: str, key: str | None) -> list[dict[str, Any]]:
        lan_nodes = len(self.lan)
        if op == "install" and key:
            self.keys[key] = lan_nodes
        elif op == "remove" and key:
            if key not in self.keys:
                return [self._ring(False, lan_nodes, {}, error="key not found")]
            del self.keys[key]
        wan_nodes = len(self.members(wan=True))
        return [
            self._ring(True, wan_nodes, dict(self.keys)),
            self._ring(False, lan_nodes, self.keys),
        ]

    def _ring(self, wan: bool, nodes: int, keys: dict[str, int], error: str = "") -> dict[str, Any]:
        ring: dict[str, Any] = {
            "WAN": wan,
            "Datacenter": self.datacenter,
            "Messages": {},
            "Keys": dict(keys),
            "NumNodes": nodes,
        }
        if error:
            ring["Error"] = error
        return ring

    def wan_coordinates(self) -> list[dict[str, Any]]:
        coords = [{"Node": n, "Coord": c} for n, c in sorted(self.wan_coords.items())]
        return [{"Datacenter": self.datacenter, "Coordinates": coords}]


class WithoutACLs:
    """The ACL half of an AgentAPI for fakes of an agent whose ACLs are off."""

    tokens = TokenStore()

    async def resolve_token(self, secret: str) -> Access:
        return DISABLED


class AgentDouble:
    """An `AgentAPI` server agent: real server side and local registry, scripted gossip."""

    def __init__(
        self,
        *,
        node_name: str = "server1",
        datacenter: str = "mydc",
        address: str = "10.12.10.37",
        bootstrap: bool = True,
        extra_servers: Sequence[ServerInfo] = (),
    ) -> None:
        """`extra_servers` join the bootstrap configuration (a Nonvoter there does not count
        for quorum; one whose address does not answer is a server that is down)."""
        self.node_name = node_name
        self.datacenter = datacenter
        self.is_server = True
        self.telemetry = Telemetry(TelemetryConfig())
        self.address = address
        self.server_addr = f"{address}:{SERVER_PORT}"
        self.node_id = str(uuid.uuid4())
        self.gossip = ScriptedGossip(
            datacenter,
            [
                member(
                    node_name,
                    address,
                    "consul",
                    build=f"{VERSION}:{REVISION}",
                    node_id=self.node_id,
                ),
                member("ceph-debug", "10.12.10.61", "node"),
            ],
        )
        self.log_lines: list[str] = []
        self.reloads = 0
        self._bootstrap = bootstrap
        self._extra_servers = list(extra_servers)
        self._tasks: set[asyncio.Task[None]] = set()
        self.local = LocalState(node_name=node_name)
        self.registry = LocalRegistry(state=self.local)
        self.tokens = TokenStore()
        #: autopilot settings over Consul's defaults (the leader reads them on each pass)
        self.autopilot_overrides: dict[str, Any] = {}
        self.events = UserEvents(
            datacenter=datacenter,
            node_name=node_name,
            services=lambda: self.local.services.values(),
            send=self.gossip.user_event,
            on_event=self._on_user_event,
        )
        self.gossip.deliver = self.events.receive
        self.state = StateStore()
        self.fsm = StateFSM(self.state)
        self.raft = RaftNode(  # raft protocol 3: named by its node ID
            node_id=self.node_id,
            aliases=(self.server_addr,),
            address=self.server_addr,
            data_dir=None,
            fsm=self.fsm,
            mux=PortMux(),
            config=FAST_RAFT,
        )
        self.endpoints = Endpoints(
            datacenter=datacenter,
            state=self.state,
            raft=self.raft,
            forward_leader=self._forward_leader,
            forward_dc=self._forward_dc,
            known_datacenters=lambda: [self.datacenter],
            wan_coordinates=self.gossip.wan_coordinates,
            server_name=self._server_name,
            server_tags=self._server_tags,
        )
        self.leader_duties: LeaderDuties | None = None
        self.anti_entropy: AntiEntropy | None = None

    # ---- lifecycle (in the loop that serves the agent) ------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        self.leader_duties = LeaderDuties(
            node_name=self.node_name,
            datacenter=self.datacenter,
            raft=self.raft,
            handle=self.endpoints.handle,
            lan_members=self.gossip.member_views,
            autopilot_config=lambda: {**AUTOPILOT_DEFAULTS, **self.autopilot_overrides},
        )
        duties = self.leader_duties
        self.endpoints.autopilot_health = lambda: duties.health
        self.raft.add_leadership_observer(self._on_leadership)
        self.raft.add_leadership_observer(self.endpoints.on_leadership)
        if self._bootstrap:
            me = ServerInfo(self.node_id, self.server_addr, "Voter")
            await self.raft.bootstrap([me, *self._extra_servers])
        await self.raft.start()
        self.registry.start()
        self.anti_entropy = AntiEntropy(
            state=self.local,
            rpc=self.rpc,
            datacenter=self.datacenter,
            node_id=self.node_id,
            address=lambda: self.address,
            tagged_addresses=lambda: {"lan": self.address, "wan": self.address},
            node_meta={},
        )
        if self._bootstrap:
            await self._until(self.raft.is_leader, timeout, "raft did not elect itself")
            self.anti_entropy.start()
            await self._until(self.settled, timeout, "the catalog did not settle")
            await self._until(
                lambda: self.leader_duties is not None and self.leader_duties.health is not None,
                timeout,
                "autopilot did not compute the servers' health",
            )

    def settled(self) -> bool:
        """Every alive or failed member is in the catalog with its serfHealth check, and
        anti-entropy has synced once."""
        for m in self.gossip.member_views():
            want = {"alive": "passing", "failed": "critical"}.get(m.status)
            checks = self.state.node_checks(m.name)[1]
            if want and not any(
                c["CheckID"] == "serfHealth" and c["Status"] == want for c in checks
            ):
                return False
        return self.anti_entropy is not None and self.anti_entropy.synced_once.is_set()

    async def stop(self) -> None:
        if self.anti_entropy is not None:
            await self.anti_entropy.stop()
        await self.registry.stop()
        if self.leader_duties is not None:
            await self.leader_duties.stop()
        self.endpoints.on_leadership(False)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        await self.raft.stop()

    @staticmethod
    async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.005)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_leadership(self, is_leader: bool) -> None:
        assert self.leader_duties is not None
        if is_leader:
            self.leader_duties.start()
        else:
            self._spawn(self.leader_duties.stop())

    # ---- the server side: the real endpoints ----------------------------------------------

    async def resolve_token(self, secret: str) -> Access:
        return DISABLED

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        return await self.endpoints.handle(method, args)

    async def _forward_leader(self, method: str, args: dict[str, Any]) -> Any:
        raise AssertionError(f"a lone server forwarded {method} to a leader")

    async def _forward_dc(self, dc: str, method: str, args: dict[str, Any]) -> Any:
        raise AssertionError(f"{method} forwarded to {dc}, which known_datacenters omits")

    def _server_tags(self, address: str, raft_id: str = "") -> dict[str, str] | None:
        m = server_member(self.gossip.member_views(), address, raft_id)
        return dict(m.tags) if m is not None else None

    def _server_name(self, address: str, raft_id: str = "") -> str | None:
        m = server_member(self.gossip.member_views(), address, raft_id)
        return m.name if m is not None else None

    # ---- this agent: the real local registry ----------------------------------------------

    def local_services(self) -> dict[str, dict[str, Any]]:
        return {sid: dict(svc) for sid, svc in self.local.services.items()}

    def local_checks(self) -> dict[str, dict[str, Any]]:
        return {cid: dict(chk) for cid, chk in self.local.checks.items()}

    def stats(self) -> dict[str, dict[str, str]]:
        runners = self.registry.stats()
        leader = self.raft.leader()
        return {
            "agent": {
                "check_monitors": str(runners["check_monitors"]),
                "check_ttls": str(runners["check_ttls"]),
                "checks": str(len(self.local.checks)),
                "services": str(len(self.local.services)),
            },
            "build": {"prerelease": "", "revision": REVISION, "version": VERSION},
            "consul": {
                "bootstrap": str(self._bootstrap).lower(),
                "known_datacenters": "1",
                "leader": str(self.raft.is_leader()).lower(),
                "leader_addr": leader.address if leader is not None else "",
                "server": "true",
            },
            "raft": self.raft.stats(),
        }

    def self_info(self) -> dict[str, Any]:
        return {
            "Config": {
                "NodeName": self.node_name,
                "Datacenter": self.datacenter,
                "Server": True,
                "AdvertiseAddr": self.address,
            },
            "Coord": self.gossip.lan_coords.get(self.node_name),
            "Member": next(m for m in self.gossip.members() if m["Name"] == self.node_name),
        }

    async def reload(self) -> None:
        self.reloads += 1  # no config files: nothing to re-read

    # ---- the gossip side: scripted --------------------------------------------------------

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        return self.gossip.members(wan)

    async def join(self, addrs: list[str], wan: bool = False) -> int:
        return self.gossip.join(addrs, wan)

    async def leave(self) -> None:
        self.gossip.left = True

    async def force_leave(self, node: str, prune: bool = False) -> None:
        wan_node = node if node.endswith(f".{self.datacenter}") else f"{node}.{self.datacenter}"
        known = {m["Name"] for m in [*self.members(), *self.members(wan=True)]}
        if node not in known and wan_node not in known:
            raise AgentError(f"agent: No node found with name '{node}'")
        self.gossip.force_left.append(node + (" (prune)" if prune else ""))

    async def keyring(self, op: str, key: str | None = None) -> list[dict[str, Any]]:
        return self.gossip.keyring(op, key)

    async def log_stream(self, level: str, log_json: bool = False) -> AsyncIterator[str]:
        for line in self.log_lines:
            yield line
        await asyncio.Event().wait()  # then stays open, as a real agent's stream does

    # ---- user events: the real UserEvents, over the scripted gossip ----------------------

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
        return await self.events.fire_in(
            datacenter, self.rpc, name, payload, node_filter, service_filter, tag_filter
        )

    def user_events(self) -> list[dict[str, Any]]:
        return self.events.recent()

    def _on_user_event(self, record: dict[str, Any]) -> None:
        """As the real agent: a kept `_rexec` event runs its job."""
        if record["Name"] == rexec.EVENT_NAME:
            payload = record["Payload"] if isinstance(record["Payload"], bytes) else b""
            self._spawn(
                rexec.handle_remote_exec(self.rpc, self.node_name, self.datacenter, payload)
            )


# ---- serving ------------------------------------------------------------------------------


@asynccontextmanager
async def running(agent: AgentDouble) -> AsyncIterator[AgentDouble]:
    """`agent` started in the current loop, and stopped afterwards."""
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


@asynccontextmanager
async def http_client(agent: AgentDouble) -> AsyncIterator[TestClient[Any, Any]]:
    """An aiohttp test client of the real HTTP app for `agent`, started (and stopped) with it."""
    async with running(agent), TestClient(TestServer(make_app(agent))) as client:
        yield client


@dataclass
class Served:
    agent: Any  # AgentDouble, or another stand-in with what the endpoints under test need
    http_addr: str
    rpc_addr: str
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        """Run `coro` in the agent's loop (from the test's thread) and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def serve_in_thread(
    agent: Any,
    *,
    middlewares: Sequence[Any] = (),
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> Iterator[Served]:
    """Run the HTTP API and the CLI RPC for `agent` on 127.0.0.1 in a background loop;
    `middlewares` go first in the app, `on_start` runs in the loop before the servers start,
    `on_stop` after they stop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        if on_start is not None:
            await on_start()
        app = make_app(agent)
        app.middlewares[:0] = middlewares
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        rpc = CLIRPCServer(agent)
        await rpc.start("127.0.0.1", 0)
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        state.update(runner=runner, rpc=rpc, http_port=sock.getsockname()[1])

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(30), "the agent's servers did not start"
    if "error" in state:
        thread.join(10)
        loop.close()
        raise state["error"]
    try:
        yield Served(
            agent,
            f"127.0.0.1:{state['http_port']}",
            f"127.0.0.1:{state['rpc'].port}",
            loop,
        )
    finally:

        async def stop() -> None:
            await state["rpc"].stop()
            await state["runner"].cleanup()
            if on_stop is not None:
                await on_stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def serve_agent(agent: AgentDouble | None = None) -> Iterator[Served]:
    """serve_in_thread for an AgentDouble: started before the servers, stopped after."""
    agent = agent if agent is not None else AgentDouble()
    with serve_in_thread(agent, on_start=agent.start, on_stop=agent.stop) as served:
        yield served


#: Where the down server of `failed_server_agent` listens: nowhere (connections are refused).
DOWN_SERVER = "127.0.0.1:1"


#: the node ID of failed_server_agent's server2
SERVER2_ID = "9d4c9a84-2b2f-4a3e-8c55-1e2f3a4b5c6d"


def failed_server_agent() -> AgentDouble:
    """server1 leading, and server2: a Nonvoter of raft's configuration whose agent failed
    (gossip says failed; its server port refuses connections, so raft's messages to it fail)."""
    agent = AgentDouble(extra_servers=[ServerInfo(SERVER2_ID, DOWN_SERVER, "Nonvoter")])
    server2 = member("server2", "127.0.0.1", "consul", status=4, node_id=SERVER2_ID)
    server2["Tags"]["port"] = DOWN_SERVER.rsplit(":", 1)[1]
    agent.gossip.lan.append(server2)
    # what an operator sees before removing it by hand: autopilot's cleanup would do it first
    agent.autopilot_overrides["CleanupDeadServers"] = False
    return agent
