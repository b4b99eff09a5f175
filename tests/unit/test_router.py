"""The client's ServerRouter (pure) and the agent's request path around it: clients rotate
away from unreachable servers and rebalance every few minutes; requests wait out a leader
election (Consul's RPCHoldTimeout); servers forward to other datacenters over the WAN."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.agent import Agent
from agent.api import RPCError
from agent.config import load
from agent.router import ServerRouter, rebalance_interval
from agent.server.rpc import ConnectFailed
from agent.server.server import ERR_LEADER_UNREACHABLE, Server, wan_servers

S1, S2, S3 = "10.0.0.1:8300", "10.0.0.2:8300", "10.0.0.3:8300"


def test_router_reports_servers_added_and_removed() -> None:
    r = ServerRouter(random.Random(1))
    assert r.current(0.0) is None
    assert r.update({"s1": S1, "s2": S2}) == ({"s1": S1, "s2": S2}, {})
    assert r.update({"s2": S2, "s3": S3}) == ({"s3": S3}, {"s1": S1})
    assert r.name_of(S3) == "s3" and r.name_of(S1) is None


def test_router_keeps_one_server_then_rebalances_at_random() -> None:
    r = ServerRouter(random.Random(7))
    r.update({"s1": S1, "s2": S2, "s3": S3})
    first = r.current(100.0)
    assert first in (S1, S2, S3)
    assert {r.current(100.0 + t) for t in range(0, 119)} == {first}  # sticks with it
    assert 220.0 <= r.keep_until() <= 280.0
    picked = set()
    now = 100.0
    for _ in range(60):
        now = r.keep_until()  # its time is up
        picked.add(r.current(now))
    assert picked == {S1, S2, S3}


def test_router_moves_off_a_server_that_left() -> None:
    r = ServerRouter(random.Random(3))
    r.update({"s1": S1})
    assert r.current(0.0) == S1
    r.update({"s2": S2})
    assert r.current(1.0) == S2  # the old one is gone: pick again at once


def test_router_rotates_to_servers_not_tried() -> None:
    r = ServerRouter(random.Random(5))
    r.update({"s1": S1, "s2": S2, "s3": S3})
    tried = [r.current(0.0)]
    nxt = r.failed(tried[0], tried)
    assert nxt is not None and nxt not in tried
    tried.append(nxt)
    last = r.failed(nxt, tried)
    assert last is not None and last not in tried
    tried.append(last)
    assert r.failed(last, tried) is None
    assert r.current(1.0) == last  # keeps the one that was handed out


def test_rebalance_interval_scales_with_the_cluster() -> None:
    rng = random.Random(0)
    assert all(120 <= rebalance_interval(3, 100, rng) <= 180 for _ in range(100))
    # at most 64 new connections per second per server
    assert rebalance_interval(3, 192_000, rng) == 1000.0


def client_agent() -> Agent:
    return Agent(load(["-data-dir=/nonexistent", "-bind=127.0.0.1", "-node=c1"]))


@dataclass
class FakePool:
    dead: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    async def call(
        self,
        addr: str,
        method: str,
        args: dict[str, Any],
        timeout: float,
        *,
        datacenter: str | None = None,
    ) -> Any:
        self.calls.append(addr)
        if addr in self.dead:
            raise ConnectFailed(f"dial tcp {addr}: connection refused")
        return {"ok": method, "from": addr}

    def drop(self, addr: str) -> None:
        self.dropped.append(addr)


async def test_client_rotates_to_a_reachable_server_and_sticks_with_it() -> None:
    agent = client_agent()
    agent.router = ServerRouter(random.Random(2))
    agent.router.update({"s1": S1, "s2": S2})
    first = agent.router.current(time.monotonic())  # mid-way through its time with it
    pool = FakePool(dead={first or ""})
    agent.pool = pool  # type: ignore[assignment]
    reply = await agent.rpc("Status.Leader", {})
    other = S2 if first == S1 else S1
    assert reply == {"ok": "Status.Leader", "from": other}
    assert pool.calls == [first, other] and pool.dropped == [first]
    assert (await agent.rpc("Status.Peers", {}))["from"] == other
    assert pool.calls[-1] == other


async def test_client_without_servers_and_with_only_dead_ones() -> None:
    agent = client_agent()
    with pytest.raises(RPCError, match="No known Consul servers"):
        await agent.rpc("Status.Leader", {})
    agent.router.update({"s1": S1})
    agent.pool = FakePool(dead={S1})  # type: ignore[assignment]
    with pytest.raises(RPCError, match="failed to reach a server"):
        await agent.rpc("Status.Leader", {})


class FlakyServer:
    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.calls = 0

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        self.calls += 1
        if self.failures:
            raise RPCError(self.failures.pop(0))
        return "done"


async def test_requests_wait_out_an_election_but_not_other_errors() -> None:
    agent = client_agent()
    flaky = FlakyServer(["No cluster leader", f"{ERR_LEADER_UNREACHABLE}: refused"])
    agent.server = flaky  # type: ignore[assignment]
    assert await agent.rpc("KVS.Apply", {}) == "done"
    assert flaky.calls == 3
    flaky = FlakyServer(["Permission denied"])
    agent.server = flaky  # type: ignore[assignment]
    with pytest.raises(RPCError, match="Permission denied"):
        await agent.rpc("KVS.Apply", {})
    assert flaky.calls == 1


@dataclass
class WanMember:
    name: str
    addr: str
    tags: dict[str, str]
    status: str = "alive"
    port: int = 8302


def server_member(name: str, dc: str, addr: str, status: str = "alive") -> WanMember:
    return WanMember(f"{name}.{dc}", addr, {"role": "consul", "dc": dc, "port": "8300"}, status)


async def test_forward_dc_uses_wan_servers_of_that_dc() -> None:
    cfg = load(["-server", "-data-dir=/nonexistent", "-bind=127.0.0.1", "-node=s1", "-dc=dc1"])
    server = Server(
        cfg,
        node_id="id",
        advertise="127.0.0.1",
        advertise_wan="127.0.0.1",
        data_dir=None,
        wan_keyring=None,
        wan_tags={},
        lan_members=list,
    )
    server.wan_servers = wan_servers(
        [
            server_member("s1", "dc2", "10.1.0.1"),
            server_member("s1", "dc1", "10.0.0.1"),
            server_member("s2", "dc3", "10.3.0.1", status="failed"),
            WanMember("c1.dc2", "10.1.0.9", {"role": "node", "dc": "dc2"}),
        ]
    )
    pool = FakePool()
    server.pool = pool  # type: ignore[assignment]
    assert (await server.forward_dc("dc2", "KVS.Get", {"Datacenter": "dc2"}))["from"] == (
        "10.1.0.1:8300"
    )
    assert pool.calls == ["10.1.0.1:8300"]
    with pytest.raises(RPCError, match="No path to datacenter"):
        await server.forward_dc("dc9", "KVS.Get", {})
    assert server.known_datacenters() == ["dc1", "dc2"]
