"""Random requests on a real server's RPC port (8300): every method with arguments of every
type, pipelined on one connection. Each gets an answer (an error text, never a crash); the
agent's log holds no traceback; the connection and the agent go on. SENATE_FUZZ_EXAMPLES
sends more."""

from __future__ import annotations

import importlib
import os
import pkgutil
import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from harness import Node, one_server

from agent.codec import RPCType
from agent.server import endpoints

pytestmark = pytest.mark.timeout(180)

AGENT_IP = "127.18.4.1"
FRAMES = 10 * int(os.environ.get("SENATE_FUZZ_EXAMPLES", "200"))
KEYS = [
    "Key", "Node", "Datacenter", "ServiceName", "ID", "Session", "Op", "DirEnt", "Ops", "Name",
    "Token", "Service", "Check", "Checks", "Address", "Coord", "Index", "MinQueryIndex",
    "MaxQueryTime", "Filter", "NodeMetaFilters", "ServiceTags", "Query", "Entry", "Kind",
    "Policy", "Role", "AccessorID", "Config", "KV", "Verb", "Source", "Limit", "Payload",
    "AllowStale", "RequireConsistent", "Updates", "TTL", "Behavior",
]  # fmt: skip


def methods() -> list[str]:
    names: list[str] = []
    for info in pkgutil.iter_modules(endpoints.__path__):
        module = importlib.import_module(f"agent.server.endpoints.{info.name}")
        names += list(getattr(module, "METHODS", {}) or {})
    return sorted(names)


def value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice("silmnbfy" if depth < 2 else "sinb")
    if kind == "s":
        return rng.choice(["", "x", "a/b", "\x00", "-1", "10s", "x" * 300])
    if kind == "i":
        return rng.choice([0, -1, 7, 2**63, 2**64 - 1, -(2**63)])
    if kind == "l":
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "m":
        return {rng.choice(KEYS): value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if kind == "n":
        return None
    if kind == "b":
        return rng.random() < 0.5
    if kind == "f":
        return 1.5
    return b"\xff\x00"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with one_server(Path(tmp_path_factory.mktemp("fuzzrpc")), "fuzzrpc1", AGENT_IP) as node:
        yield node


def _read(sock: socket.socket) -> Any:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        assert chunk, "the server closed the connection"
        head += chunk
    (size,) = struct.unpack(">I", head)
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        assert chunk, "the server closed the connection mid-frame"
        body += chunk
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


def test_random_rpc_requests_get_answers_and_no_traceback(agent: Node) -> None:
    rng = random.Random(20261203)
    names = [m for m in methods() if m not in ("Snapshot.Restore", "Operator.RaftRemovePeerByAddress", "Operator.RaftRemovePeerByID")]  # fmt: skip
    sock = socket.create_connection((AGENT_IP, 8300), timeout=20)
    try:
        sock.sendall(bytes([int(RPCType.CONSUL)]))
        for seq in range(1, FRAMES + 1):
            args = {rng.choice(KEYS): value(rng) for _ in range(rng.randint(0, 5))}
            args["MaxQueryTime"] = 0  # never park as a blocking query
            args.pop("MinQueryIndex", None)
            frame = {"Seq": seq, "Method": rng.choice(names), "Args": args}
            body = msgpack.packb(frame, use_bin_type=True)
            sock.sendall(struct.pack(">I", len(body)) + body)
            reply = _read(sock)
            assert reply["Seq"] == seq
            error = reply.get("Error") or ""
            assert "internal error" not in error, (frame, error)
    finally:
        sock.close()
    log = agent.log_text()
    assert "Traceback" not in log, log[-4000:]
    assert agent.request("PUT", "/v1/kv/after-rpc-fuzz", b"ok")[0] == 200
