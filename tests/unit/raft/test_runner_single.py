"""One server: Consul's bootstrap log lines, `senate info`'s raft section, restart from disk."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from raft_harness import KVFSM, put, wait_for

from agent.mux import PortMux
from agent.raft.config import RaftConfig
from agent.raft.runner import NotLeaderError, RaftNode, RaftStoreError, ServerInfo


async def _node(data_dir: Path | None, fsm: KVFSM) -> tuple[RaftNode, PortMux]:
    mux = PortMux()
    await mux.start("127.0.0.1", 0)
    port = mux.port
    addr = f"127.0.0.1:{port}"
    node = RaftNode(
        node_id=addr, address=addr, data_dir=data_dir, fsm=fsm, mux=mux, config=RaftConfig.dev()
    )
    return node, mux


async def test_bootstrap_logs_like_consul_and_reports_stats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fsm = KVFSM()
    node, mux = await _node(None, fsm)
    try:
        with caplog.at_level(logging.INFO, logger="raft"):
            assert await node.bootstrap([ServerInfo(node.address, node.address, "Voter")])
            await node.start()
            await wait_for(node.is_leader, 5.0, "leadership")
        a = node.address
        lines = [r.getMessage() for r in caplog.records if r.name == "raft"]
        assert lines[:6] == [
            f"Initial configuration (index=1): [{{Suffrage:Voter ID:{a} Address:{a}}}]",
            f'Node at {a} [Follower] entering Follower state (Leader: "")',
            'Heartbeat timeout from "" reached, starting election',
            f"Node at {a} [Candidate] entering Candidate state in term 2",
            "Election won. Tally: 1",
            f"Node at {a} [Leader] entering Leader state",
        ]
        assert not await node.bootstrap([ServerInfo(a, a, "Voter")])  # exactly once
        await node.apply(put("k", b"v"))
        await node.verify_leader()
        assert node.lease_valid()
        stats = node.stats()
        assert stats["state"] == "Leader" and stats["num_peers"] == "0"
        assert stats["latest_configuration"] == f"[{{Suffrage:Voter ID:{a} Address:{a}}}]"
        assert stats["last_log_index"] == stats["commit_index"] == stats["applied_index"] == "3"
        assert stats["last_contact"] == "0" and stats["term"] == "2"
    finally:
        await node.stop()
        await mux.close()
    assert node.state == "Shutdown"
    with pytest.raises(NotLeaderError):
        await node.apply(put("k", b"v"))


async def test_no_peers_aborts_election(caplog: pytest.LogCaptureFixture) -> None:
    node, mux = await _node(None, KVFSM())
    try:
        with caplog.at_level(logging.INFO, logger="raft"):
            await node.start()
            await wait_for(lambda: any("no known peers" in r.message for r in caplog.records), 5.0)
        lines = [r.getMessage() for r in caplog.records if r.name == "raft"]
        assert lines[0] == "Initial configuration (index=0): []"
        assert lines[2] == "no known peers, aborting election"
        assert node.stats()["last_contact"] == "never"
        with pytest.raises(NotLeaderError):
            await node.apply(b"x")
    finally:
        await node.stop()
        await mux.close()


async def test_restart_restores_snapshot_and_log(tmp_path: Path) -> None:
    fsm = KVFSM()
    node, mux = await _node(tmp_path, fsm)
    await node.bootstrap([ServerInfo(node.address, node.address, "Voter")])
    await node.start()
    try:
        await wait_for(node.is_leader, 5.0, "leadership")
        for i in range(20):
            await node.apply(put(f"k{i}", b"%d" % i))
        await node.snapshot_now()
        for i in range(20, 25):
            await node.apply(put(f"k{i}", b"%d" % i))
        assert node.stats()["last_snapshot_index"] == "22"
    finally:
        await node.stop()
        await mux.close()
    fsm2 = KVFSM()
    node2, mux2 = await _node(tmp_path, fsm2)
    node2.node_id = node2.address = node.address  # same identity, new port is irrelevant alone
    try:
        assert node2.has_existing_state()
        await node2.start()
        assert fsm2.data == {f"k{i}": b"%d" % i for i in range(20)}  # from the snapshot
        await wait_for(node2.is_leader, 5.0, "leadership after restart")
        await wait_for(lambda: len(fsm2.data) == 25, 5.0, "log replay")
    finally:
        await node2.stop()
        await mux2.close()


async def test_corrupt_store_refuses_to_start_naming_the_file(tmp_path: Path) -> None:
    fsm = KVFSM()
    node, mux = await _node(tmp_path, fsm)
    await node.bootstrap([ServerInfo(node.address, node.address, "Voter")])
    await node.stop()
    await mux.close()
    data = tmp_path / "raft" / "data.mdb"
    raw = bytearray(data.read_bytes())
    raw[:64] = b"\xff" * 64  # the LMDB meta pages
    raw[4096 : 4096 + 64] = b"\xff" * 64
    data.write_bytes(bytes(raw))
    node2, mux2 = await _node(tmp_path, KVFSM())
    try:
        with pytest.raises(RaftStoreError, match=r"raft/data\.mdb"):
            await node2.start()
    finally:
        await node2.stop()
        await mux2.close()
