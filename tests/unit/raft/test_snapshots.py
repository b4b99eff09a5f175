"""Snapshot files (paper §7): atomic, checksummed, two retained, refused when corrupt."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.raft.log_store import RaftStoreError
from agent.raft.messages import ServerInfo, Snapshot, SnapshotMeta
from agent.raft.snapshots import SnapshotStore

SERVERS = (ServerInfo("10.0.0.1:8300", "10.0.0.1:8300", "Voter"),)


def _snap(index: int, data: bytes) -> Snapshot:
    return Snapshot(SnapshotMeta(index, 2, SERVERS), data)


def test_latest_survives_reopen_and_two_are_retained(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for i in (10, 20, 30):
        store.save(_snap(i, b"state-%d" % i))
    assert sorted(p.name for p in tmp_path.glob("*.snap")) == ["2-20.snap", "2-30.snap"]
    again = SnapshotStore(tmp_path).latest()
    assert again == _snap(30, b"state-30")


def test_interrupted_write_leaves_previous_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(_snap(10, b"good"))
    (tmp_path / "2-20.tmp").write_bytes(b"half a snapsh")  # crash before the rename
    reopened = SnapshotStore(tmp_path)
    assert reopened.latest() == _snap(10, b"good")
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_snapshot_refuses_naming_the_file(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(_snap(10, b"important state"))
    path = tmp_path / "2-10.snap"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(RaftStoreError, match=r"2-10\.snap.*checksum"):
        SnapshotStore(tmp_path).latest()


def test_memory_store_keeps_latest() -> None:
    store = SnapshotStore(None)
    assert store.latest() is None
    store.save(_snap(5, b"a"))
    assert store.latest() == _snap(5, b"a")
