"""InstallSnapshot over TCP (paper §7): a server that was down while the leader compacted its
log gets the snapshot in chunks, persists it, restores its FSM, and restarts from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from raft_harness import Cluster, put, wait_for

from agent.raft.config import RaftConfig
from agent.raft.snapshots import SnapshotStore


async def test_lagging_server_installs_snapshot_over_tcp(tmp_path: Path) -> None:
    cfg = replace(
        RaftConfig.dev(), snapshot_threshold=50, trailing_logs=10, snapshot_chunk_size=256
    )
    c = Cluster(tmp_path, 3, cfg)
    try:
        await c.start()
        leader = await c.wait_leader()
        lagging = next(i for i, n in enumerate(c.nodes) if n is not leader)
        await c.kill(lagging)
        for i in range(120):
            await leader.apply(put(f"k{i}", b"value-%d" % i))
        assert int(leader.stats()["last_snapshot_index"]) > 60
        node = await c.restart(lagging)
        want = c.fsms[c.nodes.index(leader)].data
        await wait_for(lambda: c.fsms[lagging].data == want, what="snapshot install")
        snap = SnapshotStore(tmp_path / f"n{lagging}" / "raft" / "snapshots").latest()
        assert snap is not None and snap.meta.index > 60  # persisted before it was used
        assert int(node.stats()["last_snapshot_index"]) == snap.meta.index
        # And it restarts from that snapshot plus its log.
        await c.kill(lagging)
        await c.restart(lagging)
        assert len(c.fsms[lagging].data) >= snap.meta.index - 3  # restored before any traffic
        await wait_for(lambda: c.fsms[lagging].data == want, what="catch-up after restart")
    finally:
        await c.close()
