"""A datacenter of real `senate agent` processes on 127.5.x.y (the datacenter's end-to-end proof).

One module-scoped datacenter (3 servers with -bootstrap-expect=3 and 2 clients) is shared by
the tests in file order: membership, a wrong-datacenter client, a second datacenter over WAN,
then the destructive one — 2,000 concurrent KV writes with the leader SIGKILLed mid-way.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, Node, run_cli, wait_for

pytestmark = pytest.mark.timeout(240)

SERVERS = ["127.5.0.1", "127.5.0.2", "127.5.0.3"]
CLIENTS = ["127.5.0.11", "127.5.0.12"]


@pytest.fixture(scope="module")
def dc1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dc1"))
    try:
        for i, ip in enumerate(SERVERS, 1):
            others = [s for s in SERVERS if s != ip]
            c.add(f"s{i}", ip, server=True, bootstrap_expect=3, retry_join=others)
        for i, ip in enumerate(CLIENTS, 1):
            c.add(f"c{i}", ip, retry_join=SERVERS)
        c.start_all()
        c.wait_http(c.nodes.values(), timeout=30)
        c.wait_leader(c.nodes.values(), timeout=30)
        yield c
    except BaseException:
        sys.stderr.write("\n" + c.dump_logs() + "\n")
        raise
    finally:
        c.cleanup()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "dc1" in request.fixturenames:
        sys.stderr.write("\n" + request.getfixturevalue("dc1").dump_logs(tail=40) + "\n")


def _servers(c: Cluster) -> list[Node]:
    return [c.nodes[f"s{i}"] for i in (1, 2, 3)]


def test_three_servers_two_clients_elect_and_see_five_alive(dc1: Cluster) -> None:
    names = {"s1", "s2", "s3", "c1", "c2"}
    for node in dc1.nodes.values():
        wait_for(lambda n=node: n.alive_members() == names, 20, f"5 alive members on {node.name}")  # type: ignore[misc]
    leader = dc1.wait_leader(dc1.nodes.values(), timeout=10)
    assert leader in {f"{ip}:8300" for ip in SERVERS}
    peers = dc1.nodes["c1"].get_json("/v1/status/peers")
    assert sorted(peers) == sorted(f"{ip}:8300" for ip in SERVERS)
    # Exactly one bootstrap happened, and the catalog knows every node with serfHealth passing.
    assert sum("attempting bootstrap" in n.log_text() for n in _servers(dc1)) >= 1
    wait_for(
        lambda: {n["Node"] for n in dc1.nodes["c2"].get_json("/v1/catalog/nodes")} == names,
        20,
        "5 nodes in the catalog",
    )
    checks = dc1.nodes["s1"].get_json("/v1/health/state/passing")
    assert {c["Node"] for c in checks if c["CheckID"] == "serfHealth"} == names
    wait_for(
        lambda: (
            sorted(s["Address"] for s in dc1.nodes["c1"].get_json("/v1/catalog/service/consul"))
            == sorted(SERVERS)
        ),
        20,
        "the consul service registered by every server",
    )
    # Every agent sends its network coordinate to the servers; `senate rtt` uses them.
    wait_for(
        lambda: {c["Node"] for c in dc1.nodes["s1"].get_json("/v1/coordinate/nodes")} == names,
        30,
        "coordinates of all 5 nodes",
    )
    rtt = run_cli(["rtt", f"-http-addr={dc1.nodes['c1'].http}", "c1", "s1"])
    assert rtt.returncode == 0 and rtt.stdout.startswith("Estimated c1 <-> s1 rtt: "), rtt
    assert rtt.stdout.rstrip().endswith("ms (using LAN coordinates)")
    # `senate members` prints Consul's table.
    out = run_cli(["members", f"-http-addr={dc1.nodes['c1'].http}", f"-rpc-addr={CLIENTS[0]}:8400"])
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0].split()
    assert header == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC"]
    assert len(out.stdout.splitlines()) == 6 and out.stdout.count("alive") == 5


def test_client_of_another_datacenter_is_refused(dc1: Cluster, tmp_path: Path) -> None:
    with Cluster(tmp_path) as c:
        bad = c.add("wrongdc", "127.5.0.21", datacenter="mydc", join=[SERVERS[0]])
        bad.start()
        assert bad.proc is not None
        code = bad.proc.wait(30)
        text = bad.log_text()
        assert code == 1, text
        assert "==> Joining cluster..." in text
        assert "==> 1 error(s) occurred:" in text
        assert "part of wrong datacenter 'dc1'" in text
        assert "Failed to join 127.5.0.1" in text
        assert "Traceback" not in text


def test_second_datacenter_over_wan(dc1: Cluster, tmp_path: Path) -> None:
    with Cluster(tmp_path) as c:
        d2 = c.add(
            "d2s1",
            "127.5.1.1",
            server=True,
            bootstrap=True,
            datacenter="dc2",
            extra=["-disable-remote-exec=false"],  # the exec across datacenters below
        )
        d2.start()
        c.wait_http([d2])
        c.wait_leader([d2])
        out = run_cli(
            ["join", "-wan", f"-rpc-addr={d2.ip}:8400", f"-http-addr={d2.http}", SERVERS[0]]
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Successfully joined cluster by contacting 1 nodes." in out.stdout
        wan_names = {"s1.dc1", "s2.dc1", "s3.dc1", "d2s1.dc2"}
        for node in [d2, *_servers(dc1)]:
            wait_for(
                lambda n=node: n.alive_members(wan=True) == wan_names,
                20,
                f"WAN members on {node.name}",
            )  # type: ignore[misc]
        out = run_cli(
            ["members", "-wan", f"-rpc-addr={SERVERS[1]}:8400", f"-http-addr={SERVERS[1]}:8500"]
        )
        assert out.returncode == 0, out.stderr
        for name in wan_names:
            assert name in out.stdout
        # ?dc= is forwarded both ways: a write through dc1's client lands in dc2.
        status, body, _ = dc1.nodes["c1"].request("PUT", "/v1/kv/cross?dc=dc2", b"from-dc1")
        assert status == 200 and body.strip() == b"true"
        got = d2.get_json("/v1/kv/cross")
        assert base64.b64decode(got[0]["Value"]) == b"from-dc1"
        assert dc1.nodes["s2"].get_json("/v1/kv/cross?dc=dc2")[0]["Key"] == "cross"
        dcs = dc1.nodes["c2"].get_json("/v1/catalog/datacenters")
        assert dcs[0] == "dc1" and "dc2" in dcs
        # A user event fired from dc1 into dc2 reaches dc2's agents, not dc1's.
        status, body, _ = dc1.nodes["c1"].request("PUT", "/v1/event/fire/cross-dc?dc=dc2", b"p")
        assert status == 200, body
        event_id = json.loads(body)["ID"]
        wait_for(
            lambda: any(e["ID"] == event_id for e in d2.get_json("/v1/event/list")),
            20,
            "dc2's agent to see the event fired from dc1",
        )
        assert all(e["ID"] != event_id for e in dc1.nodes["c1"].get_json("/v1/event/list"))
        # Remote exec into dc2 from dc1's client (Consul's createSessionForeign).
        r = run_cli(["exec", f"-http-addr={dc1.nodes['c1'].http}", "-datacenter=dc2", "echo far"])
        assert "Traceback" not in r.stderr
        assert r.returncode == 0, r.stdout + r.stderr
        assert "    d2s1: far" in r.stdout
        assert "1 / 1 node(s) completed / acknowledged" in r.stdout


async def _write_all(
    nodes: list[Node], n: int, concurrency: int, on_progress: asyncio.Event, kill_after: int
) -> dict[str, bytes]:
    """PUT n keys through the servers' HTTP APIs; returns the acknowledged ones."""
    acked: dict[str, bytes] = {}
    errors: collections.Counter[str] = collections.Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    timeout = aiohttp.ClientTimeout(total=15)
    deadline = time.monotonic() + 120

    async def worker(w: int, session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            key, value = f"load/{i:05d}", f"v{i}".encode()
            # As a client library does: a write that fails (a dead server refuses at once, a
            # leaderless one errors) is retried on the next server, a few times, so the dead
            # server does not just burn through the work while the others fail over.
            for attempt in range(6):
                node = nodes[(i + w + attempt) % len(nodes)]
                try:
                    url = f"http://{node.http}/v1/kv/{key}"
                    async with session.put(url, data=value) as resp:
                        body = await resp.read()
                        if resp.status == 200 and body.strip() == b"true":
                            acked[key] = value
                            if len(acked) >= kill_after:
                                on_progress.set()
                            break
                        errors[body.decode(errors="replace")[:60]] += 1
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    errors[type(exc).__name__] += 1  # not acknowledged: no promise was made
                await asyncio.sleep(0.1 * attempt)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(w, session) for w in range(concurrency)))
    sys.stderr.write(f"writes: {len(acked)} acknowledged; failures: {dict(errors)}\n")
    return acked


