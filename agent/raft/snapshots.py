"""Snapshots of the state machine on disk: written atomically, checksummed, two retained.

A snapshot file is `<data_dir>/raft/snapshots/<term>-<index>.snap`: a magic line, a 4-byte
header length, a msgpack header (index, term, servers, size, sha256) and the FSM's bytes. It is
written to a temporary name, fsynced, renamed, and the directory fsynced, so a crash leaves
either the old set or the new one. A file that fails its checksum stops the server from
starting, naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

import msgpack

from agent.fsutil import TMP_SUFFIX, write_atomic
from agent.raft.log_store import RaftStoreError
from agent.raft.messages import ServerInfo, Snapshot, SnapshotMeta

log = logging.getLogger("raft")

MAGIC = b"SENATE-SNAPSHOT-1\n"
_LEN = struct.Struct(">I")
RETAIN = 2


class SnapshotStore:
    """Snapshots under `dir`, or only the latest in memory when `dir` is None."""

    def __init__(self, dir: Path | None, retain: int = RETAIN) -> None:
        self.dir = dir
        self.retain = retain
        self._memory: Snapshot | None = None
        if dir is not None:
            dir.mkdir(parents=True, exist_ok=True)
            for tmp in dir.glob("*" + TMP_SUFFIX):
                tmp.unlink()  # a write that a crash interrupted

    def save(self, snap: Snapshot) -> None:
        if self.dir is None:
            self._memory = snap
            return
        meta = snap.meta
        header = msgpack.packb(
            {
                "index": meta.index,
                "term": meta.term,
                "servers": [[s.id, s.address, s.suffrage] for s in meta.servers],
                "size": len(snap.data),
                "sha256": hashlib.sha256(snap.data).digest(),
            },
            use_bin_type=True,
        )
        # 0o666: created as a plain open() would (the umask decides), as before and as
        # hashicorp/raft's file snapshots are.
        write_atomic(
            self.dir / f"{meta.term}-{meta.index}.snap",
            (MAGIC + _LEN.pack(len(header)) + header, snap.data),
            mode=0o666,
        )
        log.info("snapshot complete up to %d", meta.index)
        for old in self._files()[self.retain :]:
            old.unlink()
            log.info("reaping snapshot %s", old)

    def _files(self) -> list[Path]:
        """Snapshot files, newest (highest index, then term) first."""
        assert self.dir is not None
        found = []
        for p in self.dir.glob("*.snap"):
            try:
                term, index = (int(x) for x in p.stem.split("-"))
            except ValueError:
                continue
            found.append((index, term, p))
        found.sort(reverse=True)
        return [p for _, _, p in found]

    def latest(self) -> Snapshot | None:
        if self.dir is None:
            return self._memory
        files = self._files()
        return self.read(files[0]) if files else None

    @staticmethod
    def read(path: Path) -> Snapshot:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RaftStoreError(f"cannot read snapshot {path}: {exc}") from exc
        if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + _LEN.size:
            raise RaftStoreError(f"snapshot {path} is corrupt: bad header")
        pos = len(MAGIC)
        (hlen,) = _LEN.unpack(raw[pos : pos + _LEN.size])
        pos += _LEN.size
        try:
            h = msgpack.unpackb(raw[pos : pos + hlen], raw=False)
            data = raw[pos + hlen :]
            servers = tuple(ServerInfo(*s) for s in h["servers"])
            ok = len(data) == h["size"] and hashlib.sha256(data).digest() == h["sha256"]
            meta = SnapshotMeta(int(h["index"]), int(h["term"]), servers)
        except Exception as exc:
            raise RaftStoreError(f"snapshot {path} is corrupt: {exc}") from exc
        if not ok:
            raise RaftStoreError(f"snapshot {path} is corrupt: checksum mismatch")
        return Snapshot(meta, data)
