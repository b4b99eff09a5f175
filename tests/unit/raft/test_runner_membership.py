"""Membership changes and leadership transfer on real RaftNodes over TCP (thesis §4.1, §3.10)."""

from __future__ import annotations

from pathlib import Path

from raft_harness import Cluster, put, wait_for

from agent.raft.config import RaftConfig
from agent.raft.runner import ServerInfo


async def test_add_voter_remove_server_and_transfer(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 4, RaftConfig.dev())
    try:
        # Three bootstrapped voters; the fourth starts empty, as a joining server does.
        for i in range(4):
            await c.start_node(i)
        servers = [ServerInfo(a, a, "Voter") for a in c.addresses[:3]]
        for i in range(3):
            node = c.nodes[i]
            assert node is not None
            await node.bootstrap(servers)
            await node.start()
        fourth = c.nodes[3]
        assert fourth is not None
        await fourth.start()
        assert not fourth.has_existing_state() or fourth.configuration() == []
        leader = await c.wait_leader()
        for i in range(30):
            await leader.apply(put(f"k{i}", b"v"))
        # Non-voter first, promoted once caught up.
        await leader.add_voter(c.addresses[3], c.addresses[3])
        assert [s.suffrage for s in leader.configuration()] == ["Voter"] * 4
        await wait_for(lambda: len(c.fsms[3].data) == 30, what="the new server to catch up")
        await wait_for(lambda: len(fourth.configuration()) == 4, what="config on the new server")
        assert fourth.stats()["num_peers"] == "3"

        # Transfer leadership (TimeoutNow) to the new server, then remove the old leader.
        old = leader
        await old.transfer_leadership(c.addresses[3])
        await wait_for(fourth.is_leader, what="the transfer")
        await fourth.apply(put("after-transfer", b"1"))
        await fourth.remove_server(old.node_id)
        assert old.node_id not in [s.id for s in fourth.configuration()]
        await fourth.apply(put("three-again", b"1"))
        await wait_for(
            lambda: all(
                f.data.get("three-again") == b"1"
                for f, n in zip(c.fsms, c.nodes, strict=True)
                if n is not None and n is not old
            ),
            what="replication among the remaining three",
        )
    finally:
        await c.close()
