"""The LMDB raft log: durability of entries, term and vote (paper §5.1, Figure 2
"Persistent state"), suffix replacement, compaction, and refusal of a corrupt store."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from agent.raft.log_store import LMDBLogStore, MemoryLogStore, RaftStoreError
from agent.raft.messages import Entry, EntryKind, HardState, ServerInfo


def _e(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(index, term, EntryKind.COMMAND, data)


@pytest.mark.parametrize("kind", ["lmdb", "memory"])
def test_entries_term_and_vote_survive_reopen(tmp_path: Path, kind: str) -> None:
    store = LMDBLogStore(tmp_path / "raft") if kind == "lmdb" else MemoryLogStore()
    assert not store.has_state()
    servers = (ServerInfo("10.0.0.1:8300", "10.0.0.1:8300", "Voter"),)
    boot = Entry(1, 1, EntryKind.CONFIGURATION, servers=servers)
    store.save(HardState(2, "10.0.0.1:8300"), [boot, _e(2, 2), _e(3, 2)], reset=False)
    # A new leader's entries replace the conflicting suffix from index 3 on.
    store.save(HardState(3, None), [_e(3, 3, b"y"), _e(4, 3)], reset=False)
    if kind == "lmdb":
        store.close()
        store = LMDBLogStore(tmp_path / "raft")
    hs, entries = store.load()
    assert hs == HardState(3, None)
    assert [(e.index, e.term) for e in entries] == [(1, 1), (2, 2), (3, 3), (4, 3)]
    assert entries[0].servers == servers and entries[2].data == b"y"
    store.compact(2)
    assert [e.index for e in store.load()[1]] == [3, 4]
    store.save(None, [_e(9, 4)], reset=True)  # a snapshot replaced the whole log
    assert [e.index for e in store.load()[1]] == [9]
    store.close()


def test_corrupt_entry_refuses_to_start_naming_the_file(tmp_path: Path) -> None:
    store = LMDBLogStore(tmp_path / "raft")
    store.save(HardState(1, None), [_e(1, 1), _e(2, 1)], reset=False)
    store.close()
    # Flip bytes of one stored value behind the store's back.
    env = lmdb.open(str(tmp_path / "raft"), max_dbs=4)
    db = env.open_db(b"logs")
    with env.begin(write=True) as txn:
        key = (2).to_bytes(8, "big")
        raw = bytearray(txn.get(key, db=db))
        raw[3] ^= 0xFF
        txn.put(key, bytes(raw), db=db)
    env.close()
    store = LMDBLogStore(tmp_path / "raft")
    with pytest.raises(RaftStoreError, match=r"data\.mdb.*log entry 2.*checksum"):
        store.load()
    store.close()


def test_garbage_file_refuses_to_start_naming_the_file(tmp_path: Path) -> None:
    raft = tmp_path / "raft"
    raft.mkdir()
    (raft / "data.mdb").write_bytes(b"this is not an lmdb file" * 1000)
    with pytest.raises(RaftStoreError, match=r"data\.mdb"):
        LMDBLogStore(raft).load()
