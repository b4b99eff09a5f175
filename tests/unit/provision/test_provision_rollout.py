"""`up`'s rollout with stand-in hosts: every host runs its own pipeline (upload, install, start),
servers first; a client uploads and installs after its datacenter's servers have installed, and
starts only once they have started; the servers are joined and a leader awaited while the clients still install; a
server that fails to start keeps its datacenter's clients from starting, and every failure is
reported."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from provision.artifact import Artifact
from provision.hosts import Host, Result
from provision.inventory import Inventory, Node, load_inventory
from provision.remote import HostState
from provision.report import Reporter
from provision.up import ProvisionFailed, Session, make_plans, render_all, rollout

INV = """
defaults:
  ssh: {user: root}
datacenters:
  dc1:
    servers:
      - {name: s1, host: 10.0.0.1}
      - {name: s2, host: 10.0.0.2}
      - {name: s3, host: 10.0.0.3}
    clients:
      - {name: c1, host: 10.0.0.4}
      - {name: c2, host: 10.0.0.5}
"""


class Log:
    """What every stand-in host was asked to do, in order, with start and end times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, float, str, str]] = []  # (start, end, node, what)

    def add(self, start: float, node: str, what: str) -> None:
        with self.lock:
            self.events.append((start, time.monotonic(), node, what))

    def of(self, what: str) -> dict[str, tuple[float, float]]:
        return {n: (a, b) for a, b, n, w in self.events if w == what}


