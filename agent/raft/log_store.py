"""The durable raft log and stable store: LMDB under `<data_dir>/raft/`, or memory for -dev.

One write transaction per Ready, committed with LMDB's sync (an fsync) before the runner
sends anything of that Ready: a vote or an acknowledgement is never sent for what could be
lost. Every value carries a CRC32; a store that fails its checks refuses to start with a
message naming the file, rather than serve wrong data.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, Protocol

import lmdb
import msgpack

from agent.raft.messages import Entry, EntryKind, HardState, ServerInfo

_KEY = struct.Struct(">Q")
_CRC = struct.Struct(">I")


class RaftStoreError(Exception):
    """The raft store on disk is unreadable or corrupt."""


class LogStore(Protocol):
    def load(self) -> tuple[HardState | None, list[Entry]]: ...

    def save(self, hard_state: HardState | None, entries: list[Entry], reset: bool) -> None:
        """One durable write: the hard state and `entries` (replacing the stored suffix from
        the first entry's index on); with `reset`, every stored entry is dropped first."""
        ...

    def compact(self, upto: int) -> None:
        """Drop entries with index <= upto (they are in a snapshot)."""
        ...

    def has_state(self) -> bool: ...

    def close(self) -> None: ...


def _seal(obj: Any) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return body + _CRC.pack(zlib.crc32(body))


def _open(raw: bytes, where: str) -> Any:
    if len(raw) < _CRC.size:
        raise RaftStoreError(f"{where}: truncated value")
    body, crc = raw[: -_CRC.size], _CRC.unpack(raw[-_CRC.size :])[0]
    if zlib.crc32(body) != crc:
        raise RaftStoreError(f"{where}: checksum mismatch")
    try:
        return msgpack.unpackb(body, raw=False)
    except Exception as exc:
        raise RaftStoreError(f"{where}: undecodable value: {exc}") from exc


def encode_entry(e: Entry) -> list[Any]:
    return [
        e.index,
        e.term,
        int(e.kind),
        e.data,
        [[s.id, s.address, s.suffrage] for s in e.servers],
    ]


def decode_entry(v: Any) -> Entry:
    index, term, kind, data, servers = v
    return Entry(index, term, EntryKind(kind), data, tuple(ServerInfo(*s) for s in servers))


class MemoryLogStore:
    """For data_dir=None (-dev mode) and the simulator: nothing survives the process."""

    def __init__(self) -> None:
        self.hard_state: HardState | None = None
        self.entries: dict[int, Entry] = {}

    def load(self) -> tuple[HardState | None, list[Entry]]:
        return self.hard_state, [self.entries[i] for i in sorted(self.entries)]

    def save(self, hard_state: HardState | None, entries: list[Entry], reset: bool) -> None:
        if reset:
            self.entries.clear()
        if hard_state is not None:
            self.hard_state = hard_state
        if entries:
            first = entries[0].index
            for i in [i for i in self.entries if i >= first]:
                del self.entries[i]
            for e in entries:
                self.entries[e.index] = e

    def compact(self, upto: int) -> None:
        for i in [i for i in self.entries if i <= upto]:
            del self.entries[i]

    def has_state(self) -> bool:
        return self.hard_state is not None or bool(self.entries)

    def close(self) -> None:
        pass


class LMDBLogStore:
    """Entries keyed by big-endian index in the `logs` database; term and vote in `stable`."""

    def __init__(self, raft_dir: Path, map_size: int = 1 << 35) -> None:
        # map_size only reserves address space; the file grows as the log does.
        raft_dir.mkdir(parents=True, exist_ok=True)
        self.path = raft_dir / "data.mdb"
        try:
            self.env = lmdb.open(
                str(raft_dir), map_size=map_size, max_dbs=4, sync=True, metasync=True
            )
            self.logs = self.env.open_db(b"logs")
            self.stable = self.env.open_db(b"stable")
        except lmdb.Error as exc:
            raise RaftStoreError(f"cannot open raft store {self.path}: {exc}") from exc

    def load(self) -> tuple[HardState | None, list[Entry]]:
        hs: HardState | None = None
        entries: list[Entry] = []
        try:
            with self.env.begin() as txn:
                raw = txn.get(b"hardstate", db=self.stable)
                if raw is not None:
                    term, vote = _open(raw, f"{self.path} (hard state)")
                    hs = HardState(term, vote)
                for key, value in txn.cursor(db=self.logs):
                    (index,) = _KEY.unpack(key)
                    e = decode_entry(_open(value, f"{self.path} (log entry {index})"))
                    if e.index != index or (entries and index != entries[-1].index + 1):
                        raise RaftStoreError(f"{self.path}: log entry {index} out of sequence")
                    entries.append(e)
        except lmdb.Error as exc:
            raise RaftStoreError(f"raft store {self.path} is corrupt: {exc}") from exc
        except (ValueError, TypeError, struct.error) as exc:
            raise RaftStoreError(f"raft store {self.path} is corrupt: {exc}") from exc
        return hs, entries

    def save(self, hard_state: HardState | None, entries: list[Entry], reset: bool) -> None:
        try:
            self._save(hard_state, entries, reset)
        except lmdb.Error as exc:
            raise RaftStoreError(f"cannot write raft store {self.path}: {exc}") from exc

    def _save(self, hard_state: HardState | None, entries: list[Entry], reset: bool) -> None:
        with self.env.begin(write=True) as txn:
            if hard_state is not None:
                txn.put(b"hardstate", _seal([hard_state.term, hard_state.vote]), db=self.stable)
            if reset:
                txn.drop(self.logs, delete=False)
            if entries:
                cur = txn.cursor(db=self.logs)
                if cur.set_range(_KEY.pack(entries[0].index)):
                    while cur.delete():
                        pass
                for e in entries:
                    txn.put(_KEY.pack(e.index), _seal(encode_entry(e)), db=self.logs)
        # env opened with sync=True: the commit above returned after fsync.

    def compact(self, upto: int) -> None:
        with self.env.begin(write=True) as txn:
            cur = txn.cursor(db=self.logs)
            if cur.first():
                while cur.key() and _KEY.unpack(cur.key())[0] <= upto:
                    if not cur.delete():
                        break

    def has_state(self) -> bool:
        with self.env.begin() as txn:
            if txn.get(b"hardstate", db=self.stable) is not None:
                return True
            return txn.cursor(db=self.logs).first()

    def close(self) -> None:
        self.env.close()
