"""/v1/kv: Consul's JSON, headers, status codes and error messages, against a fake agent."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fake_agent import FakeAgent

pytestmark = pytest.mark.timeout(60)

Client = Any


async def test_put_then_get_returns_consul_json_and_headers(
    client: Client, agent: FakeAgent
) -> None:
    resp = await client.put("/v1/kv/name", data=b"ivan")
    assert resp.status == 200
    assert await resp.text() == "true"
    resp = await client.get("/v1/kv/name")
    assert resp.status == 200
    assert resp.headers["X-Consul-Index"] == str(agent.index)
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    assert resp.headers["X-Consul-LastContact"] == "0"
    body = await resp.json()
    assert body == [
        {
            "LockIndex": 0,
            "Key": "name",
            "Flags": 0,
            "Value": base64.b64encode(b"ivan").decode(),
            "CreateIndex": 11,
            "ModifyIndex": 11,
        }
    ]
    assert list(body[0]) == ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]


async def test_get_missing_key_is_404_with_index(client: Client) -> None:
    resp = await client.get("/v1/kv/nothing")
    assert resp.status == 404
    assert await resp.text() == ""
    assert resp.headers["X-Consul-Index"] == "10"


async def test_raw_returns_the_value_bytes(client: Client) -> None:
    await client.put("/v1/kv/bin", data=b"\x00\xffdata")
    resp = await client.get("/v1/kv/bin?raw")
    assert resp.status == 200
    assert await resp.read() == b"\x00\xffdata"


async def test_flags_cas_and_delete_cas(client: Client, agent: FakeAgent) -> None:
    assert await (await client.put("/v1/kv/k?flags=42", data=b"v")).text() == "true"
    entry = (await (await client.get("/v1/kv/k")).json())[0]
    assert entry["Flags"] == 42
    stale = await client.put("/v1/kv/k?cas=1", data=b"w")
    assert await stale.text() == "false"
    fresh = await client.put(f"/v1/kv/k?cas={entry['ModifyIndex']}", data=b"w")
    assert await fresh.text() == "true"
    assert agent.kv["k"]["Value"] == b"w"
    assert await (await client.delete("/v1/kv/k?cas=1")).text() == "false"
    idx = agent.kv["k"]["ModifyIndex"]
    assert await (await client.delete(f"/v1/kv/k?cas={idx}")).text() == "true"
    assert "k" not in agent.kv


async def test_recurse_keys_and_delete_tree(client: Client, agent: FakeAgent) -> None:
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
    assert sorted(agent.kv) == ["db/x"]


async def test_acquire_and_release_send_lock_ops(client: Client, agent: FakeAgent) -> None:
    agent.sessions["s1"] = {"ID": "s1"}
    assert await (await client.put("/v1/kv/lock?acquire=s1", data=b"me")).text() == "true"
    assert agent.kv["lock"]["Session"] == "s1"
    body = await (await client.get("/v1/kv/lock")).json()
    assert body[0]["Session"] == "s1" and body[0]["LockIndex"] == 1
    assert await (await client.put("/v1/kv/lock?acquire=s2", data=b"")).text() == "false"
    assert await (await client.put("/v1/kv/lock?release=s1", data=b"")).text() == "true"
    assert agent.calls[-1][1]["Op"] == "unlock"


async def test_value_over_512k_is_refused_with_consuls_message(
    client: Client, agent: FakeAgent
) -> None:
    big = b"x" * (512 * 1024 + 1)
    resp = await client.put("/v1/kv/big", data=big)
    assert resp.status == 400
    assert await resp.text() == "Request body(524289 bytes) too large, max size: 524288 bytes"
    assert "big" not in agent.kv
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


async def test_blocking_query_options_reach_the_rpc(client: Client, agent: FakeAgent) -> None:
    await client.get("/v1/kv/k?index=7&wait=2s&stale")
    method, args = agent.calls[-1]
    assert method == "KVS.Get"
    assert args["MinQueryIndex"] == 7
    assert args["MaxQueryTime"] == 2.0
    assert args["AllowStale"] is True
    await client.get("/v1/kv/k?index=7")
    assert agent.calls[-1][1]["MaxQueryTime"] == 300.0  # Consul's default wait
    await client.get("/v1/kv/k?index=1&wait=1h")
    assert agent.calls[-1][1]["MaxQueryTime"] == 600.0  # capped as Consul's


async def test_rpc_error_is_a_500_with_its_text(client: Client, agent: FakeAgent) -> None:
    agent.leader = ""
    resp = await client.get("/v1/kv/k")
    assert resp.status == 500
    assert await resp.text() == "No cluster leader"
    resp = await client.put("/v1/kv/k", data=b"v")
    assert resp.status == 500
    assert await resp.text() == "No cluster leader"
    resp = await client.get("/v1/kv/k?stale")
    assert resp.status == 404
    assert resp.headers["X-Consul-KnownLeader"] == "false"


async def test_other_datacenter_is_routed_by_dc(client: Client, agent: FakeAgent) -> None:
    resp = await client.get("/v1/kv/k?dc=other")
    assert resp.status == 500
    assert await resp.text() == "No path to datacenter: other"
    resp = await client.put("/v1/kv/k?dc=other", data=b"v")
    assert resp.status == 500
    assert agent.calls[-1][1]["Datacenter"] == "other"


async def test_chunked_value_over_512k_is_refused_without_buffering(
    client: Client, agent: FakeAgent
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 65536

    resp = await client.put("/v1/kv/big", data=chunks())
    assert resp.status == 400
    assert (await resp.text()).endswith("too large, max size: 524288 bytes")
    assert "big" not in agent.kv

    async def small():  # type: ignore[no-untyped-def]
        yield b"chunk-1 "
        yield b"chunk-2"

    ok = await client.put("/v1/kv/small", data=small())
    assert ok.status == 200
    assert agent.kv["small"]["Value"] == b"chunk-1 chunk-2"
