"""Raft protocol 3's IDs on the leader (agent/server/leader.py's _join_server, Consul's
joinConsulServer): a server joins under its node ID, a known ID at a new address is updated
in place, protocol 2's address IDs are rewritten to node IDs only once every server speaks 3,
and bootstrap-expect names servers by node ID only when all of them speak 3."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.metadata import min_raft_protocol, server_member, server_parts
from agent.server.bootstrap import BootstrapExpect
from agent.server.leader import LeaderDuties


@dataclass
class M:
    name: str
    addr: str
    tags: dict[str, str]
    status: str = "alive"
    port: int = 8301


def server(name: str, ip: str, node_id: str, raft_vsn: int) -> M:
    tags = {"role": "consul", "dc": "dc1", "port": "8300", "id": node_id}
    tags["raft_vsn"] = str(raft_vsn)
    return M(name, ip, tags)


@dataclass(frozen=True)
class SI:
    id: str
    address: str
    suffrage: str


@dataclass
class ConfigRaft:
    """A raft whose configuration changes as the leader asks, one change per call."""

    config: list[SI]
    changes: list[tuple[str, ...]] = field(default_factory=list)
    state: bool = False
    bootstraps: list[list[Any]] = field(default_factory=list)

    def is_leader(self) -> bool:
        return True

    def configuration(self) -> list[SI]:
        return list(self.config)

    async def add_voter(self, id: str, address: str) -> None:
        raise AssertionError("servers join as non-voters")

    async def add_nonvoter(self, id: str, address: str) -> None:
        self.changes.append(("add", id, address))
        self.config.append(SI(id, address, "Nonvoter"))

    async def remove_server(self, id: str) -> None:
        self.changes.append(("remove", id))
        self.config = [s for s in self.config if s.id != id]

    async def replace_server(self, old_id: str, new_id: str, address: str) -> None:
        self.changes.append(("replace", old_id, new_id, address))
        self.config = [
            SI(new_id, address, s.suffrage) if s.id == old_id else s for s in self.config
        ]

    def has_existing_state(self) -> bool:
        return self.state

    async def bootstrap(self, servers: list[Any]) -> bool:
        self.bootstraps.append(servers)
        return True


async def _handle(method: str, args: dict[str, Any]) -> Any:
    return None


async def join(d: LeaderDuties, m: M) -> None:
    parts = server_parts(m)
    assert parts is not None
    await d._join_server(parts)


def duties(raft: ConfigRaft, members: list[M]) -> LeaderDuties:
    return LeaderDuties(
        node_name="s1", datacenter="dc1", raft=raft, handle=_handle, lan_members=lambda: members
    )


async def test_a_new_server_joins_under_its_node_id() -> None:
    raft = ConfigRaft([SI("n1", "10.0.0.1:8300", "Voter")])
    members = [server("s1", "10.0.0.1", "n1", 3), server("s2", "10.0.0.2", "n2", 3)]
    await join(duties(raft, members), members[1])
    assert raft.changes == [("add", "n2", "10.0.0.2:8300")]


async def test_a_known_id_at_a_new_address_is_updated_in_place_keeping_its_vote() -> None:
    raft = ConfigRaft([SI("n1", "10.0.0.1:8300", "Voter"), SI("n2", "10.0.0.2:8300", "Voter")])
    members = [server("s1", "10.0.0.1", "n1", 3), server("s2", "10.0.0.9", "n2", 3)]
    d = duties(raft, members)
    await join(d, members[1])
    assert raft.changes == [("replace", "n2", "n2", "10.0.0.9:8300")]
    assert raft.config[1] == SI("n2", "10.0.0.9:8300", "Voter")
    await join(d, members[1])  # converged: no second change
    assert len(raft.changes) == 1


async def test_address_ids_become_node_ids_only_once_every_server_speaks_3() -> None:
    raft = ConfigRaft([SI(f"10.0.0.{i}:8300", f"10.0.0.{i}:8300", "Voter") for i in (1, 2, 3)])
    members = [
        server("s1", "10.0.0.1", "n1", 3),
        server("s2", "10.0.0.2", "n2", 3),
        server("s3", "10.0.0.3", "n3", 2),  # not restarted with protocol 3 yet
    ]
    d = duties(raft, members)
    for m in members:
        await join(d, m)
    assert raft.changes == []  # a mixed datacenter keeps protocol 2's IDs
    assert min_raft_protocol(members, "dc1") == 2
    members[2].tags["raft_vsn"] = "3"
    for m in members:
        await join(d, m)
    assert [s.id for s in raft.config] == ["n1", "n2", "n3"]
    assert all(s.suffrage == "Voter" for s in raft.config)
    assert [c[0] for c in raft.changes] == ["replace"] * 3  # one change per server


async def test_another_id_at_a_reused_address_is_removed_first() -> None:
    raft = ConfigRaft([SI("n1", "10.0.0.1:8300", "Voter"), SI("gone", "10.0.0.2:8300", "Voter")])
    members = [server("s1", "10.0.0.1", "n1", 3), server("s2", "10.0.0.2", "n2", 3)]
    await join(duties(raft, members), members[1])
    assert raft.changes == [("remove", "gone"), ("add", "n2", "10.0.0.2:8300")]


def test_server_member_is_found_by_node_id_before_address() -> None:
    moved = server("s2", "10.0.0.9", "n2", 3)
    squatter = server("s4", "10.0.0.2", "n4", 3)
    assert server_member([squatter, moved], "10.0.0.2:8300", "n2") is moved
    assert server_member([squatter, moved], "10.0.0.2:8300", "10.0.0.2:8300") is squatter
    assert server_member([moved], "10.0.0.5:8300", "nope") is None


async def test_bootstrap_expect_uses_node_ids_only_when_all_speak_3() -> None:
    def make(raft: ConfigRaft) -> BootstrapExpect:
        return BootstrapExpect(datacenter="dc1", expect=2, raft=raft, make_server=SI)

    raft = ConfigRaft([])
    await make(raft).maybe_bootstrap(
        [server("s1", "10.0.0.1", "n1", 3), server("s2", "10.0.0.2", "n2", 3)]
    )
    assert [s.id for s in raft.bootstraps[0]] == ["n1", "n2"]
    raft = ConfigRaft([])
    await make(raft).maybe_bootstrap(
        [server("s1", "10.0.0.1", "n1", 3), server("s2", "10.0.0.2", "n2", 2)]
    )
    assert [s.id for s in raft.bootstraps[0]] == ["10.0.0.1:8300", "10.0.0.2:8300"]