def columns(header: list[str], rows: list[list[str]]) -> str:
    """A table as Consul's CLI columnises it (two spaces between aligned columns)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in [header, *rows]
    )


def state(server: Node) -> str:
    return "leader" if server.name == "s1" else "follower"


class FakeHost:
    """Answers provision's commands as a healthy node would; `fail_start` makes start fail.
    A command is recognised by the step provision runs it as (what its progress lines and
    errors name), not by what its shell says."""

    def __init__(
        self,
        node: Node,
        inv: Inventory,
        log: Log,
        fail_start: bool = False,
        leader_wait_fails: bool = False,
    ) -> None:
        self.node = node
        self.inv = inv
        self.log = log
        self.fail_start = fail_start
        self.leader_wait_fails = leader_wait_fails

    def run(
        self,
        command: str,
        *,
        step: str,
        timeout: float,
        check: bool = True,
        label: str | None = None,
    ) -> Result:
        t0 = time.monotonic()
        out, code, err = "", 0, ""
        args = step.split()
        if step == "start":
            what = "start"
            time.sleep(0.15 if self.node.is_server else 0.02)
            if self.fail_start:
                code, err = 1, "provision: start failed (exit 1)\nboom"
        elif step == "install":
            what = "install"
            time.sleep(0.05 if self.node.is_server else 0.3)
        elif step == "leader":
            what = "leader"
            out = next(f"{s.advertise}:8300\n" for s in self.inv.servers() if s.name == "s1")
            if self.leader_wait_fails:
                out, code, err = "", 93, "the agent does not answer: connection refused"
        elif args == ["senate", "join"]:
            what = "join"
        elif args == ["senate", "operator"]:  # raft list-peers: the only one up asks
            what = "peers"
            out = columns(
                ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"],
                [
                    [s.name, f"{s.advertise}:8300", f"{s.advertise}:8300", state(s), "true", "3"]
                    for s in self.inv.servers()
                ],
            )
        elif args == ["senate", "members"]:
            what = "members"
            out = columns(
                ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC"],
                [
                    [n.name, n.serf_lan_addr, "alive", n.role, "0.7.2", "2", "dc1"]
                    for n in self.inv.nodes
                ],
            )
        else:
            what = "other: " + step
        self.log.add(t0, self.node.name, what)
        return Result(label or command, code, out, err)

    def feed(
        self,
        command: str,
        local: Path,
        *,
        step: str,
        timeout: float,
        label: str | None = None,
    ) -> Result:
        if step == "install":  # the wheelhouse (other steps feed tokens and files)
            t0 = time.monotonic()
            time.sleep(0.05)
            self.log.add(t0, self.node.name, "upload")
        return self.run(command, step=step, timeout=timeout, check=False, label=label)

    def close(self) -> None:
        pass


def fresh_state() -> HostState:
    return HostState(
        python=(3, 11, 7),
        current=None,
        previous=None,
        releases=(),
        config=None,
        control=None,
        unit=None,
        systemd=False,
        running=False,
        ports_busy=(),
        disk_free=10**10,
        executable="/usr/bin/python3.11",
    )


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    p = tmp_path / "inv.yml"
    p.write_text(INV)
    return load_inventory(p)


def run_rollout(
    inv: Inventory,
    log: Log,
    failing: set[str] = frozenset(),  # type: ignore[assignment]
    leader_wait_fails: bool = False,
) -> list[str]:
    hosts: dict[str, Host] = {
        n.name: FakeHost(n, inv, log, n.name in failing, leader_wait_fails) for n in inv.nodes
    }
    s = Session(inv, Reporter(), hosts)
    states = {n.name: fresh_state() for n in inv.nodes}
    art = Artifact("0.1", "0.1-abc", Path("/nonexistent"), ("pip-0-py3-none-any.whl",))
    rendered = render_all(s, states, None)
    plans = make_plans(inv, states, rendered, art.release)
    return rollout(s, plans, states, rendered, art)


def test_clients_start_after_every_server_and_install_meanwhile(inv: Inventory) -> None:
    log = Log()
    started = run_rollout(inv, log)
    assert started == ["s1", "s2", "s3", "c1", "c2"]
    starts, installs = log.of("start"), log.of("install")
    assert set(installs) == set(starts) == {"s1", "s2", "s3", "c1", "c2"}
    uploads = log.of("upload")
    assert set(uploads) == set(starts)
    # the servers (the critical path) have the uplink and the CPUs first
    last_server_install = max(installs[s][1] for s in ("s1", "s2", "s3"))
    assert all(uploads[c][0] >= last_server_install for c in ("c1", "c2"))
    last_server_up = max(starts[s][1] for s in ("s1", "s2", "s3"))
    for c in ("c1", "c2"):
        assert starts[c][0] >= last_server_up  # a client's retry_join finds servers listening
        assert installs[c][0] < last_server_up  # ... but it installed meanwhile
        assert starts[c][0] >= installs[c][1]
    # the servers were joined (once, from the first) and a leader was found
    joins = [(a, n) for a, _, n, w in log.events if w == "join"]
    assert [n for _, n in joins] == ["s1"] and joins[0][0] >= last_server_up
    # the leader was waited for on the first server, in one command
    assert [n for _, _, n, w in log.events if w == "leader"] == ["s1"]
    # every host: one upload, one install command, one start command; nothing else but the
    # leader queries on a server
    per_node: dict[str, list[str]] = {}
    for _, _, n, w in log.events:
        per_node.setdefault(n, []).append(w)
    for c in ("c1", "c2"):
        assert per_node[c] == ["upload", "install", "start"]


def test_a_server_that_fails_to_start_keeps_the_clients_stopped(inv: Inventory) -> None:
    log = Log()
    with pytest.raises(ProvisionFailed) as info:
        run_rollout(inv, log, failing={"s2"})
    errors = info.value.errors
    assert set(errors) == {"s2", "c1", "c2"}
    assert "boom" in errors["s2"].stderr  # type: ignore[attr-defined]
    assert "not started: server s2 of dc1 failed" in str(errors["c1"])
    assert set(log.of("start")) == {"s1", "s2", "s3"}  # no client was started
    assert set(log.of("install")) == {"s1", "s2", "s3", "c1", "c2"}
    assert "join" not in {w for *_, w in log.events}


def test_when_the_leader_wait_on_the_first_server_fails_the_servers_are_asked(
    inv: Inventory,
) -> None:
    log = Log()
    assert run_rollout(inv, log, leader_wait_fails=True) == ["s1", "s2", "s3", "c1", "c2"]
    asked = [w for _, _, n, w in log.events if n == "s1" and w in ("leader", "peers")]
    assert asked == ["leader", "peers"]  # the wait, then verify's view (which names s1)
