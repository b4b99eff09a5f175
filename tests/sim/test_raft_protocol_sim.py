"""Raft protocol 3's server IDs on the deterministic simulator, under load and message loss:
a server restarted on a new address (same disk, so same node ID) keeps its ID and its vote
once the leader rewrites its address; a datacenter whose configuration names servers by
address (protocol 2) is restarted server by server with node IDs and the leader rewrites each
entry, one change at a time: every safety check of the simulator holds throughout, no
acknowledged write is lost, histories stay linearizable, and the end configuration is node IDs.

The leader's part is played here as agent/server/leader.py's _join_server plays it on a real
server: gossip (the simulator) says where each server is and which protocol it speaks."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from agent.raft.messages import VOTER, ConfigChangeInProgress, NotLeader, ServerInfo
from agent.sim.raft_cluster import SimCluster, SimServer

SEEDS = range(16)


@pytest.fixture(autouse=True)
def _quiet_raft() -> Iterator[None]:
    logger = logging.getLogger("raft")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def reconcile(c: SimCluster) -> None:
    """One leader pass: a known ID at a new address is updated in place; once every server
    runs protocol 3, an address ID is rewritten to the server's node ID."""
    lead = c.leader()
    if lead is None or lead.core is None:
        return
    core = lead.core
    all_v3 = all(s.raft_id != s.address or s.aliases for s in c.servers.values())
    for s in c.servers.values():
        entry = next((e for e in core.servers if e.id == s.config_id(core.servers)), None)
        if entry is None:
            continue
        new_id = s.raft_id if all_v3 and entry.id == s.address else entry.id
        if (new_id, s.address) == (entry.id, entry.address):
            continue
        servers = tuple(
            ServerInfo(new_id, s.address, e.suffrage) if e is entry else e for e in core.servers
        )
        try:
            core.propose_config(servers)
        except (NotLeader, ConfigChangeInProgress):
            return
        c.events["config changes"] += 1
        lead.after_event()
        return  # one membership change at a time


def every(c: SimCluster, period: float, until: float) -> None:
    def tick() -> None:
        reconcile(c)
        if c.clock.now + period < until:
            c.clock.call_later(period, tick)

    c.clock.call_later(period, tick)


def restart(s: SimServer, *, address: str | None = None, node_id: str | None = None) -> None:
    s.crash()
    if address is not None:
        s.address = address
    if node_id is not None:  # now run with raft protocol 3
        s.raft_id, s.aliases = node_id, (s.address,)
    s.boot()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_server_restarted_on_a_new_address_keeps_its_id_and_its_vote(seed: int) -> None:
    c = SimCluster(seed, size=3, node_ids=True, membership=False)
    c.net.faults.drop = 0.02
    c.schedule_clients(0.2, 1.2)
    moved: list[SimServer] = []

    def move() -> None:
        lead = c.leader()
        victim = next(s for s in c.servers.values() if s is not lead and s.core is not None)
        restart(victim, address=f"10.0.1.{seed % 200 + 1}:8300")
        moved.append(victim)

    c.clock.call_at(0.5, move)
    every(c, 0.02, 4.0)
    c.heal_and_converge(1.2, 3.0)
    (victim,) = moved
    lead = c.leader()
    assert lead is not None and lead.core is not None
    entry = next(e for e in lead.core.servers if e.id == victim.raft_id)
    assert (entry.address, entry.suffrage) == (victim.address, VOTER)
    assert [e.id for e in lead.core.servers] == [s.raft_id for s in c.servers.values()]
    assert victim.core is not None and victim.core.id == victim.raft_id
    assert victim.applied_index >= lead.core.commit_index


@pytest.mark.parametrize("seed", SEEDS)
def test_upgrade_from_address_ids_to_node_ids_under_load_loses_no_write(seed: int) -> None:
    c = SimCluster(seed, size=3, membership=False)
    c.net.faults.drop = 0.02
    c.schedule_clients(0.2, 1.6)
    order = list(c.servers.values())
    c.rng.shuffle(order)
    for k, s in enumerate(order):  # a rolling restart, one server at a time
        node_id = f"node-{s.id}"
        c.clock.call_at(0.3 + 0.3 * k, lambda s=s, n=node_id: restart(s, node_id=n))  # type: ignore[misc]
    every(c, 0.02, 4.6)
    c.heal_and_converge(1.6, 3.0)
    assert len(c.acked) > 20  # the load ran through the upgrade
    lead = c.leader()
    assert lead is not None and lead.core is not None
    assert sorted(e.id for e in lead.core.servers) == sorted(f"node-{i}" for i in c.ids)
    assert all(e.suffrage == VOTER for e in lead.core.servers)
    for s in c.servers.values():
        assert s.core is not None and s.core.id == s.raft_id
