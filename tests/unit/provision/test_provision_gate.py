"""The health gate and `verify` on autopilot's word, with stand-in hosts answering
/v1/operator/autopilot/health as Consul does (200 healthy, 429 unhealthy, the JSON either way):
a restarted server passes once every server is healthy, it has caught up with the leader's last
index and the failure tolerance is back; problems name the server; verify reports each
datacenter's failure tolerance and counts an unhealthy one."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from provision import health, retire
from provision.hosts import Host, HostUnreachable, Result
from provision.inventory import Inventory, Node, load_inventory
from provision.report import Reporter
from provision.up import Session, verify_until
from provision.verify import DCView, Member, Peer, compare, parse_autopilot_health

INV = """
datacenters:
  dc1:
    servers: [{name: s1, host: 10.0.0.1}, {name: s2, host: 10.0.0.2}, {name: s3, host: 10.0.0.3}]
    clients: [{name: c1, host: 10.0.0.9}]
"""

HEALTH_PATH = "/v1/operator/autopilot/health"


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    p = tmp_path / "inv.yml"
    p.write_text(INV)
    return load_inventory(p)


def server(name: str, index: int, *, healthy: bool = True, serf: str = "alive") -> dict[str, Any]:
    n = int(name[1:])
    return {
        "ID": f"0000000{n}-0000-0000-0000-000000000000",
        "Name": name,
        "Address": f"10.0.0.{n}:8300",
        "SerfStatus": serf,
        "Version": "0.7.2",
        "Leader": name == "s1",
        "LastContact": "0s" if name == "s1" else "12ms",
        "LastTerm": 3,
        "LastIndex": index,
        "Healthy": healthy,
        "Voter": True,
        "StableSince": "2026-12-03T17:00:00Z",
    }


def reply(servers: list[dict[str, Any]]) -> dict[str, Any]:
    voters = [s for s in servers if s["Voter"]]
    up = sum(1 for s in voters if s["Healthy"])
    return {
        "Healthy": all(s["Healthy"] for s in servers),
        "FailureTolerance": max(0, up - (len(voters) // 2 + 1)),
        "Servers": servers,
    }


def columns(header: list[str], rows: list[list[str]]) -> str:
    """A table as Consul's CLI columnises it (two spaces between aligned columns)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in [header, *rows]
    )


class FakeHost:
    """Answers the autopilot health request from `answers` (one per request, the last one
    repeated), `senatectl status` and `senate members`; `down` fails every command."""

    def __init__(
        self, node: Node, inv: Inventory, answers: list[dict[str, Any]], down: bool = False
    ) -> None:
        self.node = node
        self.inv = inv
        self.answers = answers
        self.down = down
        self.asked: list[str] = []
        self.extra_members: list[list[str]] = []  # gossip members the inventory lacks

    def run(
        self,
        command: str,
        *,
        step: str,
        timeout: float,
        check: bool = True,
        label: str | None = None,
    ) -> Result:
        self.asked.append(step)
        if self.down:
            raise HostUnreachable(self.node.name, "ssh: connect: connection refused")
        out = ""
        if step == f"http {HEALTH_PATH}":
            d = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            out = json.dumps({"status": 200 if d["Healthy"] else 429, "body": json.dumps(d)})
        elif step == "senate members":
            out = columns(
                ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC"],
                [
                    [n.name, n.serf_lan_addr, "alive", n.role, "0.7.2", "2", "dc1"]
                    for n in self.inv.nodes
                ]
                + self.extra_members,
            )
        elif step == "senate operator":
            out = columns(
                ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"],
                [
                    [
                        s.name,
                        s.server_addr,
                        s.server_addr,
                        "leader" if s.name == "s1" else "follower",
                        "true",
                        "3",
                    ]
                    for s in self.inv.servers()
                ],
            )
        return Result(label or command, 0, out, "")

    def feed(
        self, command: str, local: Path, *, step: str, timeout: float, label: str | None = None
    ) -> Result:
        return self.run(command, step=step, timeout=timeout, label=label)

    def close(self) -> None:
        pass


def fakes(
    inv: Inventory, answers: list[dict[str, Any]], down: frozenset[str] = frozenset()
) -> dict[str, FakeHost]:
    return {n.name: FakeHost(n, inv, answers, n.name in down) for n in inv.nodes}


def as_hosts(f: dict[str, FakeHost]) -> dict[str, Host]:
    return dict(f)  # type: ignore[arg-type]


def timed(fn: Callable[[], list[str]]) -> tuple[list[str], float]:
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def test_a_restarted_server_passes_once_healthy_caught_up_and_tolerant(inv: Inventory) -> None:
    answers = [
        reply([server("s1", 10), server("s2", 0, healthy=False), server("s3", 10)]),
        # autopilot calls s2 healthy (within MaxTrailingLogs) but it trails the leader
        reply([server("s1", 12), server("s2", 8), server("s3", 12)]),
        reply([server("s1", 13), server("s2", 10), server("s3", 13)]),
    ]
    f = fakes(inv, answers)
    problems, took = timed(lambda: health.gate(inv, as_hosts(f), inv.node("s2"), 10, 5, 1))
    assert problems == []
    # three answers were needed, all from the first server (any server may answer)
    assert f["s1"].asked.count(f"http {HEALTH_PATH}") == 3
    assert took < 5


