"""agent/agent.py request routing: clients rotate away from unreachable servers; requests wait
out a leader election (Consul's RPCHoldTimeout); forwarding to the leader and to other dcs."""

from __future__ import annotations

from typing import Any

import pytest

from agent.agent import ERR_LEADER_UNREACHABLE, Agent
from agent.api import RPCError
from agent.config import load
from agent.server.rpc import ConnectFailed


def client_agent() -> Agent:
    return Agent(load(["-data-dir=/nonexistent", "-bind=127.0.0.1", "-node=c1"]))


async def test_client_rotates_to_a_reachable_server() -> None:
    agent = client_agent()
    agent._lan_servers = {"s1": "10.0.0.1:8300", "s2": "10.0.0.2:8300"}
    agent._client_server = "10.0.0.1:8300"
    agent._client_server_until = float("inf")  # mid-way through its time with s1
    calls: list[str] = []

    async def call(addr: str, method: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        calls.append(addr)
        if addr == "10.0.0.1:8300":
            raise ConnectFailed("dial tcp 10.0.0.1:8300: connection refused")
        return {"ok": method}

    agent.pool.call = call  # type: ignore[method-assign]
    assert await agent.rpc("Status.Leader", {}) == {"ok": "Status.Leader"}
    assert calls == ["10.0.0.1:8300", "10.0.0.2:8300"]
    assert agent._client_server == "10.0.0.2:8300"  # sticks with the one that works
    assert await agent.rpc("Status.Peers", {}) == {"ok": "Status.Peers"}
    assert calls[-1] == "10.0.0.2:8300"


async def test_client_without_servers_and_with_only_dead_ones() -> None:
    agent = client_agent()
    with pytest.raises(RPCError, match="No known Consul servers"):
        await agent.rpc("Status.Leader", {})
    agent._lan_servers = {"s1": "10.0.0.1:8300"}

    async def dead(addr: str, method: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        raise ConnectFailed("refused")

    agent.pool.call = dead  # type: ignore[method-assign]
    with pytest.raises(RPCError, match="failed to reach a server"):
        await agent.rpc("Status.Leader", {})


class FlakyEndpoints:
    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.calls = 0

    async def handle(self, method: str, args: dict[str, Any]) -> Any:
        self.calls += 1
        if self.failures:
            raise RPCError(self.failures.pop(0))
        return "done"


async def test_requests_wait_out_an_election_but_not_other_errors() -> None:
    agent = client_agent()
    agent.endpoints = FlakyEndpoints(["No cluster leader", f"{ERR_LEADER_UNREACHABLE}: refused"])
    assert await agent.rpc("KVS.Apply", {}) == "done"
    assert agent.endpoints.calls == 3
    agent.endpoints = FlakyEndpoints(["Permission denied"])
    with pytest.raises(RPCError, match="Permission denied"):
        await agent.rpc("KVS.Apply", {})
    assert agent.endpoints.calls == 1


async def test_forward_dc_uses_wan_servers_of_that_dc() -> None:
    agent = client_agent()
    agent._wan_servers = {"s1.dc2": ("dc2", "10.1.0.1:8300"), "s1.dc1": ("dc1", "10.0.0.1:8300")}
    seen: list[str] = []

    async def call(addr: str, method: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        seen.append(addr)
        return "remote"

    agent.pool.call = call  # type: ignore[method-assign]
    assert await agent.forward_dc("dc2", "KVS.Get", {"Datacenter": "dc2"}) == "remote"
    assert seen == ["10.1.0.1:8300"]
    with pytest.raises(RPCError, match="No path to datacenter"):
        await agent.forward_dc("dc9", "KVS.Get", {})
    assert agent.known_datacenters() == ["dc1", "dc2"]


async def test_client_moves_to_a_random_server_every_few_minutes() -> None:
    """Consul's router rebalancing: a client keeps its server for 120-180 s, then picks again
    at random, so clients that failed over while a server restarted spread out again."""
    import time

    from agent.agent import rebalance_interval

    agent = client_agent()
    servers = {"s1": "10.0.0.1:8300", "s2": "10.0.0.2:8300", "s3": "10.0.0.3:8300"}
    agent._lan_servers = dict(servers)
    calls: list[str] = []

    async def call(addr: str, method: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        calls.append(addr)
        return "ok"

    agent.pool.call = call  # type: ignore[method-assign]
    for _ in range(10):
        await agent.rpc("Status.Leader", {})
    assert len(set(calls)) == 1  # sticks with one server
    assert 119 <= agent._client_server_until - time.monotonic() <= 180
    picked = set()
    for _ in range(40):
        agent._client_server_until = 0.0  # its time is up
        await agent.rpc("Status.Leader", {})
        picked.add(calls[-1])
    assert picked == set(servers.values())
    # Big clusters rebalance less often: at most 64 new connections per second per server.
    assert 120 <= rebalance_interval(3, 100) <= 180
    assert rebalance_interval(3, 192_000) == 1000.0
