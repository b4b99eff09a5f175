"""Hypothesis against a real agent's HTTP API: random JSON bodies (of every type, nested,
with odd strings and numbers) and random query parameters on the write and read endpoints.
Never a 500, never a traceback in the agent's log; afterwards the agent answers and
anti-entropy still syncs a new service to the catalog. SENATE_FUZZ_EXAMPLES runs longer."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Node, one_server, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(300)

AGENT_IP = "127.18.3.1"
EXAMPLES = int(os.environ.get("SENATE_FUZZ_EXAMPLES", "120"))

WRITES = [
    ("PUT", "/v1/agent/service/register"),
    ("PUT", "/v1/agent/check/register"),
    ("PUT", "/v1/catalog/register"),
    ("PUT", "/v1/catalog/deregister"),
    ("PUT", "/v1/session/create"),
    ("PUT", "/v1/txn"),
    ("PUT", "/v1/acl/token"),
    ("PUT", "/v1/operator/autopilot/configuration"),
    ("PUT", "/v1/coordinate/update"),
    ("POST", "/v1/query"),
    ("PUT", "/v1/config"),
    ("PUT", "/v1/agent/check/update/fuzz"),
]
READS = [
    "/v1/kv/fuzz",
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/health/service/web",
    "/v1/agent/services",
    "/v1/event/list",
    "/v1/coordinate/nodes",
    "/v1/session/list",
]

_odd_text = st.sampled_from(
    ["", "web", "10s", "-1s", "1_0s", "x" * 600, "\u00e9", "\ud800", "a/b", "..", "\x00", "${x}"]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _odd_text,
    st.text(max_size=20),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "Name",
                    "ID",
                    "Node",
                    "Address",
                    "Service",
                    "Tags",
                    "Port",
                    "Check",
                    "Checks",
                    "TTL",
                    "Behavior",
                    "LockDelay",
                    "KV",
                    "Verb",
                    "Key",
                    "Value",
                    "Meta",
                    "Definition",
                    "Weights",
                    "Coord",
                    "Datacenter",
                    "Status",
                    "Kind",
                    "Policies",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=20,
)
_params = st.dictionaries(
    st.sampled_from(
        [
            "index",
            "wait",
            "dc",
            "cas",
            "flags",
            "filter",
            "near",
            "stale",
            "tag",
            "recurse",
            "keys",
            "separator",
            "limit",
            "node-meta",
            "passing",
        ]
    ),
    st.one_of(_odd_text, st.integers(-5, 2**65).map(str), st.just("Service == web")),
    max_size=3,
)


def _request(node: Node, method: str, path: str, body: bytes | None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{node.http}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(2000).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with one_server(Path(tmp_path_factory.mktemp("fuzz")), "fuzz1", AGENT_IP) as node:
        yield node


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()  # lone surrogates as \ud800 escapes


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=st.sampled_from(WRITES), body=_json, params=_params)
def test_random_bodies_are_never_a_500(
    agent: Node, target: tuple[str, str], body: Any, params: dict[str, str]
) -> None:
    method, path = target
    status, text = _request(agent, method, f"{path}?{_query(params)}", _encode(body))
    assert status != 500 or _consul_500(text), (method, path, params, body, status, text)
    assert "Traceback" not in text and "Internal error" not in text


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(READS), params=_params)
def test_random_query_parameters_are_never_a_500(
    agent: Node, path: str, params: dict[str, str]
) -> None:
    params = {k: v for k, v in params.items() if k != "wait" and k != "index"} | {
        k: v for k, v in params.items() if k == "index" and not v.isdigit()
    }  # a valid ?index= would block: only the refused ones
    status, text = _request(agent, "GET", f"{path}?{_query(params)}", None)
    assert status != 500 or _consul_500(text), (path, params, status, text)
    assert "Traceback" not in text


def _query(params: dict[str, str]) -> str:
    """Lone surrogates go out as their (invalid) UTF-8 bytes: what a hostile client sends."""
    return urllib.parse.urlencode(
        {k: v.encode("utf-8", "surrogatepass") for k, v in params.items()}
    )


def _consul_500(text: str) -> bool:
    """500s Consul itself answers for a well-formed request the server cannot do (no such
    datacenter, a session that does not exist): the server's word, not a crash."""
    return text.startswith(
        (
            "No path to datacenter",
            "invalid session",
            "Invalid session",
            "Session ",
            "Missing node registration",
            "rpc error",
        )
    )


def test_afterwards_the_agent_answers_and_syncs(agent: Node) -> None:
    assert "Traceback" not in agent.log_text(), agent.log_text()[-4000:]
    status, text = _request(
        agent, "PUT", "/v1/agent/service/register", b'{"Name": "after-fuzz", "Port": 9}'
    )
    assert status == 200, text
    wait_for(
        lambda: "after-fuzz" in (agent.get_json("/v1/catalog/services") or {}),
        15,
        "anti-entropy to sync a service registered after the fuzzing",
    )
