"""Bad and hostile input at the HTTP edge of a real agent: each is a 4xx with a message (never
a 500 or a Python exception text), nothing is half-applied, the agent answers afterwards and
anti-entropy still syncs; browser-borne requests from other sites are refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, Node, one_server, start_server, wait_for

pytestmark = pytest.mark.timeout(90)

AGENT_IP = "127.18.0.1"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with one_server(Path(tmp_path_factory.mktemp("hostile")), "hostile1", AGENT_IP) as node:
        yield node


def put(node: Node, path: str, body: bytes | str, **headers: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(f"http://{node.http}{path}", data=data, method="PUT")
    for k, v in headers.items():
        req.add_header(k.replace("_", "-"), v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def no_traceback(node: Node) -> None:
    log = node.log_text()
    assert "Traceback" not in log and "Internal error" not in log, log[-3000:]


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        # a lone surrogate: it cannot be stored, sent to a server or written to disk
        ("/v1/agent/service/register", r'{"Name": "\ud800"}', "invalid UTF-16 surrogate"),
        ("/v1/catalog/register", r'{"Node": "n\udc00", "Address": "1.2.3.4"}', "surrogate"),
        # integers past 64 bits, NaN, nesting past any struct's depth
        ("/v1/agent/service/register", '{"Name": "w", "Port": 18446744073709551616}', "overflows"),
        ("/v1/txn", "[" * 100_000 + "]" * 100_000, "nested deeper than 64"),
        ("/v1/session/create", '{"LockDelay": NaN}', "invalid character 'N'"),
        # wrong types are refused before they reach the raft log
        ("/v1/catalog/register", '{"Node": 5, "Address": "1.2.3.4"}', "Node: expected a string"),
        (
            "/v1/catalog/register",
            '{"Node": "n1", "Address": "1.2.3.4", "Service": {"Service": "s", "Tags": 5}}',
            "Service.Tags: expected a list of strings, got 5",
        ),
        (
            "/v1/catalog/register",
            '{"Node": "n1", "Address": "1.2.3.4", "Check": {"Name": "c", "ServiceTags": [1]}}',
            "Check.ServiceTags[0]: expected a string",
        ),
        ("/v1/session/create", '{"TTL": "1_0s"}', "Session TTL '1_0s' invalid"),
    ],
)
def test_bad_bodies_are_400_with_a_message(
    agent: Node, path: str, body: str, expected: str
) -> None:
    index_before = agent.get_json("/v1/catalog/nodes")
    status, text = put(agent, path, body)
    assert status == 400, (status, text)
    assert expected in text and "Traceback" not in text
    assert agent.get_json("/v1/catalog/nodes") == index_before  # nothing half-applied
    no_traceback(agent)


def test_a_refused_registration_does_not_poison_anti_entropy(agent: Node) -> None:
    status, _ = put(agent, "/v1/agent/service/register", r'{"Name": "\ud800"}')
    assert status == 400
    assert "\ud800" not in json.dumps(agent.get_json("/v1/agent/services"))
    status, text = put(agent, "/v1/agent/service/register", '{"Name": "after-bad", "Port": 1}')
    assert status == 200, text
    wait_for(
        lambda: "after-bad" in (agent.get_json("/v1/catalog/services") or {}),
        10,
        "the next registration in the catalog",
    )


def test_query_integers_are_go_integers(agent: Node) -> None:
    for raw in ("1_000", "%2B5", "%207", "%D9%A1%D9%A2"):  # "+5", " 7", Arabic-Indic digits
        status, body, _ = agent.request("GET", f"/v1/kv/x?index={raw}")
        assert (status, body) == (400, b"Invalid index"), raw
        status, body, _ = agent.request("PUT", f"/v1/kv/x?cas={raw}", b"v")
        assert status == 400 and b"is not an unsigned integer" in body, raw
    status, body, _ = agent.request("GET", "/v1/kv/x?index=18446744073709551616")
    assert status == 400


def test_state_changes_want_put(agent: Node) -> None:
    """Consul 1.x answers 405 to a GET on join, force-leave and the TTL check updates: a GET is
    what any web page can make a browser send."""
    for path in (
        "/v1/agent/join/127.0.0.9",
        "/v1/agent/force-leave/someone",
        "/v1/agent/check/pass/x",
        "/v1/agent/check/deregister/x",
    ):
        status, body, _ = agent.request("GET", path)
        assert (status, body) == (405, b"method GET not allowed"), path


def test_an_event_filter_is_re2_and_costs_linear_time(agent: Node) -> None:
    """(a+)+$ against "aaaa...!" is exponential in a backtracking engine (9 s at 26 letters);
    RE2 answers at once, and the agent keeps answering."""
    name = "a" * 40 + "!"
    status, text = put(agent, "/v1/agent/service/register", json.dumps({"Name": name}))
    assert status == 200, text
    t0 = time.monotonic()
    status, text = put(agent, "/v1/event/fire/regex?service=(a%2B)%2B$", b"")
    assert status == 200, text
    for _ in range(5):
        status, _body, _ = agent.request("GET", "/v1/agent/self", timeout=2)
        assert status == 200
    # events are handled in order: once the next one (whose filter matches) is listed, the
    # first was evaluated against the service name, and filtered out
    status, text = put(agent, "/v1/event/fire/after?service=%5Ea%2B!$", b"")
    assert status == 200, text
    wait_for(lambda: agent.get_json("/v1/event/list?name=after"), 5, "the second event in the list")
    assert agent.get_json("/v1/event/list?name=regex") == []
    assert time.monotonic() - t0 < 3
    status, text = put(agent, "/v1/event/fire/bad?node=(", b"")
    assert status == 400 and "Invalid node filter" in text


def test_cross_site_browser_requests_are_refused(agent: Node) -> None:
    # a page of another site posting a "simple" request (no preflight) to write KV
    status, text = put(agent, "/v1/kv/csrf", "x", Origin="http://evil.example")
    assert status == 403 and "Origin http://evil.example is not allowed" in text
    status, text = put(agent, "/v1/kv/csrf", "x", Sec_Fetch_Site="cross-site")
    assert status == 403
    # DNS rebinding: the attacker's name resolves to the agent, so the page is same-origin
    host = f"evil.example:{agent.http.rsplit(':', 1)[1]}"
    status, text = put(agent, "/v1/kv/csrf", "x", Host=host, Origin=f"http://{host}")
    assert status == 403 and "is not a name this agent is known by" in text
    assert agent.request("GET", "/v1/kv/csrf")[0] == 404  # none of them wrote
    # the agent's own pages, and every non-browser client, go on as before
    same = f"http://{agent.http}"
    assert put(agent, "/v1/kv/same", "x", Origin=same, Sec_Fetch_Site="same-origin")[0] == 200
    assert put(agent, "/v1/kv/cli", "x")[0] == 200
    assert "Refused browser request PUT /v1/kv/csrf" in agent.log_text()


def test_allowed_origins_let_a_page_in(cluster: Cluster) -> None:
    config = {"http_config": {"allowed_origins": ["https://ops.example"]}}
    node = start_server(cluster, "origins1", "127.18.0.2", config)
    assert put(node, "/v1/kv/ok", "x", Origin="https://ops.example")[0] == 200
    assert put(node, "/v1/kv/no", "x", Origin="https://other.example")[0] == 403


def test_rpc_connections_per_client_are_limited(cluster: Cluster) -> None:
    """limits.rpc_max_conns_per_client: the connection past it is closed at once, unanswered,
    and said so in the log (once); the ones held and the agent's own go on."""
    import socket

    node = start_server(
        cluster, "limits1", "127.18.0.3", {"limits": {"rpc_max_conns_per_client": 3}}
    )
    held = [socket.create_connection(("127.18.0.3", 8300), timeout=2) for _ in range(3)]
    try:
        extra = socket.create_connection(("127.18.0.3", 8300), timeout=2)
        extra.settimeout(2)
        t0 = time.monotonic()
        assert extra.recv(1) == b""  # closed by the server, long before the handshake timeout
        assert time.monotonic() - t0 < 1.5
        extra.close()
        wait_for(
            lambda: "because rpc_max_conns_per_client (3) exceeded" in node.log_text(),
            5,
            "the refusal in the log",
        )
        assert node.request("PUT", "/v1/kv/still", b"ok")[0] == 200
    finally:
        for s in held:
            s.close()


def test_http_connections_per_client_are_limited(cluster: Cluster) -> None:
    """limits.http_max_conns_per_client: idle connections held by one client no longer take
    the API's file descriptors; the one past the limit is closed at once and logged."""
    import socket

    limits = {"limits": {"http_max_conns_per_client": 4}}
    node = start_server(cluster, "hlimits1", "127.18.0.4", limits)
    held = [socket.create_connection(("127.18.0.4", 8500), timeout=2) for _ in range(4)]
    try:
        extra = socket.create_connection(("127.18.0.4", 8500), timeout=2)
        extra.settimeout(2)
        try:
            extra.sendall(b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = extra.recv(100)
        except ConnectionResetError:  # aborted: the reset may beat our request
            answer = b""
        assert answer == b""  # closed unanswered
        extra.close()
        wait_for(
            lambda: "because http_max_conns_per_client (4) exceeded" in node.log_text(),
            5,
            "the refusal in the log",
        )
    finally:
        for s in held:
            s.close()
    # the held ones gone, the client is served again
    wait_for(lambda: node.request("GET", "/v1/agent/self")[0] == 200, 5, "the API again")
