"""The agent registration endpoints over HTTP: Consul's paths, JSON, status codes and messages;
bad input is a 400/404 that changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agent_double import WithoutACLs
from aiohttp.test_utils import TestClient, TestServer

from agent.http.app import make_app
from agent.local.registry import LocalRegistry
from agent.local.state import LocalState


class RegistryAgent(WithoutACLs):
    """Just enough of an agent for /v1/agent/{service,check,maintenance}/*."""

    node_name = "node1"
    datacenter = "dc1"
    is_server = False

    def __init__(self, data_dir: Path) -> None:
        self.local = LocalState(node_name=self.node_name)
        self.registry = LocalRegistry(state=self.local, data_dir=data_dir)

    def local_services(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.local.services.items()}

    def local_checks(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.local.checks.items()}


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[RegistryAgent]:
    a = RegistryAgent(tmp_path)
    try:
        yield a
    finally:
        await a.registry.stop()


@pytest.fixture
async def client(agent: RegistryAgent) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(make_app(agent))) as c:  # type: ignore[arg-type]
        yield c


async def put(client: TestClient, path: str, body: Any = None) -> tuple[int, str]:  # type: ignore[type-arg]
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    resp = await client.put(path, data=data)
    return resp.status, await resp.text()


async def get(client: TestClient, path: str) -> Any:  # type: ignore[type-arg]
    resp = await client.get(path)
    assert resp.status == 200
    return await resp.json()


WEB = {
    "Name": "web",
    "ID": "web1",
    "Tags": ["primary"],
    "Address": "10.0.0.7",
    "Port": 8080,
    "Meta": {"version": "1"},
    "EnableTagOverride": True,
    "Check": {"TTL": "15s", "Notes": "app heartbeat"},
}


async def test_service_register_shows_in_agent_services_and_checks(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    assert await put(client, "/v1/agent/service/register", WEB) == (200, "")
    services = await get(client, "/v1/agent/services")
    assert services == {
        "web1": {
            "ID": "web1",
            "Service": "web",
            "Tags": ["primary"],
            "Address": "10.0.0.7",
            "Port": 8080,
            "Meta": {"version": "1"},
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": True,
            "Datacenter": "dc1",
        }
    }
    checks = await get(client, "/v1/agent/checks")
    assert checks == {
        "service:web1": {
            "Node": "node1",
            "CheckID": "service:web1",
            "Name": "Service 'web' check",
            "Status": "critical",
            "Notes": "app heartbeat",
            "Output": "",
            "ServiceID": "web1",
            "ServiceName": "web",
        }
    }


async def test_ttl_pass_warn_fail_update(client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await put(client, "/v1/agent/service/register", WEB))[0] == 200
    for verb, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
        assert await put(client, f"/v1/agent/check/{verb}/service:web1?note=n-{verb}") == (200, "")
        chk = (await get(client, "/v1/agent/checks"))["service:web1"]
        assert (chk["Status"], chk["Output"]) == (status, f"n-{verb}")
    body = {"Status": "passing", "Output": "from update"}
    assert await put(client, "/v1/agent/check/update/service:web1", body) == (200, "")
    chk = (await get(client, "/v1/agent/checks"))["service:web1"]
    assert (chk["Status"], chk["Output"]) == ("passing", "from update")
    assert await put(client, "/v1/agent/check/update/service:web1", {"Status": "fine"}) == (
        400,
        "Invalid check status: 'fine'",
    )


async def test_check_register_and_deregister(client: TestClient, agent: RegistryAgent) -> None:  # type: ignore[type-arg]
    assert (await put(client, "/v1/agent/service/register", WEB))[0] == 200
    body = {"Name": "Memory", "ID": "mem", "TTL": "30s", "Status": "passing", "ServiceID": "web1"}
    assert await put(client, "/v1/agent/check/register", body) == (200, "")
    chk = (await get(client, "/v1/agent/checks"))["mem"]
    assert (chk["Status"], chk["ServiceName"], chk["Name"]) == ("passing", "web", "Memory")
    # the ID defaults to the name
    assert (await put(client, "/v1/agent/check/register", {"Name": "disk", "TTL": "1m"}))[0] == 200
    assert "disk" in await get(client, "/v1/agent/checks")
    assert await put(client, "/v1/agent/check/deregister/mem") == (200, "")
    assert await put(client, "/v1/agent/service/deregister/web1") == (200, "")
    assert await get(client, "/v1/agent/services") == {}
    assert set(await get(client, "/v1/agent/checks")) == {"disk"}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/agent/service/register", {"Port": 80}, 400, "Missing service name"),
        ("/v1/agent/service/register", "{not json", 400, "Request decode failed: "),
        ("/v1/agent/service/register", None, 400, "Request decode failed: EOF"),
        (
            "/v1/agent/service/register",
            {"Name": "web", "Check": {"Interval": "10s"}},
            400,
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            "/v1/agent/service/register",
            {"Name": "web", "Check": {"HTTP": "http://127.0.0.1:1/"}},
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks",
        ),
        (
            "/v1/agent/service/register",
            {"Name": "web", "Check": {"TTL": "abc"}},
            400,
            'Request decode failed: time: invalid duration "abc"',
        ),
        (
            "/v1/agent/service/register",
            {"Name": "web", "Checks": [{"TTL": "5s"}, {"Script": "true", "Interval": "5s"}]},
            400,
            "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' to true",
        ),
        (
            "/v1/agent/service/register",
            {"Name": "web", "Port": "80"},
            400,
            "Request decode failed: Port: expected",
        ),
        (
            "/v1/agent/service/register",
            {"Name": "web", "Address": "0.0.0.0"},
            400,
            "Invalid service address",
        ),
        (
            "/v1/agent/service/register",
            {"Name": "web", "Meta": {"consul-version": "1"}},
            400,
            "Invalid Service Meta: Key prefix 'consul-' is reserved for internal use",
        ),
        ("/v1/agent/check/register", {"TTL": "10s"}, 400, "Missing check name"),
        (
            "/v1/agent/check/register",
            {"Name": "c", "TTL": "1s", "Status": "ok"},
            400,
            "Bad check status",
        ),
        (
            "/v1/agent/check/register",
            {"Name": "c", "TTL": "1s", "ServiceID": "nope"},
            404,
            'ServiceID "nope" does not exist',
        ),
        (
            "/v1/agent/check/register",
            {"Name": "c", "GRPC": "127.0.0.1:9000", "Interval": "5s"},
            400,
            "Invalid check: gRPC checks are not supported by senate",
        ),
        (
            "/v1/agent/service/deregister/nope",
            None,
            404,
            'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.',
        ),
        (
            "/v1/agent/check/deregister/nope",
            None,
            404,
            'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.',
        ),
        ("/v1/agent/check/pass/nope", None, 404, 'Unknown check ID "nope"'),
        ("/v1/agent/service/maintenance/web1", None, 400, "Missing value for enable"),
        (
            "/v1/agent/service/maintenance/web1?enable=yes",
            None,
            400,
            'Invalid value for enable: "yes"',
        ),
        (
            "/v1/agent/service/maintenance/nope?enable=true",
            None,
            404,
            'No service registered with ID "nope"',
        ),
        ("/v1/agent/maintenance?enable=maybe", None, 400, 'Invalid value for enable: "maybe"'),
    ],
)
async def test_bad_input_is_refused_with_consul_messages_and_changes_nothing(
    client: TestClient,  # type: ignore[type-arg]
    agent: RegistryAgent,
    path: str,
    body: Any,
    status: int,
    message: str,
) -> None:
    assert (await put(client, "/v1/agent/service/register", WEB))[0] == 200
    before = (await get(client, "/v1/agent/services"), await get(client, "/v1/agent/checks"))
    files = sorted(agent.registry.data_dir.rglob("*"))  # type: ignore[union-attr]
    got_status, got_body = await put(client, path, body)
    assert got_status == status
    assert got_body.startswith(message)
    after = (await get(client, "/v1/agent/services"), await get(client, "/v1/agent/checks"))
    assert after == before
    assert sorted(agent.registry.data_dir.rglob("*")) == files  # type: ignore[union-attr]


async def test_pass_on_a_check_without_ttl_is_consul_500(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    body = {"Name": "port", "TCP": "127.0.0.1:1", "Interval": "10s"}
    assert (await put(client, "/v1/agent/check/register", body))[0] == 200
    assert await put(client, "/v1/agent/check/pass/port") == (
        500,
        'CheckID "port" does not have associated TTL',
    )


async def test_service_and_node_maintenance(client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await put(client, "/v1/agent/service/register", WEB))[0] == 200
    assert await put(client, "/v1/agent/service/maintenance/web1?enable=true&reason=upgrade") == (
        200,
        "",
    )
    chk = (await get(client, "/v1/agent/checks"))["_service_maintenance:web1"]
    assert (chk["Status"], chk["Notes"], chk["ServiceName"]) == ("critical", "upgrade", "web")
    assert (await put(client, "/v1/agent/service/maintenance/web1?enable=false"))[0] == 200
    assert "_service_maintenance:web1" not in await get(client, "/v1/agent/checks")
    assert (await put(client, "/v1/agent/maintenance?enable=1"))[0] == 200
    chk = (await get(client, "/v1/agent/checks"))["_node_maintenance"]
    assert (chk["Name"], chk["Status"], chk["ServiceID"]) == (
        "Node Maintenance Mode",
        "critical",
        "",
    )
    assert chk["Notes"].startswith("Maintenance mode is enabled for this node")
    assert (await put(client, "/v1/agent/maintenance?enable=false"))[0] == 200
    assert "_node_maintenance" not in await get(client, "/v1/agent/checks")


async def test_a_get_updates_no_check(client: TestClient) -> None:  # type: ignore[type-arg]
    """Consul 0.7 took a GET here, Consul 1.x answers 405: a GET is what any web page can
    make a browser send."""
    assert (await put(client, "/v1/agent/check/register", {"Name": "hb", "TTL": "30s"}))[0] == 200
    resp = await client.get("/v1/agent/check/pass/hb?note=via%20GET")
    assert (resp.status, await resp.text()) == (405, "method GET not allowed")
    assert (await get(client, "/v1/agent/checks"))["hb"]["Status"] == "critical"


async def test_check_ids_with_slashes(client: TestClient) -> None:  # type: ignore[type-arg]
    body = {"Name": "x", "ID": "app/db", "TTL": "30s"}
    assert (await put(client, "/v1/agent/check/register", body))[0] == 200
    assert (await put(client, "/v1/agent/check/pass/app/db"))[0] == 200
    assert (await get(client, "/v1/agent/checks"))["app/db"]["Status"] == "passing"


def random_value(rng: Any, depth: int = 0) -> Any:
    kinds = ["str", "int", "bool", "null", "float", "dur"] + (["list", "dict"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["", "web", "10s", "x" * 300, "http://127.0.0.1:1/", "ü", "a:1"])
    if kind == "int":
        return rng.choice([0, -1, 80, 70000, 2**70])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.choice([1.5, -3.0, 1e300])
    if kind == "dur":
        return rng.choice(["1s", "-5s", "abc", "10", "1h2m", "0"])
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "null":
        return None
    keys = [
        "Name",
        "ID",
        "Tags",
        "Port",
        "Meta",
        "Check",
        "Checks",
        "TTL",
        "HTTP",
        "TCP",
        "Interval",
        "Timeout",
        "Args",
        "Script",
        "Status",
        "Header",
        "ServiceID",
        "GRPC",
        "TLSSkipVerify",
        "DeregisterCriticalServiceAfter",
        "Address",
        "Output",
        "enable",
    ]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


async def test_fuzzed_registrations_are_answered_never_with_a_500(
    client: TestClient,  # type: ignore[type-arg]
    agent: RegistryAgent,
) -> None:
    import random

    rng = random.Random(7)
    paths = [
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/agent/check/update/x",
    ]
    seen: dict[int, int] = {}
    for _ in range(400):
        body = random_value(rng)
        if rng.random() < 0.7:
            body = {"Name": "svc", **body} if isinstance(body, dict) else body
        status, text = await put(client, rng.choice(paths), body)
        seen[status] = seen.get(status, 0) + 1
        assert status in (200, 400, 404), (status, text, body)
        assert "Traceback" not in text
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0
    await agent.registry.stop()  # whatever was registered stops cleanly
