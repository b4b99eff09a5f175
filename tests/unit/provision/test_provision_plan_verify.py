"""Per-host plans from observed state, and verify's parsing and comparison (no hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.inventory import Inventory, load_inventory
from provision.plan import Action, plan_node
from provision.remote import HostState
from provision.render import render_node
from provision.verify import DCView, Member, Peer, compare, parse_members, parse_peers

INV = """
datacenters:
  dc1:
    servers: [{name: s1, host: 10.0.0.1}, {name: s2, host: 10.0.0.2}, {name: s3, host: 10.0.0.3}]
    clients: [{name: c1, host: 10.0.0.9}]
"""


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    p = tmp_path / "inv.yml"
    p.write_text(INV)
    return load_inventory(p)


def state(
    inv: Inventory, node: str, *, current: str | None, running: bool, config: str | None = None
) -> HostState:
    r = render_node(inv, inv.node(node), "launcher")
    return HostState(
        python=(3, 11, 7),
        current=current,
        previous=None,
        releases=(current,) if current else (),
        config=r.config.content if config is None else config,
        control=r.control.content,
        unit=None,
        systemd=False,
        running=running,
        ports_busy=(),
        disk_free=10**10,
    )


def test_fresh_host_installs_writes_starts_and_joins(inv: Inventory) -> None:
    r = render_node(inv, inv.node("s1"), "launcher")
    p = plan_node(inv, inv.node("s1"), None, r, "0.7.2-abc")
    assert p.install == "install 0.7.2-abc"
    assert p.action is Action.START and len(p.files) == 2
    assert p.joins == ("10.0.0.2:8301", "10.0.0.3:8301")
    assert "node_name" in p.config_diff and p.changes


def test_converged_host_plans_nothing(inv: Inventory) -> None:
    n = inv.node("s2")
    p = plan_node(
        inv, n, state(inv, "s2", current="R1", running=True), render_node(inv, n, "launcher"), "R1"
    )
    assert (p.install, p.files, p.action, p.joins, p.config_diff) == (
        None,
        (),
        Action.NOTHING,
        (),
        "",
    )
    assert not p.changes and p.summary() == "nothing"


def test_config_change_restarts_with_a_diff(inv: Inventory) -> None:
    n = inv.node("c1")
    old = render_node(inv, n, "launcher").config.content.replace('"INFO"', '"DEBUG"')
    p = plan_node(
        inv,
        n,
        state(inv, "c1", current="R1", running=True, config=old),
        render_node(inv, n, "launcher"),
        "R1",
    )
    assert p.action is Action.RESTART and p.install is None
    assert (
        '-  "log_level": "DEBUG",' in p.config_diff and '+  "log_level": "INFO",' in p.config_diff
    )


def test_new_release_upgrades_and_restarts(inv: Inventory) -> None:
    n = inv.node("s1")
    p = plan_node(
        inv, n, state(inv, "s1", current="R1", running=True), render_node(inv, n, "launcher"), "R2"
    )
    assert p.install == "upgrade R1 -> R2" and p.action is Action.RESTART


def test_stopped_host_starts(inv: Inventory) -> None:
    n = inv.node("s3")
    p = plan_node(
        inv, n, state(inv, "s3", current="R1", running=False), render_node(inv, n, "launcher"), "R1"
    )
    assert p.action is Action.START and p.install is None


MEMBERS = """Node  Address        Status  Type    Build  Protocol  DC
c1    10.0.0.9:8301  alive   client  0.7.2  2         dc1
s1    10.0.0.1:8301  alive   server  0.7.2  2         dc1
s2    10.0.0.2:8301  failed  server  0.7.2  2         dc1
zz    10.0.0.7:8301  alive   client  0.7.2  2         dc1
"""
PEERS = """Node  ID             Address        State     Voter
s1    10.0.0.1:8300  10.0.0.1:8300  leader    true
s2    10.0.0.2:8300  10.0.0.2:8300  follower  true
"""


def test_parse_consul_tables() -> None:
    ms = parse_members(MEMBERS)
    assert ms[0] == Member("c1", "10.0.0.9:8301", "alive", "client", "dc1")
    assert parse_peers(PEERS)[0] == Peer("s1", "10.0.0.1:8300", "leader")


def test_compare_lists_every_mismatch(inv: Inventory) -> None:
    view = DCView("dc1", "s1", parse_members(MEMBERS), parse_peers(PEERS))
    assert compare(inv, [view]) == [
        "dc1: s2 is failed, want alive",
        "dc1: s3 is not a member",
        "dc1: zz (10.0.0.7:8301) is a member but not in the inventory",
        "dc1: server s3 (10.0.0.3:8300) is not a raft peer",
    ]


def test_compare_healthy_and_unanswered(inv: Inventory) -> None:
    members = [Member(n.name, n.serf_lan_addr, "alive", n.role, "dc1") for n in inv.nodes]
    peers = [
        Peer(s.name, f"{s.bind_addr}:8300", "leader" if s.name == "s1" else "follower")
        for s in inv.servers()
    ]
    assert compare(inv, [DCView("dc1", "s1", members, peers)]) == []
    assert compare(inv, [DCView("dc1", None, errors=["s1: refused"])]) == [
        "dc1: no server answered (s1: refused)"
    ]
    two = [Peer(p.node, p.address, "leader") for p in peers]
    assert "dc1: 3 raft leaders (s1, s2, s3)" in compare(inv, [DCView("dc1", "s1", members, two)])
