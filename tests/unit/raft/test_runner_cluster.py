"""A real three-server RaftNode cluster on 127.0.0.1-3 over TCP with LMDB (paper §5.2, §5.3)."""

from __future__ import annotations

import asyncio

from raft_harness import Cluster, put, wait_for


async def test_elects_replicates_and_survives_leader_kill(cluster3: Cluster) -> None:
    leader = await cluster3.wait_leader()
    acked = []
    for i in range(50):
        index = await leader.apply(put(f"k{i}", b"v%d" % i))
        acked.append(index)
    await asyncio.gather(*(leader.apply(put(f"c{i}", b"x")) for i in range(100)))
    # §5.3: every follower applies the same entries.
    await wait_for(
        lambda: all(f.data == cluster3.fsms[0].data for f in cluster3.fsms), what="replication"
    )
    assert cluster3.fsms[0].data["k49"] == b"v49"

    # SIGKILL-like stop of the leader: a new leader is elected and no acked write is lost.
    old = cluster3.nodes.index(leader)
    await cluster3.kill(old)
    new = await cluster3.wait_leader()
    assert new is not leader
    await new.apply(put("after", b"1"))
    await new.verify_leader()
    i = cluster3.nodes.index(new)
    assert cluster3.fsms[i].data["k0"] == b"v0" and len(cluster3.fsms[i].data) == 151

    # The killed server restarts from its LMDB log and catches up.
    await cluster3.restart(old)
    await wait_for(lambda: cluster3.fsms[old].data.get("after") == b"1", what="catch-up")