def test_problems_at_the_deadline_name_the_server(inv: Inventory) -> None:
    answers = [
        reply([server("s1", 10), server("s2", 10), server("s3", 4, healthy=False, serf="failed")])
    ]
    problems = health.gate(inv, as_hosts(fakes(inv, answers)), inv.node("s2"), 0, 5, 1)
    assert problems == [
        "dc1: server s3 is unhealthy (serf status failed)",
        "dc1: failure tolerance 0, want 1",
    ]


def test_a_server_autopilot_does_not_list_and_a_trailing_index(inv: Inventory) -> None:
    answers = [reply([server("s1", 10), server("s2", 3)])]
    f = fakes(inv, answers)
    gate = health._server_gate(inv, as_hosts(f), inv.node("s2"), 0, 5)
    assert gate() == [
        "dc1: server s3 is not among autopilot's servers",
        "dc1: s2: last index 3 behind the leader's 10",
    ]
    # the target is the leader's index when the gate started, not one that keeps moving
    f["s1"].answers[0] = reply([server("s1", 14), server("s2", 10), server("s3", 14)])
    assert gate() == []


def test_an_unhealthy_server_not_in_the_inventory_keeps_the_gate_closed(inv: Inventory) -> None:
    old = server("s9", 2, healthy=False, serf="failed")
    h = parse_autopilot_health(
        "s1", json.dumps(reply([server("s1", 5), server("s2", 5), server("s3", 5), old]))
    )
    assert health.server_gate_problems(inv, inv.node("s2"), h, 5, 1) == [
        "dc1: server s9 (10.0.0.9:8300) is unhealthy and not in the inventory (serf status failed)",
        # a dead voter counts until autopilot's cleanup removes it
        "dc1: failure tolerance 0, want 1",
    ]


def test_the_next_server_is_asked_when_one_does_not_answer(inv: Inventory) -> None:
    answers = [reply([server("s1", 10), server("s2", 10), server("s3", 10)])]
    f = fakes(inv, answers, down=frozenset({"s1"}))
    assert health.gate(inv, as_hosts(f), inv.node("s3"), 0, 5, 1) == []
    assert f"http {HEALTH_PATH}" in f["s2"].asked


def test_no_server_answering_is_a_problem_naming_each(inv: Inventory) -> None:
    f = fakes(inv, [reply([])], down=frozenset({"s1", "s2", "s3"}))
    [problem] = health.gate(inv, as_hosts(f), inv.node("s2"), 0, 5, 1)
    assert problem.startswith("dc1: no server answered autopilot health (s1: ssh: connect")
    assert "s2: " in problem and "s3: " in problem


def test_tolerance_wanted_is_the_one_before_or_a_full_datacenters(
    inv: Inventory, tmp_path: Path
) -> None:
    assert health.tolerance_wanted(inv, "dc1", None) == 1
    assert health.tolerance_wanted(inv, "dc1", 0) == 0
    assert health.tolerance_wanted(inv, "dc1", 1) == 1
    p = tmp_path / "five.yml"
    p.write_text(
        "datacenters:\n  dc1:\n    servers:\n"
        + "".join(f"      - {{name: s{i}, host: 10.0.0.{i}}}\n" for i in range(1, 6))
    )
    five = load_inventory(p)
    assert health.tolerance_wanted(five, "dc1", None) == 2
    assert health.tolerance_wanted(five, "dc1", 1) == 1


def test_a_client_passes_when_running_and_alive(inv: Inventory) -> None:
    f = fakes(inv, [reply([])])
    assert health.gate(inv, as_hosts(f), inv.node("c1"), 0, 5) == []
    assert "status" in f["c1"].asked and f"http {HEALTH_PATH}" not in f["s1"].asked


def test_compare_counts_an_unhealthy_autopilot(inv: Inventory) -> None:
    members = [Member(n.name, n.serf_lan_addr, "alive", n.role, "dc1") for n in inv.nodes]
    peers = [
        Peer(s.name, s.server_addr, "leader" if s.name == "s1" else "follower")
        for s in inv.servers()
    ]
    h = parse_autopilot_health(
        "s1", json.dumps(reply([server("s1", 5), server("s2", 1, healthy=False), server("s3", 5)]))
    )
    view = DCView("dc1", "s1", members, peers, autopilot=h)
    assert compare(inv, [view]) == ["dc1: server s2 is unhealthy (last contact 12ms, last index 1)"]
    view.autopilot = parse_autopilot_health(
        "s1", json.dumps(reply([server("s1", 5), server("s2", 5), server("s3", 5)]))
    )
    assert compare(inv, [view]) == []


