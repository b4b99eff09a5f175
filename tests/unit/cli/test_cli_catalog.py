"""`senate catalog datacenters|nodes|services` against the real HTTP app of
tests/agent_double.py: Consul 1.x's columns, messages and query parameters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_double import AgentDouble, Served, serve_in_thread
from aiohttp import web

from agent.cli import dispatch
from agent.cli.catalog import format_nodes, format_services

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Served, list[Any]]]:
    """The double's agent, with every request's (path, query pairs) recorded."""
    for name in ("CONSUL_HTTP_ADDR", "SENATE_HTTP_ADDR", "CONSUL_HTTP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    seen: list[Any] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.path, list(request.query.items())))
        return await handler(request)  # type: ignore[no-any-return]

    agent = AgentDouble()
    with serve_in_thread(
        agent, middlewares=[record], on_start=agent.start, on_stop=agent.stop
    ) as served:
        yield served, seen


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.005)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_datacenters(
    recorded: tuple[Served, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    served, seen = recorded
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, "catalog", "datacenters", h) == (0, "mydc\n", "")
    assert seen[-1] == ("/v1/catalog/datacenters", [])
    rc, _, err = run(capsys, "catalog", "datacenters", h, "extra")
    assert (rc, err.splitlines()[0]) == (1, "Too many arguments (expected 0, got 1)")


def test_nodes_columns(
    recorded: tuple[Served, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    served, seen = recorded
    h = f"-http-addr={served.http_addr}"
    node_id = served.agent.node_id
    short = node_id.split("-")[0]
    assert run(capsys, "catalog", "nodes", h) == (
        0,
        "Node        ID        Address      DC\n"
        "ceph-debug            10.12.10.61  mydc\n"
        f"server1     {short}  10.12.10.37  mydc\n",
        "",
    )
    pad = " " * len(node_id)
    assert run(capsys, "catalog", "nodes", h, "-detailed") == (
        0,
        f"Node        ID{' ' * (len(node_id) - 2)}  Address      DC    TaggedAddresses"
        "                   Meta\n"
        f"ceph-debug  {pad}  10.12.10.61  mydc                                    \n"
        f"server1     {node_id}  10.12.10.37  mydc  lan=10.12.10.37, wan=10.12.10.37  \n",
        "",
    )
    assert run(capsys, "catalog", "nodes", h, "-service=consul") == (
        0,
        f"Node     ID        Address      DC\nserver1  {short}  10.12.10.37  mydc\n",
        "",
    )
    assert seen[-1] == ("/v1/catalog/service/consul", [])
    assert run(capsys, "catalog", "nodes", h, "-service=nope") == (
        0,
        "",
        "No nodes match the given query - try expanding your search.\n",
    )


def test_nodes_query_parameters(
    recorded: tuple[Served, list[Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    served, seen = recorded
    h = f"-http-addr={served.http_addr}"
    expr = tmp_path / "filter.txt"
    expr.write_text('Meta.env == "prod"')
    rc, _, err = run(
        capsys,
        "catalog",
        "nodes",
        h,
        "-near=_agent",
        "-node-meta",
        "rack=r1",
        "-node-meta=env=prod=yes",
        f"-filter=@{expr}",
        "-datacenter=mydc",
        "-stale=t",
    )
    assert (rc, err) == (0, "No nodes match the given query - try expanding your search.\n")
    assert seen[-1] == (
        "/v1/catalog/nodes",
        [
            ("dc", "mydc"),
            ("stale", ""),
            ("near", "_agent"),
            ("filter", 'Meta.env == "prod"'),
            ("node-meta", "env:prod=yes"),
            ("node-meta", "rack:r1"),
        ],
    )
    # the server filters: no node has that metadata; the expression picks one node
    assert run(capsys, "catalog", "nodes", h, "-node-meta=rack=r1") == (
        0,
        "",
        "No nodes match the given query - try expanding your search.\n",
    )
    rc, out, _ = run(capsys, "catalog", "nodes", h, '-filter=Node == "ceph-debug"')
    assert (rc, out) == (0, "Node        ID  Address      DC\nceph-debug      10.12.10.61  mydc\n")
    rc, _, err = run(capsys, "catalog", "nodes", h, "-filter=Node ==")
    assert rc == 1 and err.startswith("Error listing nodes: Unexpected response code: 400")
    rc, _, err = run(capsys, "catalog", "nodes", h, "-node-meta=rack")
    assert rc == 1
    assert err.splitlines()[0] == (
        'invalid value "rack" for flag -node-meta: Missing "=" value in argument: rack'
    )
    rc, _, err = run(capsys, "catalog", "nodes", h, f"-filter=@{tmp_path / 'nope'}")
    assert rc == 1 and err.startswith("Could not process filter argument: Failed to read file")


def test_services(recorded: tuple[Served, list[Any]], capsys: pytest.CaptureFixture[str]) -> None:
    served, seen = recorded
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, "services", "register", h, "-name=web", "-tag=v2", "-tag=a")[0] == 0
    assert run(capsys, "services", "register", h, "-name=db", "-id=db1")[0] == 0
    # anti-entropy syncs the agent's new services into the catalog
    wait_until(lambda: set(served.agent.state.services()[1]) == {"consul", "web", "db"})
    assert run(capsys, "catalog", "services", h) == (0, "consul\ndb\nweb\n", "")
    # Go's tabwriter pads every cell of the column, the name of a service without tags too
    tagged = "consul      \ndb          \nweb         a,v2\n"
    assert run(capsys, "catalog", "services", h, "-tags") == (0, tagged, "")
    assert run(capsys, "catalog", "services", h, "-node=server1", "-tags=1") == (0, tagged, "")
    assert seen[-1] == ("/v1/catalog/node/server1", [])
    assert run(capsys, "catalog", "services", h, "-node=nobody") == (
        0,
        "",
        "No services match the given query - try expanding your search.\n",
    )
    run(capsys, "catalog", "services", h, "-node-meta=a=b", "-tags=false")
    assert seen[-1] == ("/v1/catalog/services", [("node-meta", "a:b")])


def test_formats_as_consul() -> None:
    nodes = [
        {
            "ID": "e4e9ea2d-a1a9-3a44-7acf-0d7a8ee2d8ec",
            "Node": "node-1",
            "Address": "10.0.0.1",
            "Datacenter": "dc1",
            "TaggedAddresses": {"wan": "1.2.3.4", "lan": "10.0.0.1"},
            "Meta": {"rack": "r1", "env": "prod"},
        },
        {"ID": "", "Node": "n2", "Address": "10.0.0.22", "Datacenter": "dc1", "Meta": None},
    ]
    assert format_nodes(nodes, False) == (
        "Node    ID        Address    DC\nnode-1  e4e9ea2d  10.0.0.1   dc1\nn2                10.0.0.22  dc1\n"
    )
    assert format_nodes(nodes, True).splitlines() == [
        "Node    ID                                    Address    DC   TaggedAddresses"
        + " " * 12
        + "Meta",
        "node-1  e4e9ea2d-a1a9-3a44-7acf-0d7a8ee2d8ec  10.0.0.1   dc1  lan=10.0.0.1, wan=1.2.3.4"
        "  env=prod, rack=r1",
        "n2" + " " * 44 + "10.0.0.22  dc1  " + " " * 25 + "  ",  # empty cells still padded
    ]
    services = {"redis": ["v1", "primary"], "consul": [], "a-long-service-name": ["x"]}
    assert format_services(services, False) == "a-long-service-name\nconsul\nredis"
    assert format_services(services, True) == (
        "a-long-service-name      x\nconsul                   \nredis                    primary,v1"
    )