def test_operator_transfers_leadership(dc1: Cluster) -> None:
    """`senate operator raft transfer-leader` (HTTP POST /v1/operator/raft/transfer-leader)
    moves leadership without an election timeout: to any voter, then to a chosen one."""
    before = dc1.wait_leader(dc1.nodes.values(), timeout=10)
    via = f"-http-addr={dc1.nodes['c1'].http}"
    r = run_cli(["operator", "raft", "transfer-leader", via])
    assert r.returncode == 0 and r.stdout.startswith("Success! Leadership transferred"), r

    def new_leader() -> str | None:
        now = dc1.nodes["c2"].leader()
        return now if now and now != before else None

    after = wait_for(new_leader, 10, "a new leader after the transfer")
    # -id is the node ID the raft configuration shows (Consul 1.x, raft protocol 3)
    for _ in range(2):
        servers = dc1.nodes["c1"].get_json("/v1/operator/raft/configuration")["Servers"]
        other = next(s for s in servers if s["Address"] != after)
        assert other["ID"] != other["Address"] and other["ProtocolVersion"] == "3"
        r = run_cli(["operator", "raft", "transfer-leader", via, f"-id={other['ID']}"])
        assert r.returncode == 0, r
        after = other["Address"]
        wait_for(lambda a=after: dc1.nodes["c1"].leader() == a, 10, "leadership by node ID")  # type: ignore[misc]
    r = run_cli(["operator", "raft", "transfer-leader", via, "-id=10.9.9.9:8300"])
    assert r.returncode == 1 and "cannot find peer" in r.stderr, r