def test_verify_reports_the_failure_tolerance_of_each_datacenter(inv: Inventory) -> None:
    out = io.StringIO()
    f = fakes(inv, [reply([server("s1", 5), server("s2", 5), server("s3", 5)])])
    s = Session(inv, Reporter(Console(file=out, width=160, highlight=False)), as_hosts(f))
    assert verify_until(s, 0) == []
    assert "failure tolerance 1" in out.getvalue()

    out.truncate(0)
    f["s1"].answers[0] = reply([server("s1", 5), server("s2", 5, healthy=False), server("s3", 5)])
    assert verify_until(s, 0) == ["dc1: server s2 is unhealthy (last contact 12ms, last index 5)"]
    assert "failure tolerance 0, unhealthy" in out.getvalue()


def test_a_server_autopilot_names_by_its_address_is_still_found(inv: Inventory) -> None:
    """A server whose gossip member autopilot no longer sees (killed, reaped) is listed under
    its raft address, serf status "none": it is the inventory's server, unhealthy."""
    gone = {**server("s3", 0, healthy=False, serf="none"), "Name": "10.0.0.3:8300"}
    h = parse_autopilot_health("s1", json.dumps(reply([server("s1", 5), server("s2", 5), gone])))
    assert health.server_gate_problems(inv, inv.node("s2"), h, 5, 1) == [
        "dc1: server s3 is unhealthy (serf status none)",
        "dc1: failure tolerance 0, want 1",
    ]


OLD = ["s9", "10.0.0.8:8301", "alive", "server", "0.7.2", "2", "dc1"]


def test_a_server_gone_from_the_inventory_stops_once_the_new_one_votes(inv: Inventory) -> None:
    new_not_yet = {**server("s3", 5), "Voter": False}
    old = {**server("s9", 5), "Address": "10.0.0.8:8300"}
    answers = [
        reply([server("s1", 5), server("s2", 5), new_not_yet, old]),
        reply([server("s1", 6), server("s2", 6), server("s3", 6), old]),
        # autopilot's cleanup removed it
        reply([server("s1", 7), server("s2", 7), server("s3", 7)]),
    ]
    f = fakes(inv, answers)
    for h in f.values():
        h.extra_members = [OLD]
    reached: list[FakeHost] = []

    def connect_to(node: Node) -> Host:
        reached.append(FakeHost(node, inv, answers))
        return reached[-1]  # type: ignore[return-value]

    out = io.StringIO()
    rep = Reporter(Console(file=out, width=200, highlight=False))
    assert retire.retire_removed_servers(inv, as_hosts(f), rep, 5, 10, connect_to) == ["s9"]
    # reached where gossip has it, with the settings of the inventory's servers, and stopped
    [old_host] = reached
    assert (old_host.node.name, old_host.node.host) == ("s9", "10.0.0.8")
    assert old_host.node.install_dir == inv.node("s1").install_dir
    assert old_host.asked == ["stop"]
    # not before the new server was a voter (autopilot asked twice), then until it was gone
    # from raft, then for the leader; no remove-peer was needed
    assert f["s1"].asked.count(f"http {HEALTH_PATH}") == 4
    assert "senate operator" not in f["s1"].asked[3:]
    assert "stopped; autopilot removes it from raft once it is gone" in out.getvalue()


def test_a_stopped_server_autopilot_keeps_is_removed_by_hand(inv: Inventory) -> None:
    old = {**server("s9", 5, healthy=False, serf="none"), "Address": "10.0.0.8:8300"}
    f = fakes(inv, [reply([server("s1", 5), server("s2", 5), server("s3", 5), old])])
    for h in f.values():
        h.extra_members = [OLD]
    out = io.StringIO()
    rep = Reporter(Console(file=out, width=300, highlight=False))
    stopped = retire.retire_removed_servers(
        inv,
        as_hosts(f),
        rep,
        5,
        1,
        lambda n: FakeHost(n, inv, []),  # type: ignore[arg-type,return-value]
    )
    assert stopped == ["s9"]
    assert f["s1"].asked[-2] == "senate operator"  # remove-peer, then the leader asked
    assert "10.0.0.8:8300: autopilot had not removed it" in " ".join(out.getvalue().split())


def test_an_unreachable_removed_server_is_left_to_autopilot(inv: Inventory) -> None:
    f = fakes(inv, [reply([server("s1", 5), server("s2", 5), server("s3", 5)])])
    for h in f.values():
        h.extra_members = [OLD]

    def connect_to(node: Node) -> Host:
        return FakeHost(node, inv, [], down=True)  # type: ignore[return-value]

    out = io.StringIO()
    rep = Reporter(Console(file=out, width=300, highlight=False))
    assert retire.retire_removed_servers(inv, as_hosts(f), rep, 5, 10, connect_to) == []
    text = " ".join(out.getvalue().split())
    assert "not in the inventory any more and not reachable at 10.0.0.8" in text
    assert "autopilot removes it once it is gone" in text


def test_nothing_to_retire_when_gossip_matches_the_inventory(inv: Inventory) -> None:
    f = fakes(inv, [reply([])])
    assert retire.retire_removed_servers(inv, as_hosts(f), Reporter(), 5, 10) == []
    assert f"http {HEALTH_PATH}" not in f["s1"].asked
