"""Bad input never escapes as a 500 or a traceback: fuzzed /v1/kv queries and bodies, and
Go durations parsed as Go parses them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agent_double import AgentDouble
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.http import common
from agent.http.app import make_app
from agent.http.common import parse_duration

pytestmark = pytest.mark.timeout(60)

PARAMS = [
    "index",
    "wait",
    "flags",
    "cas",
    "acquire",
    "release",
    "recurse",
    "keys",
    "separator",
    "raw",
    "stale",
    "consistent",
]
values = st.one_of(
    st.just(""),
    st.integers(-5, 2**70).map(str),
    st.text(alphabet="0123456789smhux.-+/ab", max_size=8),
)


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fuzzed ?index is a real blocking query: let its wait (default and cap) be 10 ms."""
    monkeypatch.setattr(common, "DEFAULT_QUERY_TIME", 0.01)
    monkeypatch.setattr(common, "MAX_QUERY_TIME", 0.01)


def start(loop: asyncio.AbstractEventLoop) -> tuple[AgentDouble, TestClient[Any, Any]]:
    agent = AgentDouble()
    loop.run_until_complete(agent.start())
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(agent)), loop=loop)
    loop.run_until_complete(client.start_server())
    return agent, client


def stop(loop: asyncio.AbstractEventLoop, agent: AgentDouble, client: TestClient[Any, Any]) -> None:
    loop.run_until_complete(client.close())
    loop.run_until_complete(agent.stop())
    loop.close()


def consul_lock_errors(params: dict[str, str]) -> set[str]:
    """The 500s Consul's state store answers too: a lock or unlock without a session
    ("missing session"), a lock with a session that does not exist ("invalid session")."""
    errors = set()
    if "acquire" in params or "release" in params:
        errors.add("missing session")
    if params.get("acquire"):
        errors.add(f'invalid session "{params["acquire"]}"')
    return errors


@pytest.mark.usefixtures("short_waits")
def test_fuzzed_kv_requests_get_200_400_or_404() -> None:
    loop = asyncio.new_event_loop()
    agent, client = start(loop)

    async def call(method: str, key: str, params: dict[str, str], body: bytes) -> tuple[int, str]:
        resp = await client.request(method, f"/v1/kv/{key}", params=params, data=body)
        return resp.status, await resp.text(errors="replace")

    @settings(max_examples=150, deadline=None)
    @given(
        method=st.sampled_from(["GET", "PUT", "DELETE"]),
        key=st.text(alphabet="abc/-_.", max_size=6),
        params=st.dictionaries(st.sampled_from(PARAMS), values, max_size=4),
        body=st.binary(max_size=64),
    )
    def check(method: str, key: str, params: dict[str, str], body: bytes) -> None:
        status, text = loop.run_until_complete(call(method, key, params, body))
        assert status in (200, 400, 404) or (
            status == 500 and text in consul_lock_errors(params)
        ), (status, text)
        assert "Traceback" not in text

    try:
        check()
    finally:
        stop(loop, agent, client)


@given(st.integers(0, 10**6), st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
def test_go_durations(n: int, unit: str) -> None:
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    assert abs(parse_duration(f"{n}{unit}") - n * scale) <= 1e-9 * max(1.0, n * scale)


def test_go_duration_forms() -> None:
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("0") == 0.0
    for bad in ("", "10", "s", "1x", "1s2", "--1s"):
        try:
            parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")


ROUTES = [
    ("GET", "/v1/agent/self"),
    ("GET", "/v1/agent/members"),
    ("PUT", "/v1/agent/join/10.0.0.1"),
    ("PUT", "/v1/agent/force-leave/x"),
    ("GET", "/v1/operator/keyring"),
    ("POST", "/v1/operator/keyring"),
    ("PUT", "/v1/operator/keyring"),
    ("DELETE", "/v1/operator/keyring"),
    ("PUT", "/v1/event/fire/e"),
    ("GET", "/v1/event/list"),
    ("GET", "/v1/status/leader"),
    ("GET", "/v1/operator/raft/configuration"),
    ("DELETE", "/v1/operator/raft/peer"),
    ("PUT", "/v1/snapshot"),
    ("PUT", "/v1/catalog/register"),
    ("PUT", "/v1/catalog/deregister"),
    ("GET", "/v1/catalog/nodes"),
    ("GET", "/v1/catalog/service/web"),
    ("GET", "/v1/health/service/web"),
    ("GET", "/v1/health/state/any"),
    ("GET", "/v1/coordinate/nodes"),
    ("PUT", "/v1/session/create"),
    ("PUT", "/v1/session/renew/abc"),
    ("GET", "/v1/session/info/abc"),
    ("PUT", "/v1/txn"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Key",
                    "Node",
                    "Address",
                    "KV",
                    "Verb",
                    "Value",
                    "TTL",
                    "LockDelay",
                    "Behavior",
                    "Checks",
                    "Flags",
                    "Index",
                    "Name",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)


@pytest.mark.usefixtures("short_waits")
def test_fuzzed_bodies_on_every_endpoint_never_500() -> None:
    import json

    loop = asyncio.new_event_loop()
    agent, client = start(loop)

    async def call(method: str, path: str, params: dict[str, str], body: bytes) -> tuple[int, str]:
        resp = await client.request(method, path, params=params, data=body)
        return resp.status, await resp.text(errors="replace")

    @settings(max_examples=200, deadline=None)
    @given(
        route=st.sampled_from(ROUTES),
        params=st.dictionaries(
            st.sampled_from([*PARAMS, "address", "name", "node", "tag"]), values, max_size=3
        ),
        body=st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode())),
    )
    def check(route: tuple[str, str], params: dict[str, str], body: bytes) -> None:
        status, text = loop.run_until_complete(call(route[0], route[1], params, body))
        # 500 only with an RPC error's own text, never an unexpected exception
        assert status != 500 or not any(
            name in text for name in ("Error:", "Exception", "Traceback")
        ), (route, params, body, text)

    try:
        check()
    finally:
        stop(loop, agent, client)
