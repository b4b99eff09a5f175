"""The HTTP API (agent/http) over the real endpoints and state (fake raft only): checks the
contract between the HTTP handlers and Endpoints.handle end to end, in process."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_double import WithoutACLs
from aiohttp.test_utils import TestClient, TestServer

# pytest puts this directory on sys.path (rootdir-less "prepend" import mode)
from test_endpoints import Cluster

from agent.http.app import make_app


class EndpointsAgent(WithoutACLs):
    """An AgentAPI whose rpc() is a server's Endpoints.handle."""

    node_name = "server1"
    datacenter = "dc1"
    is_server = True

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        return await self.cluster.ep.handle(method, args)

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        return []

    def stats(self) -> dict[str, dict[str, str]]:
        return {}

    def self_info(self) -> dict[str, Any]:
        return {"Config": {"NodeName": self.node_name, "Datacenter": self.datacenter}}


@pytest.fixture
async def http() -> AsyncIterator[tuple[TestClient[Any, Any], Cluster]]:
    cluster = Cluster()
    app = make_app(EndpointsAgent(cluster))  # type: ignore[arg-type]
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, cluster
    finally:
        await client.close()


async def test_kv_put_get_delete_as_the_seed(http: tuple[TestClient[Any, Any], Cluster]) -> None:
    client, _ = http
    r = await client.put("/v1/kv/name", data=b"ivan")
    assert r.status == 200 and await r.json() is True
    r = await client.get("/v1/kv/name")
    assert r.status == 200
    (ent,) = await r.json()
    assert base64.b64decode(ent["Value"]) == b"ivan"
    assert (ent["Key"], ent["Flags"], ent["LockIndex"], ent["CreateIndex"]) == ("name", 0, 0, 1)
    assert r.headers["X-Consul-Index"] == "1" and r.headers["X-Consul-KnownLeader"] == "true"
    r = await client.get("/v1/kv/name?raw")
    assert await r.read() == b"ivan"
    r = await client.delete("/v1/kv/name")
    assert await r.json() is True
    r = await client.get("/v1/kv/name")
    assert r.status == 404 and r.headers["X-Consul-Index"] == "2"


async def test_kv_cas_recurse_keys(http: tuple[TestClient[Any, Any], Cluster]) -> None:
    client, _ = http
    assert await (await client.put("/v1/kv/app/a?cas=0", data=b"1")).json() is True
    assert await (await client.put("/v1/kv/app/a?cas=0", data=b"2")).json() is False
    assert await (await client.put("/v1/kv/app/b/c?flags=9", data=b"3")).json() is True
    r = await client.get("/v1/kv/app/?recurse")
    assert [e["Key"] for e in await r.json()] == ["app/a", "app/b/c"]
    r = await client.get("/v1/kv/app/?keys&separator=/")
    assert await r.json() == ["app/a", "app/b/"]


async def test_kv_blocking_get_over_http(http: tuple[TestClient[Any, Any], Cluster]) -> None:
    client, _ = http
    await client.put("/v1/kv/watched", data=b"1")
    waiter = asyncio.create_task(client.get("/v1/kv/watched?index=1&wait=5s"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await client.put("/v1/kv/watched", data=b"2")
    r = await asyncio.wait_for(waiter, 3)
    assert r.headers["X-Consul-Index"] == "2"
    assert base64.b64decode((await r.json())[0]["Value"]) == b"2"


async def test_sessions_and_locks_over_http(http: tuple[TestClient[Any, Any], Cluster]) -> None:
    client, cluster = http
    await cluster.node("server1")
    r = await client.put("/v1/session/create", data=json.dumps({"Name": "l", "LockDelay": "1s"}))
    assert r.status == 200, await r.text()
    sid = (await r.json())["ID"]
    (info,) = await (await client.get(f"/v1/session/info/{sid}")).json()
    assert info["Node"] == "server1" and info["LockDelay"] == 1_000_000_000
    assert info["Checks"] == ["serfHealth"]
    assert await (await client.put(f"/v1/kv/lock?acquire={sid}", data=b"me")).json() is True
    (ent,) = await (await client.get("/v1/kv/lock")).json()
    assert ent["Session"] == sid and ent["LockIndex"] == 1
    assert await (await client.put(f"/v1/kv/lock?release={sid}")).json() is True
    r = await client.put(f"/v1/session/destroy/{sid}")
    assert await r.json() is True
    assert await (await client.get("/v1/session/list")).json() == []


async def test_txn_over_http(http: tuple[TestClient[Any, Any], Cluster]) -> None:
    client, _ = http
    ops = [
        {"KV": {"Verb": "set", "Key": "t/a", "Value": base64.b64encode(b"x").decode()}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ]
    r = await client.put("/v1/txn", data=json.dumps(ops))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["Errors"] is None
    assert base64.b64decode(body["Results"][1]["KV"]["Value"]) == b"x"
    r = await client.put("/v1/txn", data=json.dumps([{"KV": {"Verb": "get", "Key": "nope"}}]))
    assert r.status == 409
    assert (await r.json())["Errors"][0]["What"] == 'key "nope" doesn\'t exist'


async def test_catalog_and_health_over_http(http: tuple[TestClient[Any, Any], Cluster]) -> None:
    client, _ = http
    reg = {
        "Node": "web1",
        "Address": "10.0.0.5",
        "Service": {"Service": "web", "Tags": ["v1"], "Port": 80},
        "Check": {"Name": "web-alive", "ServiceID": "web", "Status": "passing"},
    }
    r = await client.put("/v1/catalog/register", data=json.dumps(reg))
    assert r.status == 200, await r.text()
    nodes = await (await client.get("/v1/catalog/nodes")).json()
    assert [n["Node"] for n in nodes] == ["web1"]
    assert await (await client.get("/v1/catalog/services")).json() == {"web": ["v1"]}
    (sn,) = await (await client.get("/v1/catalog/service/web?tag=v1")).json()
    assert sn["ServicePort"] == 80 and sn["Address"] == "10.0.0.5"
    (hn,) = await (await client.get("/v1/health/service/web?passing")).json()
    assert hn["Service"]["ID"] == "web" and hn["Checks"][0]["Status"] == "passing"
    r = await client.get("/v1/health/state/passing")
    assert [c["CheckID"] for c in await r.json()] == ["web-alive"]
    assert await (await client.get("/v1/status/leader")).json() == "10.0.0.1:8300"


async def test_snapshot_save_and_restore_over_http(
    http: tuple[TestClient[Any, Any], Cluster],
) -> None:
    client, _ = http
    await client.put("/v1/kv/keep", data=b"1")
    r = await client.get("/v1/snapshot")
    assert r.status == 200, await r.text()
    archive = await r.read()
    await client.delete("/v1/kv/keep")
    r = await client.put("/v1/snapshot", data=archive)
    assert r.status == 200, await r.text()
    (ent,) = await (await client.get("/v1/kv/keep")).json()
    assert base64.b64decode(ent["Value"]) == b"1"
