"""A follower whose raft store is lost (data.mdb cut to nothing, or restored from an old copy)
is repaired by the leader without an operator: the leader sees a later round's rejection say
the follower's log ends before what it had acknowledged, and sends it the log again (or a
snapshot). Before, the rejection was taken for a reordered, stale one for ever."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import msgpack
import pytest

from agent.sim.raft_cluster import Disk, SimCluster, SimServer


@pytest.fixture(autouse=True)
def _quiet_raft() -> Iterator[None]:
    logger = logging.getLogger("raft")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _leader(c: SimCluster) -> SimServer:
    assert c.clock.run_until(c.clock.now + 2.0, lambda: c.leader() is not None)
    lead = c.leader()
    assert lead is not None and lead.core is not None
    return lead


def _write(c: SimCluster, n: int) -> int:
    lead = _leader(c)
    assert lead.core is not None
    index = 0
    for i in range(n):
        index, _ = lead.core.propose(msgpack.packb([f"k{i}", f"v{i}"]))
        lead.after_event()
    assert c.clock.run_until(
        c.clock.now + 2.0, lambda: all(s.applied_index >= index for s in c.servers.values())
    )
    return index


@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize("old_copy", [False, True])
def test_a_follower_that_lost_its_store_is_repaired(seed: int, old_copy: bool) -> None:
    c = SimCluster(seed, size=3)
    _write(c, 5)
    lead = _leader(c)
    follower = next(s for s in c.servers.values() if s is not lead)
    # a backup of the store taken now, before the next writes; or nothing at all
    stale = copy.deepcopy(follower.disk) if old_copy else Disk()
    last = _write(c, 20)
    follower.crash()
    follower.disk = stale
    follower.boot()
    last = max(last, _write(c, 3))
    assert c.clock.run_until(
        c.clock.now + 3.0,
        lambda: (
            follower.core is not None
            and follower.applied_index >= last
            and follower.kv.get("k19") == "v19"
        ),
    ), f"the follower stayed at {follower.applied_index} of {last}"
    assert follower.core is not None and follower.core.last_index >= last
