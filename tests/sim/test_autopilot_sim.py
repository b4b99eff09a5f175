"""Autopilot's decisions (agent/server/autopilot.py) driving raft cores on the deterministic
simulator, with a virtual clock: a killed server is removed and its replacement promoted only
once it has been stable for ServerStabilizationTime, voters never outnumber the live servers
+ 1, a leader is never lost for long; a flapping server is never promoted while it flaps.

Gossip is played by the simulator itself: a server is "failed" once it has been down for
SUSPICION seconds, "alive" otherwise; the leader's view of each follower (last contact, match
index) is its raft core's progress, as on a real server."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from agent.raft.messages import NONVOTER, VOTER, ConfigChangeInProgress, NotLeader, ServerInfo
from agent.server.autopilot import DEFAULT_CONFIG, Autopilot, ServerView, to_promote, to_remove
from agent.sim.raft_cluster import SimCluster, SimServer

SUSPICION = 0.2
CONFIG = {**DEFAULT_CONFIG, "LastContactThreshold": "50ms", "ServerStabilizationTime": "500ms"}
STABLE = 0.5
SEEDS = range(12)


@pytest.fixture(autouse=True)
def _quiet_raft() -> Iterator[None]:
    logger = logging.getLogger("raft")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


class Pilot:
    """Runs autopilot on whichever server leads, every 50 ms of virtual time."""

    def __init__(self, cluster: SimCluster) -> None:
        self.c = cluster
        self.down_since: dict[str, float] = {}
        self.autopilot = Autopilot(clock=lambda: cluster.clock.now, wall=lambda: 0.0)
        self.promoted_at: dict[str, float] = {}
        self.max_excess = -10
        self.leaderless_since: float | None = None
        self.longest_leaderless = 0.0

    def serf(self, sid: str) -> str:
        s = self.c.servers[sid]
        if s.core is not None:
            self.down_since.pop(sid, None)
            return "alive"
        since = self.down_since.setdefault(sid, self.c.clock.now)
        return "failed" if self.c.clock.now - since >= SUSPICION else "alive"

    def views(self, lead: SimServer) -> list[ServerView]:
        core = lead.core
        assert core is not None
        now = self.c.clock.now
        out = []
        for srv in core.servers:
            if srv.id == lead.id:
                contact: float | None = 0.0
                match = core.last_index
            else:
                pr = core.progress.get(srv.id)
                contact = None if pr is None or pr.acked_sent_at < 0 else now - pr.acked_sent_at
                match = pr.match if pr is not None else 0
            out.append(
                ServerView(
                    id=srv.id,
                    name=srv.id,
                    address=srv.id,
                    serf_status=self.serf(srv.id),
                    version="",
                    voter=srv.suffrage == VOTER,
                    leader=srv.id == lead.id,
                    last_contact=contact,
                    last_term=core.term if contact is not None else 0,
                    last_index=match,
                )
            )
        return out

    def step(self) -> None:
        lead = self.c.leader()
        now = self.c.clock.now
        if lead is None or lead.core is None:
            self.leaderless_since = self.leaderless_since or now
            self.longest_leaderless = max(self.longest_leaderless, now - self.leaderless_since)
        else:
            self.leaderless_since = None
            core = lead.core
            live = sum(1 for s in self.c.servers.values() if s.core is not None)
            voters = sum(1 for s in core.servers if s.suffrage == VOTER)
            self.max_excess = max(self.max_excess, voters - live)
            views = self.views(lead)
            health = self.autopilot.observe(views, CONFIG, core.term, core.last_index)
            change: tuple[ServerInfo, ...] | None = None
            for sid in to_remove(views, CONFIG):
                change = tuple(s for s in core.servers if s.id != sid)
                break
            if change is None:
                for sid in to_promote(health, CONFIG):
                    change = tuple(
                        ServerInfo(s.id, s.address, VOTER) if s.id == sid else s
                        for s in core.servers
                    )
                    self.promoted_at[sid] = now
                    break
            if change is not None:
                try:
                    core.propose_config(change)
                    lead.after_event()
                except (NotLeader, ConfigChangeInProgress):
                    pass
        self.c.clock.call_later(0.05, self.step)

    def join(self, sid: str) -> None:
        """A new server: an empty disk, and the leader adds it as a non-voter."""
        self.c.ids.append(sid)
        srv = SimServer(self.c, sid)
        self.c.servers[sid] = srv
        srv.boot()

        def add() -> None:
            lead = self.c.leader()
            if lead is None or lead.core is None:
                self.c.clock.call_later(0.05, add)
                return
            core = lead.core
            if any(s.id == sid for s in core.servers):
                return
            try:
                core.propose_config((*core.servers, ServerInfo(sid, sid, NONVOTER)))
                lead.after_event()
            except (NotLeader, ConfigChangeInProgress):
                self.c.clock.call_later(0.05, add)

        add()


def voters_of(cluster: SimCluster) -> set[str]:
    lead = cluster.leader()
    assert lead is not None and lead.core is not None
    return {s.id for s in lead.core.servers if s.suffrage == VOTER}


@pytest.mark.parametrize("seed", SEEDS)
def test_a_killed_server_is_replaced_without_losing_quorum(seed: int) -> None:
    c = SimCluster(seed, size=3, membership=False)
    pilot = Pilot(c)
    c.clock.call_later(0.05, pilot.step)
    assert c.clock.run_until(2.0, lambda: c.leader() is not None)
    lead = c.leader()
    assert lead is not None
    victim = next(i for i in c.ids if i != lead.id)
    c.servers[victim].crash()
    new = "10.0.0.9:8300"
    joined_at = c.clock.now
    pilot.join(new)

    def replaced() -> bool:
        lead = c.leader()
        return (
            lead is not None and lead.core is not None and voters_of(c) == (set(c.ids) - {victim})
        )

    assert c.clock.run_until(c.clock.now + 10.0, replaced), (
        f"seed {seed}: voters {voters_of(c) if c.leader() else None}"
    )
    assert pilot.promoted_at[new] - joined_at >= STABLE  # never before stabilization
    assert pilot.max_excess <= 1  # voters never exceed the live servers + 1
    assert pilot.longest_leaderless < 1.0  # quorum was never lost for good

    # it goes on working: writes commit with the new voter (client_op writes half the time)
    def written() -> bool:
        if any(op.key == "after" and op.kind == "put" for op in c.history):
            return True
        c.client_op(0, "after")
        return False

    assert c.clock.run_until(c.clock.now + 2.0, written)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_flapping_server_is_not_promoted_while_it_flaps(seed: int) -> None:
    c = SimCluster(seed, size=3, membership=False)
    pilot = Pilot(c)
    c.clock.call_later(0.05, pilot.step)
    assert c.clock.run_until(2.0, lambda: c.leader() is not None)
    new = "10.0.0.9:8300"
    pilot.join(new)
    flaps_until = c.clock.now + 2.0

    def flap() -> None:
        if c.clock.now >= flaps_until:
            return
        srv = c.servers[new]
        if srv.core is None:
            srv.boot()
        else:
            srv.crash()
        c.clock.call_later(0.15, flap)  # down less than SUSPICION: gossip never says failed

    c.clock.call_later(0.1, flap)
    c.clock.run_until(flaps_until)
    assert new not in pilot.promoted_at, f"seed {seed}: promoted while flapping"
    if c.servers[new].core is None:
        c.servers[new].boot()
    settled = c.clock.now
    assert c.clock.run_until(settled + 5.0, lambda: new in pilot.promoted_at)
    assert pilot.promoted_at[new] - settled >= STABLE - 0.05