def test_leader_killed_during_2000_writes_loses_no_acknowledged_write(dc1: Cluster) -> None:
    servers = _servers(dc1)
    leader_addr = dc1.wait_leader(servers, timeout=10)
    old = dc1.node_by_server_addr(leader_addr)
    survivors = [s for s in servers if s is not old]
    timings: dict[str, float] = {}

    async def scenario() -> dict[str, bytes]:
        progress = asyncio.Event()
        writes = asyncio.create_task(_write_all(servers, 2000, 64, progress, kill_after=700))
        await asyncio.wait_for(progress.wait(), 60)
        old.kill()
        killed = time.monotonic()

        def new_leader() -> str | None:
            seen = {s.leader() for s in survivors}
            if len(seen) == 1 and "" not in seen and leader_addr not in seen:
                return seen.pop()
            return None

        await asyncio.to_thread(wait_for, new_leader, 15, "a new leader")
        timings["failover"] = time.monotonic() - killed
        return await writes

    try:
        acked = asyncio.run(scenario())
        sys.stderr.write(f"failover: new leader {timings['failover']:.2f}s after SIGKILL\n")
        assert timings["failover"] < 5.0, timings
        assert len(acked) >= 1500, f"only {len(acked)} writes acknowledged"
        # Every acknowledged write is readable (consistent read through a surviving server).
        reader = survivors[0]
        entries = reader.get_json("/v1/kv/load/?recurse&consistent", timeout=30)
        stored = {e["Key"]: base64.b64decode(e["Value"]) for e in entries}
        missing = [k for k, v in acked.items() if stored.get(k) != v]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        # Clients keep working: a client whose server died rotates to another one.
        some_key = next(iter(acked))
        for client in (dc1.nodes["c1"], dc1.nodes["c2"]):
            for _ in range(3):
                status, body, _ = client.request("GET", f"/v1/kv/{some_key}")
                assert status == 200, (client.name, status, body[:200])
    finally:
        # The old leader restarts, rejoins as a follower and catches up -- also when an
        # assertion above failed, so the module's cluster is whole for the next tests.
        if not old.running():
            old.start()
        dc1.wait_http([old], timeout=30)
    # All three agree on one leader again (the old one may win a later election).
    assert dc1.wait_leader(servers, timeout=30) in {s.server_addr for s in servers}

    def caught_up() -> bool:
        got = old.get_json("/v1/kv/load/?recurse&stale", timeout=10)
        have = {e["Key"]: base64.b64decode(e["Value"]) for e in got or []}
        return all(have.get(k) == v for k, v in acked.items())

    wait_for(caught_up, 30, "the restarted old leader to catch up")
    # It rejoined as a follower (pre-vote keeps it from deposing the healthy leader).
    info = run_cli(["info", f"-rpc-addr={old.ip}:8400", f"-http-addr={old.http}"])
    assert info.returncode == 0, info.stderr
    assert "\tstate = Follower" in info.stdout, info.stdout


