"""Helpers: a real RaftNode cluster on 127.0.0.1-3 (ephemeral ports), with a small KV state machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from agent.mux import PortMux
from agent.raft.config import RaftConfig
from agent.raft.runner import RaftNode, ServerInfo


class KVFSM:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.applied: list[int] = []

    def apply(self, index: int, term: int, data: bytes) -> Any:
        op, key, value = msgpack.unpackb(data)
        self.applied.append(index)
        if op == "set":
            self.data[key] = value
            return index
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return msgpack.packb(self.data)

    def restore(self, data: bytes) -> None:
        self.data = msgpack.unpackb(data)


def put(key: str, value: bytes) -> bytes:
    return msgpack.packb(["set", key, value])


async def wait_for(
    cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


class Cluster:
    def __init__(self, root: Path | None, size: int, config: RaftConfig) -> None:
        self.root = root
        self.size = size
        self.config = config
        self.hosts = [f"127.0.0.{i + 1}" for i in range(size)]
        self.addresses: list[str] = []
        self.nodes: list[RaftNode | None] = [None] * size
        self.muxes: list[PortMux | None] = [None] * size
        self.fsms: list[KVFSM] = [KVFSM() for _ in range(size)]

    async def start_node(self, i: int, *, bootstrap: bool = True) -> RaftNode:
        mux = PortMux()
        port = int(self.addresses[i].rsplit(":", 1)[1]) if i < len(self.addresses) else 0
        await mux.start(self.hosts[i], port)
        if len(self.addresses) <= i:
            port = mux.port
            self.addresses.append(f"{self.hosts[i]}:{port}")
        self.fsms[i] = KVFSM()
        node = RaftNode(
            node_id=self.addresses[i],
            address=self.addresses[i],
            data_dir=self.root / f"n{i}" if self.root else None,
            fsm=self.fsms[i],
            mux=mux,
            config=self.config,
        )
        self.nodes[i], self.muxes[i] = node, mux
        return node

    async def start(self) -> None:
        for i in range(self.size):
            await self.start_node(i)
        servers = [ServerInfo(a, a, "Voter") for a in self.addresses]
        for node in self.nodes:
            assert node is not None
            await node.bootstrap(servers)
            await node.start()

    async def kill(self, i: int) -> None:
        """Like SIGKILL for the cluster: the node stops talking at once, nothing is flushed."""
        node, mux = self.nodes[i], self.muxes[i]
        self.nodes[i] = self.muxes[i] = None
        # Raft first (it drops its connections), then the listener: the agent's order.
        if node is not None:
            await node.stop()
        if mux is not None:
            await asyncio.wait_for(mux.close(), 10.0)

    async def restart(self, i: int) -> RaftNode:
        node = await self.start_node(i)
        await node.start()
        return node

    def live(self) -> list[RaftNode]:
        return [n for n in self.nodes if n is not None]

    def leader(self) -> RaftNode | None:
        leaders = [n for n in self.live() if n.is_leader()]
        return leaders[0] if len(leaders) == 1 else None

    async def wait_leader(self, timeout: float = 10.0) -> RaftNode:
        await wait_for(lambda: self.leader() is not None, timeout, "a leader")
        leader = self.leader()
        assert leader is not None
        return leader

    async def close(self) -> None:
        for i in range(self.size):
            with contextlib.suppress(Exception):
                await self.kill(i)
