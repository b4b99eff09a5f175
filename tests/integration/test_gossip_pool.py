"""GossipPool on real loopback sockets (in-process): join, events, leave, encryption,
the wrong-datacenter refusal, snapshot rejoin, and garbage on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.gossip import GossipPool, JoinError, Keyring, Member, Profile, generate_key
from agent.gossip.serf_types import MemberEvent, Query, UserEvent

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no free port")


class Node:
    def __init__(
        self,
        name: str,
        *,
        dc: str = "dc1",
        keyring: Keyring | None = None,
        snapshot: Path | None = None,
        port: int | None = None,
        rejoin_after_leave: bool = False,
    ) -> None:
        self.events: list[MemberEvent | UserEvent | Query] = []
        self.port = port or free_port()
        self.pool = GossipPool(
            name="lan",
            node_name=name,
            bind_addr="127.0.0.1",
            bind_port=self.port,
            advertise_addr="127.0.0.1",
            advertise_port=self.port,
            tags={"dc": dc, "role": "node"},
            profile=Profile.local(),
            keyring=keyring,
            snapshot_path=snapshot,
            merge_check=dc_check(dc),
            on_event=self.events.append,
            rejoin_after_leave=rejoin_after_leave,
        )

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def status(self, name: str) -> str | None:
        return next((m.status for m in self.pool.members() if m.name == name), None)


def dc_check(dc: str) -> Callable[[list[Member]], str | None]:
    def check(members: list[Member]) -> str | None:
        for m in members:
            if m.tags.get("dc") != dc:
                return f"Member '{m.name}' part of wrong datacenter '{m.tags.get('dc')}'"
        return None

    return check


async def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def joined_trio(
    started: Callable[[Node], asyncio.Future[Node]],
) -> tuple[Node, Node, Node]:
    """a, b and c started, b and c joined to a, all three alive in a's and c's views."""
    a = await started(Node("a"))
    b = await started(Node("b"))
    c = await started(Node("c"))
    await b.pool.join([a.addr])
    await c.pool.join([a.addr])
    await eventually(lambda: all(x.status(y) == "alive" for x in (a, c) for y in "abc"))
    return a, b, c


@pytest.fixture
async def started() -> AsyncIterator[Callable[[Node], asyncio.Future[Node]]]:
    nodes: list[Node] = []

    async def start(node: Node) -> Node:
        await node.pool.start()
        nodes.append(node)
        return node

    yield start  # type: ignore[misc]
    for node in nodes:
        with contextlib.suppress(Exception):
            await node.pool.shutdown()


async def test_join_event_leave_encrypted(started: Callable[[Node], asyncio.Future[Node]]) -> None:
    ring = Keyring.from_base64([generate_key()])
    a, b, c = [await started(Node(n, keyring=ring)) for n in ("a", "b", "c")]
    assert await b.pool.join([a.addr]) == 1
    assert await c.pool.join([a.addr]) == 1
    # Skipping old events applies to the join's own push/pulls only (serf eventJoinIgnore).
    assert not c.pool.serf.ignore_old_events
    await eventually(lambda: all(n.status(m) == "alive" for n in (a, b, c) for m in "abc"))
    b.pool.user_event("deploy", b"v1", coalesce=False)
    await eventually(
        lambda: all(
            any(isinstance(e, UserEvent) and e.payload == b"v1" for e in n.events)
            for n in (a, b, c)
        )
    )
    assert a.pool.stats()["encrypted"] == "true"
    # A node with another key cannot join, and its packets are counted as undecryptable.
    stranger = await started(Node("d", keyring=Keyring.from_base64([generate_key()])))
    # ... and reads why, as memberlist's errorResp says it (not "truncated frame header")
    with pytest.raises(
        JoinError,
        match=r"Failed to join 127\.0\.0\.1: No installed keys could decrypt the message",
    ):
        await stranger.pool.join([a.addr])
    plain = await started(Node("e"))  # no key at all: the same refusal
    with pytest.raises(JoinError, match="No installed keys could decrypt the message"):
        await plain.pool.join([a.addr])
    assert a.pool.metrics["drop.decrypt"] >= 1
    assert a.status("d") is None
    # Keyring spread by query.
    resp = await a.pool.keyring_op("list", None)
    assert resp.num_resp == 3 and list(resp.keys.values()) == [3]
    await c.pool.leave()
    await c.pool.shutdown()
    await eventually(lambda: a.status("c") == "left" and b.status("c") == "left")
    assert not any(
        isinstance(e, MemberEvent) and e.type == "member-failed" for e in a.events + b.events
    )


async def test_wrong_datacenter_is_refused(started: Callable[[Node], asyncio.Future[Node]]) -> None:
    server = await started(Node("server1", dc="mydc"))
    client = await started(Node("client1", dc="dc2"))
    with pytest.raises(JoinError) as err:
        await client.pool.join([server.addr])
    assert str(err.value) == (
        "Failed to join 127.0.0.1: Member 'server1' part of wrong datacenter 'mydc'"
    )
    assert server.status("client1") is None and client.status("server1") is None
    with pytest.raises(JoinError, match="connection refused"):
        await client.pool.join([f"127.0.0.1:{free_port()}"])


async def test_snapshot_rejoin_and_failed_rejoin_warning(
    started: Callable[[Node], asyncio.Future[Node]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a = await started(Node("a"))
    snap = tmp_path / "serf" / "local.snapshot"
    b = await started(Node("b", snapshot=snap))
    assert "Failed to re-join any previously known node" in caplog.text
    await b.pool.join([a.addr])
    await eventually(lambda: a.status("b") == "alive")
    await b.pool.shutdown()  # not a leave: the snapshot keeps "a"
    assert f"alive: a {a.addr}" in snap.read_text()
    caplog.clear()
    b2 = await started(Node("b", snapshot=snap, port=b.port))
    await eventually(lambda: b2.status("a") == "alive" and a.status("b") == "alive")
    assert "Re-joined to previously known node: a" in caplog.text


async def test_after_a_leave_the_snapshot_rejoins_only_with_rejoin_after_leave(
    started: Callable[[Node], asyncio.Future[Node]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a = await started(Node("a"))
    snap = tmp_path / "serf" / "local.snapshot"
    b = await started(Node("b", snapshot=snap))
    await b.pool.join([a.addr])
    await eventually(lambda: a.status("b") == "alive")
    await b.pool.leave()
    await b.pool.shutdown()
    await eventually(lambda: a.status("b") == "left")
    assert snap.read_text().rstrip().endswith("leave")
    snap2 = tmp_path / "copy" / "local.snapshot"
    snap2.parent.mkdir()
    snap2.write_text(snap.read_text())
    caplog.clear()
    b2 = await started(Node("b", snapshot=snap, port=b.port))
    assert "Failed to re-join any previously known node" in caplog.text
    assert b2.status("a") is None and a.status("b") == "left"
    await b2.pool.shutdown()
    caplog.clear()
    b3 = await started(Node("b", snapshot=snap2, port=b.port, rejoin_after_leave=True))
    assert "Ignoring previous leave in snapshot" in caplog.text
    await eventually(lambda: b3.status("a") == "alive" and a.status("b") == "alive")
    assert "Re-joined to previously known node: a" in caplog.text


async def test_a_stopped_member_is_refused_on_udp_and_tcp_and_suspected_at_once(
    started: Callable[[Node], asyncio.Future[Node]],
) -> None:
    """Once b's sockets are closed, a's ping to it comes back as ICMP port unreachable (seen
    through IP_RECVERR) and the TCP ping is refused: the probe fails without waiting out the
    interval, and b is failed after the suspicion timeout."""
    a, b, c = await joined_trio(started)
    await b.pool.shutdown()  # no leave: as a killed process looks from outside
    await eventually(lambda: a.status("b") == "failed" and c.status("b") == "failed", 20)
    metrics = a.pool.metrics + c.pool.metrics
    # The kernel's port-unreachable always arrives; whether it lands before the direct ping's
    # timeout depends on scheduling (the core's handling is unit-tested), the TCP refusal does.
    assert metrics["udp_unreachable"] >= 1, metrics
    assert metrics["probe.refused"] >= 1, metrics


async def test_an_impostor_with_a_taken_name_shuts_itself_down(
    started: Callable[[Node], asyncio.Future[Node]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a, b, c = await joined_trio(started)
    impostor = await started(Node("b"))
    await impostor.pool.join([a.addr])
    await eventually(lambda: not impostor.pool._running, 15)
    assert "minority in name conflict resolution, quiting" in caplog.text
    assert b.pool._running
    for x in (a, c):
        m = next(m for m in x.pool.members() if m.name == "b")
        assert (m.port, m.status) == (b.port, "alive")


async def test_garbage_on_the_wire_is_counted(
    started: Callable[[Node], asyncio.Future[Node]],
) -> None:
    a = await started(Node("a"))
    b = await started(Node("b"))
    await b.pool.join([a.addr])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"\x00", b"\xc1\xc1", b"\x91\x92\x63\x80", b"x" * 1500):
            s.sendto(junk, ("127.0.0.1", a.port))
    reader, writer = await asyncio.open_connection("127.0.0.1", a.port)
    writer.write(b"\xff\xff\xff\xff")  # a frame claiming 4 GiB
    await writer.drain()
    await reader.read()
    writer.close()
    await eventually(lambda: a.pool.metrics["drop.malformed"] >= 3)
    await eventually(lambda: a.pool.metrics["drop.malformed_stream"] >= 1)
    b.pool.user_event("still-works", b"", coalesce=False)
    await eventually(lambda: any(isinstance(e, UserEvent) for e in a.events))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_datagram_after_an_icmp_error_for_another_member_is_not_lost(loop: str) -> None:
    """With IP_RECVERR on, the port unreachable for a datagram to a gone member is also
    reported by the socket's next send, whatever its destination; that datagram (a probe or
    gossip to a live member) must still go out, and the unreachable is still told."""
    from agent.gossip.transport import UDPEndpoint

    async def scenario() -> tuple[list[bytes], list[tuple[str, int]]]:
        lp = asyncio.get_running_loop()
        got: list[bytes] = []
        unreachable: list[tuple[str, int]] = []
        live, _ = await lp.create_datagram_endpoint(
            lambda: UDPEndpoint(lambda data, addr: got.append(data)), local_addr=("127.0.0.1", 0)
        )
        sender, ep = await lp.create_datagram_endpoint(
            lambda: UDPEndpoint(lambda d, a: None, lambda h, p: unreachable.append((h, p))),
            local_addr=("127.0.0.1", 0),
        )
        gone = free_port()
        live_addr = live.get_extra_info("sockname")[:2]
        try:
            for i in range(20):  # on loopback the ICMP is back before the next send
                ep.sendto(b"to-gone", ("127.0.0.1", gone))
                ep.sendto(b"to-live-%d" % i, live_addr)
            deadline = lp.time() + 5
            while len(got) < 20 and lp.time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            sender.close()
            live.close()
        return got, unreachable

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            got, unreachable = runner.run(scenario())
    else:
        got, unreachable = asyncio.run(scenario())
    assert sorted(got) == sorted(b"to-live-%d" % i for i in range(20))
    assert unreachable and all(p != 0 for _, p in unreachable)
