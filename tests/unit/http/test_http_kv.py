"""/v1/kv: Consul's JSON, headers, status codes and error messages, against the real server
endpoints, state store and raft of tests/agent_double.py."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_double import AgentDouble, http_client

pytestmark = pytest.mark.timeout(60)

Client = Any


def kv(agent: AgentDouble, key: str) -> dict[str, Any] | None:
    """The entry as the real state store holds it."""
    return agent.state.kvs_get(key)[1]


def stored_keys(agent: AgentDouble) -> list[str]:
    return [e["Key"] for e in agent.state.kvs_list("")[1]]


async def test_put_then_get_returns_consul_json_and_headers(
    client: Client, agent: AgentDouble
) -> None:
    index = agent.raft.last_log_index + 1  # the put is the next raft entry
    resp = await client.put("/v1/kv/name", data=b"ivan")
    assert resp.status == 200
    assert await resp.text() == "true"
    resp = await client.get("/v1/kv/name")
    assert resp.status == 200
    assert resp.headers["X-Consul-Index"] == str(index)
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    assert resp.headers["X-Consul-LastContact"] == "0"
    body = await resp.json()
    assert body == [
        {
            "LockIndex": 0,
            "Key": "name",
            "Flags": 0,
            "Value": base64.b64encode(b"ivan").decode(),
            "CreateIndex": index,
            "ModifyIndex": index,
        }
    ]
    assert list(body[0]) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]


async def test_get_missing_key_is_404_with_index(client: Client) -> None:
    resp = await client.get("/v1/kv/nothing")
    assert resp.status == 404
    assert await resp.text() == ""
    assert resp.headers["X-Consul-Index"] == "1"  # no KV write yet: Consul's floor of 1


async def test_raw_returns_the_value_bytes(client: Client) -> None:
    await client.put("/v1/kv/bin", data=b"\x00\xffdata")
    resp = await client.get("/v1/kv/bin?raw")
    assert resp.status == 200
    assert await resp.read() == b"\x00\xffdata"


async def test_flags_cas_and_delete_cas(client: Client, agent: AgentDouble) -> None:
    assert await (await client.put("/v1/kv/k?flags=42", data=b"v")).text() == "true"
    entry = (await (await client.get("/v1/kv/k")).json())[0]
    assert entry["Flags"] == 42
    stale = await client.put("/v1/kv/k?cas=1", data=b"w")
    assert await stale.text() == "false"
    fresh = await client.put(f"/v1/kv/k?cas={entry['ModifyIndex']}", data=b"w")
    assert await fresh.text() == "true"
    entry = kv(agent, "k")
    assert entry is not None and entry["Value"] == b"w"
    assert await (await client.delete("/v1/kv/k?cas=1")).text() == "false"
    idx = entry["ModifyIndex"]
    assert await (await client.delete(f"/v1/kv/k?cas={idx}")).text() == "true"
    assert kv(agent, "k") is None


async def test_recurse_keys_and_delete_tree(client: Client, agent: AgentDouble) -> None:
    for key in ("web/a", "web/b/c", "web/b/d", "db/x"):
        await client.put(f"/v1/kv/{key}", data=key.encode())
    listed = await (await client.get("/v1/kv/web/?recurse")).json()
    assert [e["Key"] for e in listed] == ["web/a", "web/b/c", "web/b/d"]
    keys = await (await client.get("/v1/kv/web/?keys&separator=/")).json()
    assert keys == ["web/a", "web/b/"]
    assert await (await client.get("/v1/kv/?keys")).json() == [
        "db/x",
        "web/a",
        "web/b/c",
        "web/b/d",
    ]
    assert (await client.get("/v1/kv/zzz?keys")).status == 404
    assert (await client.get("/v1/kv/zzz?recurse")).status == 404
    assert await (await client.delete("/v1/kv/web?recurse")).text() == "true"
    assert stored_keys(agent) == ["db/x"]


async def test_acquire_and_release_send_lock_ops(client: Client, agent: AgentDouble) -> None:
    async def session() -> str:
        resp = await client.put("/v1/session/create", data=b"{}")
        return str((await resp.json())["ID"])

    s1, s2 = await session(), await session()
    assert await (await client.put(f"/v1/kv/lock?acquire={s1}", data=b"me")).text() == "true"
    held = kv(agent, "lock")
    assert held is not None and held["Session"] == s1
    body = await (await client.get("/v1/kv/lock")).json()
    assert body[0]["Session"] == s1 and body[0]["LockIndex"] == 1
    # held by s1: another session does not get it
    assert await (await client.put(f"/v1/kv/lock?acquire={s2}", data=b"")).text() == "false"
    assert await (await client.put(f"/v1/kv/lock?release={s2}", data=b"")).text() == "false"
    assert await (await client.put(f"/v1/kv/lock?release={s1}", data=b"")).text() == "true"
    released = kv(agent, "lock")
    assert released is not None and (released["Session"], released["LockIndex"]) == ("", 1)
    # a session that does not exist is an error, not a refusal (Consul: `invalid session`)
    resp = await client.put("/v1/kv/lock?acquire=s3", data=b"")
    assert resp.status == 500
    assert await resp.text() == 'invalid session "s3"'


async def test_value_over_512k_is_refused_with_consuls_message(
    client: Client, agent: AgentDouble
) -> None:
    big = b"x" * (512 * 1024 + 1)
    resp = await client.put("/v1/kv/big", data=big)
    assert resp.status == 400
    assert await resp.text() == "Request body(524289 bytes) too large, max size: 524288 bytes"
    assert kv(agent, "big") is None
    ok = await client.put("/v1/kv/big", data=b"x" * (512 * 1024))
    assert ok.status == 200


async def test_bad_query_parameters_get_400s(client: Client) -> None:
    cases = {
        "/v1/kv/k?index=abc": "Invalid index",
        "/v1/kv/k?index=-1": "Invalid index",
        "/v1/kv/k?index=1&wait=10": "Invalid wait time",
        "/v1/kv/k?wait=soon": "Invalid wait time",
        "/v1/kv/k?stale&consistent": "Cannot specify ?stale with ?consistent, conflicting semantics.",
    }
    for url, message in cases.items():
        resp = await client.get(url)
        assert resp.status == 400, url
        assert await resp.text() == message
    resp = await client.put("/v1/kv/k?flags=x", data=b"")
    assert resp.status == 400
    assert "Invalid flags" in await resp.text()
    resp = await client.put("/v1/kv/k?cas=1&acquire=s", data=b"")
    assert resp.status == 400
    assert (await resp.text()).startswith("Conflicting flags")
    resp = await client.put("/v1/kv/", data=b"v")
    assert resp.status == 400
    assert await resp.text() == "Missing key name"


async def test_blocking_query_options_reach_the_rpc(
    client: Client, agent: AgentDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    while (entry := kv(agent, "k")) is None or entry["ModifyIndex"] <= 7:
        await client.put("/v1/kv/k", data=b"v")  # past ?index=7: the queries below answer now
    calls: list[tuple[str, dict[str, Any]]] = []
    rpc = agent.rpc

    async def spy(method: str, args: dict[str, Any]) -> Any:
        calls.append((method, dict(args)))
        return await rpc(method, args)

    monkeypatch.setattr(agent, "rpc", spy)
    assert (await client.get("/v1/kv/k?index=7&wait=2s&stale")).status == 200
    method, args = calls[-1]
    assert method == "KVS.Get"
    assert args["MinQueryIndex"] == 7
    assert args["MaxQueryTime"] == 2.0
    assert args["AllowStale"] is True
    await client.get("/v1/kv/k?index=7")
    assert calls[-1][1]["MaxQueryTime"] == 300.0  # Consul's default wait
    await client.get("/v1/kv/k?index=1&wait=1h")
    assert calls[-1][1]["MaxQueryTime"] == 600.0  # capped as Consul's
    # and the real endpoint blocks: at the current index, until the wait ends
    start = time.monotonic()
    resp = await client.get(f"/v1/kv/k?index={entry['ModifyIndex']}&wait=200ms")
    assert time.monotonic() - start >= 0.2
    assert resp.headers["X-Consul-Index"] == str(entry["ModifyIndex"])


async def test_rpc_error_is_a_500_with_its_text() -> None:
    async with http_client(AgentDouble(bootstrap=False)) as client:  # a server with no leader
        resp = await client.get("/v1/kv/k")
        assert resp.status == 500
        assert await resp.text() == "No cluster leader"
        resp = await client.put("/v1/kv/k", data=b"v")
        assert resp.status == 500
        assert await resp.text() == "No cluster leader"
        resp = await client.get("/v1/kv/k?stale")
        assert resp.status == 404
        assert resp.headers["X-Consul-KnownLeader"] == "false"


async def test_other_datacenter_is_routed_by_dc(client: Client, agent: AgentDouble) -> None:
    resp = await client.get("/v1/kv/k?dc=other")
    assert resp.status == 500
    assert await resp.text() == "No path to datacenter"  # Consul's structs.ErrNoDCPath
    resp = await client.put("/v1/kv/k?dc=other", data=b"v")
    assert resp.status == 500
    assert await resp.text() == "No path to datacenter"
    assert kv(agent, "k") is None


async def test_chunked_value_over_512k_is_refused_without_buffering(
    client: Client, agent: AgentDouble
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    resp = await client.put("/v1/kv/big", data=chunks())
    assert resp.status == 400
    assert (await resp.text()).endswith("too large, max size: 524288 bytes")
    assert kv(agent, "big") is None

    async def small() -> AsyncIterator[bytes]:
        yield b"chunk-1 "
        yield b"chunk-2"

    ok = await client.put("/v1/kv/small", data=small())
    assert ok.status == 200
    entry = kv(agent, "small")
    assert entry is not None and entry["Value"] == b"chunk-1 chunk-2"


async def test_slash_only_key_is_a_missing_key(client: Client, agent: AgentDouble) -> None:
    for method, path in (("PUT", "/v1/kv//"), ("DELETE", "/v1/kv//"), ("GET", "/v1/kv/")):
        resp = await client.request(method, path, data=b"v")
        assert (resp.status, await resp.text()) == (400, "Missing key name"), (method, path)
    assert stored_keys(agent) == []
