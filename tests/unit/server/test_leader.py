"""agent/server/leader.py: bootstrap-expect (exactly once, never with raft state) and the
leader's reconciliation of gossip members into the catalog, against fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.server.autopilot import DEFAULT_CONFIG as AUTOPILOT_DEFAULTS
from agent.server.bootstrap import BootstrapExpect
from agent.server.leader import LeaderDuties


@dataclass
class M:
    name: str
    addr: str
    tags: dict[str, str]
    status: str = "alive"
    port: int = 8301


def server(name: str, ip: str, expect: int = 3, dc: str = "dc1") -> M:
    return M(name, ip, {"role": "consul", "dc": dc, "port": "8300", "expect": str(expect)})


@dataclass
class FakeRaft:
    state: bool = False
    leader: bool = True
    bootstraps: list[list[Any]] = field(default_factory=list)
    config: list[Any] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def has_existing_state(self) -> bool:
        return self.state

    async def bootstrap(self, servers: list[Any]) -> bool:
        if self.state:
            return False
        self.bootstraps.append(servers)
        self.state = True
        return True

    def is_leader(self) -> bool:
        return self.leader

    def configuration(self) -> list[Any]:
        return self.config

    async def add_voter(self, id: str, address: str) -> None:
        self.added.append(id)

    async def remove_server(self, id: str) -> None:
        self.removed.append(id)


@dataclass(frozen=True)
class SI:
    id: str
    address: str
    suffrage: str


def make(raft: FakeRaft, expect: int = 3) -> BootstrapExpect:
    return BootstrapExpect(datacenter="dc1", expect=expect, raft=raft, make_server=SI)


async def test_bootstraps_once_when_expected_servers_known() -> None:
    raft = FakeRaft()
    b = make(raft)
    members = [
        server("s1", "10.0.0.1"),
        server("s2", "10.0.0.2"),
        M("c1", "10.0.0.9", {"role": "node", "dc": "dc1"}),
    ]
    assert await b.maybe_bootstrap(members) is False  # two of three servers
    members.append(server("s3", "10.0.0.3"))
    assert await b.maybe_bootstrap(members) is True
    assert [s.address for s in raft.bootstraps[0]] == [
        "10.0.0.1:8300",
        "10.0.0.2:8300",
        "10.0.0.3:8300",
    ]
    assert await b.maybe_bootstrap(members) is False
    assert len(raft.bootstraps) == 1


async def test_never_bootstraps_with_existing_state_other_dc_or_conflicting_expect() -> None:
    raft = FakeRaft(state=True)
    assert (
        await make(raft).maybe_bootstrap([server(f"s{i}", f"10.0.0.{i}") for i in range(3)])
        is False
    )
    assert raft.bootstraps == []
    raft = FakeRaft()
    others = [server(f"s{i}", f"10.0.0.{i}", dc="dc2") for i in range(3)]
    assert await make(raft).maybe_bootstrap(others) is False
    conflicting = [
        server("s1", "10.0.0.1"),
        server("s2", "10.0.0.2", expect=5),
        server("s3", "10.0.0.3"),
    ]
    assert await make(raft).maybe_bootstrap(conflicting) is False
    assert raft.bootstraps == []


async def test_leader_reconciles_members_into_catalog() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    catalog: dict[str, dict[str, Any]] = {}

    async def handle(method: str, args: dict[str, Any]) -> Any:
        calls.append((method, args))
        if method == "Catalog.Register":
            catalog[args["Node"]] = args
        elif method == "Catalog.Deregister":
            catalog.pop(args["Node"], None)
        elif method == "Health.NodeChecks":
            reg = catalog.get(args["Node"])
            return {"HealthChecks": [reg["Check"]] if reg else []}
        elif method == "Catalog.NodeServices":
            reg = catalog.get(args["Node"])
            svcs = {"consul": reg["Service"]} if reg and reg.get("Service") else {}
            return {
                "NodeServices": {"Node": {"Address": reg["Address"]}, "Services": svcs}
                if reg
                else None
            }
        elif method == "Catalog.ListNodes":
            return {"Nodes": [{"Node": n} for n in catalog]}
        elif method == "Health.ChecksInState":
            return {
                "HealthChecks": [
                    {"Node": n, **reg["Check"]} for n, reg in catalog.items() if reg.get("Check")
                ]
            }
        return None

    raft = FakeRaft(config=[SI("10.0.0.1:8300", "10.0.0.1:8300", "Voter")])
    members = [
        server("s1", "10.0.0.1"),
        server("s2", "10.0.0.2"),
        M("c1", "10.0.0.9", {"role": "node", "dc": "dc1"}),
    ]
    duties = LeaderDuties(
        node_name="s1", datacenter="dc1", raft=raft, handle=handle, lan_members=lambda: members
    )
    await duties.reconcile()
    assert catalog["c1"]["Check"]["Status"] == "passing"
    assert catalog["s2"]["Service"]["Service"] == "consul"
    # Consul 1.x: the leader registers its own consul service too (no agent holds it), with
    # the default Weights and the Meta handleAliveMember writes
    ours = catalog["s1"]["Service"]
    assert (ours["ID"], ours["Port"], ours["Weights"]) == (
        "consul",
        8300,
        {"Passing": 1, "Warning": 1},
    )
    assert ours["Meta"] == {
        "non_voter": "false",
        "read_replica": "false",
        "raft_version": "0",  # no raft_vsn tag on this fake member
        "serf_protocol_current": "0",
        "serf_protocol_min": "0",
        "serf_protocol_max": "0",
        "version": "",
    }
    assert "Service" not in catalog["c1"]
    assert raft.added == ["10.0.0.2:8300"]
    writes = len([c for c in calls if c[0] == "Catalog.Register"])
    await duties.reconcile()  # nothing changed: no new writes
    assert len([c for c in calls if c[0] == "Catalog.Register"]) == writes
    # a server that comes back with a new build gets its Meta rewritten
    members[1].tags = {**members[1].tags, "build": "1.2.3:abc", "raft_vsn": "3"}
    await duties.reconcile()
    assert catalog["s2"]["Service"]["Meta"]["version"] == "1.2.3"
    assert catalog["s2"]["Service"]["Meta"]["raft_version"] == "3"
    writes = len([c for c in calls if c[0] == "Catalog.Register"])
    members[2].status = "failed"
    await duties.reconcile()
    assert catalog["c1"]["Check"]["Status"] == "critical"
    members[2].status = "left"
    raft.config.append(SI("10.0.0.2:8300", "10.0.0.2:8300", "Voter"))
    members[1].status = "left"
    await duties.reconcile()
    assert "c1" not in catalog and "s2" not in catalog
    assert raft.removed == ["10.0.0.2:8300"]
    # A node gossip has forgotten is reaped only if it carries serfHealth; an external node
    # registered through the catalog API (no serfHealth) stays.
    catalog["ghost"] = {"Node": "ghost", "Check": {"CheckID": "serfHealth", "Status": "critical"}}
    catalog["google"] = {"Node": "google", "Address": "www.google.com"}
    await duties.reconcile()
    assert "ghost" not in catalog and "google" in catalog


async def test_autopilot_removes_a_failed_server_only_with_quorum_and_min_quorum() -> None:
    async def handle(method: str, args: dict[str, Any]) -> Any:
        return None

    config = [SI(f"10.0.0.{i}:8300", f"10.0.0.{i}:8300", "Voter") for i in (1, 2, 3)]
    raft = FakeRaft(config=list(config))
    members = [server("s1", "10.0.0.1"), server("s2", "10.0.0.2"), server("s3", "10.0.0.3")]
    settings: dict[str, Any] = dict(AUTOPILOT_DEFAULTS)
    duties = LeaderDuties(
        node_name="s1",
        datacenter="dc1",
        raft=raft,
        handle=handle,
        lan_members=lambda: members,
        autopilot_config=lambda: settings,
    )
    members[1].status = members[2].status = "failed"
    await duties.autopilot_pass()
    assert raft.removed == []  # two of three dead: removing one would not leave a quorum
    members[1].status = "alive"
    settings["MinQuorum"] = 3
    await duties.autopilot_pass()
    assert raft.removed == []  # never below MinQuorum voters
    settings["MinQuorum"], settings["CleanupDeadServers"] = 0, False
    await duties.autopilot_pass()
    assert raft.removed == []  # cleanup off
    settings["CleanupDeadServers"] = True
    await duties.autopilot_pass()
    assert raft.removed == ["10.0.0.3:8300"]  # gossip says failed: no further grace
    assert duties.health is not None and duties.health["FailureTolerance"] == 0


async def test_bootstrap_expect_joins_an_existing_cluster_instead_of_making_a_second() -> None:
    members = [server("s1", "10.0.0.1"), server("s2", "10.0.0.2"), server("s4", "10.0.0.4")]
    answers: dict[str, Any] = {
        "10.0.0.1:8300": ["10.0.0.1:8300", "10.0.0.2:8300"],
        "10.0.0.2:8300": [],
    }

    async def peers_of(addr: str) -> Any:
        if addr not in answers:
            raise ConnectionError("refused")
        return answers[addr]

    raft = FakeRaft()
    b = BootstrapExpect(
        datacenter="dc1",
        expect=3,
        raft=raft,
        make_server=SI,
        self_address="10.0.0.4:8300",
        peers_of=peers_of,
    )
    assert await b.maybe_bootstrap(members) is False
    assert b.done and raft.bootstraps == []  # s1 already has peers: never bootstrap


async def test_bootstrap_expect_retries_when_a_peer_cannot_be_asked() -> None:
    members = [server("s1", "10.0.0.1"), server("s2", "10.0.0.2"), server("s3", "10.0.0.3")]
    reachable = {"10.0.0.2:8300"}

    async def peers_of(addr: str) -> Any:
        if addr not in reachable:
            raise ConnectionError("refused")
        return []

    raft = FakeRaft()
    b = BootstrapExpect(
        datacenter="dc1",
        expect=3,
        raft=raft,
        make_server=SI,
        self_address="10.0.0.1:8300",
        peers_of=peers_of,
    )
    assert await b.maybe_bootstrap(members) is False
    assert b.retry and not b.done
    reachable.add("10.0.0.3:8300")
    assert await b.maybe_bootstrap(members) is True
    assert len(raft.bootstraps) == 1