def test_leader_interrupted_hands_leadership_over(dc1: Cluster) -> None:
    servers = _servers(dc1)
    leader_addr = dc1.wait_leader(servers, timeout=30)
    old = dc1.node_by_server_addr(leader_addr)
    survivors = [s for s in servers if s is not old]
    start = time.monotonic()
    # A server skips leave on interrupt (Consul's default) but still hands leadership over.
    old.stop(signal.SIGINT)
    new = wait_for(
        lambda: (
            lambda seen: seen.pop() if len(seen) == 1 and not seen & {"", leader_addr} else None
        )({s.leader() for s in survivors}),
        10,
        "a new leader after the interrupt",
    )
    elapsed = time.monotonic() - start
    text = old.log_text()
    assert "==> Caught signal: interrupt" in text
    assert new != leader_addr and elapsed < 5.0, elapsed
    old.start()
    dc1.wait_http([old], timeout=30)
    dc1.wait_leader(servers, timeout=30)


def test_server_that_leaves_is_removed_from_raft_and_can_come_back(dc1: Cluster) -> None:
    servers = _servers(dc1)
    leader_addr = dc1.wait_leader(servers, timeout=30)
    leaving = next(s for s in servers if s.server_addr != leader_addr)
    out = run_cli(["leave", f"-rpc-addr={leaving.ip}:8400", f"-http-addr={leaving.http}"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert leaving.proc is not None and leaving.proc.wait(30) == 0
    client = dc1.nodes["c1"]
    wait_for(
        lambda: leaving.server_addr not in client.get_json("/v1/status/peers"),
        20,
        f"{leaving.name} removed from the raft peers",
    )
    wait_for(
        lambda: (
            {m["Name"]: m["Status"] for m in client.get_json("/v1/agent/members")}[leaving.name]
            == 3
        ),
        20,
        f"{leaving.name} shown as left",
    )
    wait_for(
        lambda: leaving.name not in {n["Node"] for n in client.get_json("/v1/catalog/nodes")},
        20,
        f"{leaving.name} deregistered from the catalog",
    )
    # Started again, it rejoins and the leader adds it back as a voter.
    leaving.start()
    dc1.wait_http([leaving], timeout=30)
    wait_for(
        lambda: leaving.server_addr in client.get_json("/v1/status/peers"),
        30,
        f"{leaving.name} back in the raft peers",
    )
    dc1.wait_leader(servers, timeout=30)


def test_whole_datacenter_killed_and_restarted_keeps_its_data(dc1: Cluster) -> None:
    servers = _servers(dc1)
    dc1.wait_leader(servers, timeout=30)
    client = dc1.nodes["c2"]
    status, body, _ = client.request("PUT", "/v1/kv/durable?cas=0", b"kept")
    assert status == 200 and body.strip() == b"true"
    for s in servers:
        s.kill()
    for s in servers:
        s.start()
    dc1.wait_http(servers, timeout=30)
    leader = dc1.wait_leader(servers, timeout=30)
    assert leader in {s.server_addr for s in servers}
    # No second bootstrap: the servers found their raft state.
    for s in servers:
        assert (
            "Raft data found, disabling bootstrap mode" in s.log_text().split("===== start #")[-1]
        )
    got = wait_for(lambda: client.get_json("/v1/kv/durable"), 20, "the key through the client")
    assert base64.b64decode(got[0]["Value"]) == b"kept"


def test_late_server_with_bootstrap_expect_joins_instead_of_bootstrapping(dc1: Cluster) -> None:
    servers = _servers(dc1)
    dc1.wait_leader(servers, timeout=30)
    late = dc1.add("s4", "127.5.0.4", server=True, bootstrap_expect=3, retry_join=SERVERS)
    late.start()
    dc1.wait_http([late], timeout=30)
    client = dc1.nodes["c1"]
    wait_for(
        lambda: late.server_addr in client.get_json("/v1/status/peers"),
        30,
        "the late server added to raft by the leader",
    )
    dc1.wait_leader([*servers, late], timeout=30)
    text = late.log_text()
    assert "Existing Raft peers reported by" in text
    assert "attempting bootstrap" not in text
    out = run_cli(["leave", f"-rpc-addr={late.ip}:8400", f"-http-addr={late.http}"])
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(
        lambda: (
            sorted(client.get_json("/v1/status/peers")) == sorted(s.server_addr for s in servers)
        ),
        30,
        "the late server removed again after its leave",
    )


def test_no_agent_logged_a_traceback(dc1: Cluster) -> None:
    """Everything above (kills, restarts, leaves, bad peers) was handled without a crash trace."""
    for node in dc1.nodes.values():
        text = node.log_text()
        assert "Traceback" not in text, (
            f"{node.name}:\n{text[text.index('Traceback') - 2000 :][:4000]}"
        )
