"""Snapshot archives as Consul writes them: a gzipped tar of meta.json, state.bin, SHA256SUMS.

Pure functions (no aiohttp), shared by `/v1/snapshot` and `senate snapshot inspect`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass
from typing import Any

SNAPSHOT_VERSION = 1


class ArchiveError(Exception):
    """A snapshot archive that is not one, is truncated, or fails its checksums."""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    id: str
    size: int
    index: int
    term: int
    version: int

    def to_json(self) -> dict[str, Any]:
        return {
            "Version": self.version,
            "ID": self.id,
            "Index": self.index,
            "Term": self.term,
            "Size": self.size,
        }


def build_archive(state: bytes, index: int, term: int, now_ms: int | None = None) -> bytes:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    meta = SnapshotMeta(f"{term}-{index}-{ms}", len(state), index, term, SNAPSHOT_VERSION)
    meta_bytes = json.dumps(meta.to_json()).encode()
    sums = (
        f"{hashlib.sha256(meta_bytes).hexdigest()}  meta.json\n"
        f"{hashlib.sha256(state).hexdigest()}  state.bin\n"
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("meta.json", meta_bytes), ("state.bin", state), ("SHA256SUMS", sums)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = ms // 1000
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), compresslevel=1)


def read_archive(data: bytes) -> tuple[SnapshotMeta, bytes]:
    """Verify an archive and return its metadata and the state it carries."""
    try:
        raw = gzip.decompress(data)
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member)
                if f is not None:
                    files[member.name] = f.read()
    except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"failed to read snapshot archive: {exc}") from None
    for name in ("meta.json", "state.bin", "SHA256SUMS"):
        if name not in files:
            raise ArchiveError(f"snapshot archive is missing {name}")
    sums: dict[str, str] = {}
    for line in files["SHA256SUMS"].decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1]] = parts[0]
    for name in ("meta.json", "state.bin"):
        if sums.get(name) != hashlib.sha256(files[name]).hexdigest():
            raise ArchiveError(f"checksum mismatch for {name} in snapshot archive")
    try:
        meta_obj = json.loads(files["meta.json"])
        meta = SnapshotMeta(
            id=str(meta_obj["ID"]),
            size=int(meta_obj["Size"]),
            index=int(meta_obj["Index"]),
            term=int(meta_obj["Term"]),
            version=int(meta_obj["Version"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"bad meta.json in snapshot archive: {exc}") from None
    if meta.size != len(files["state.bin"]):
        raise ArchiveError("state.bin size does not match meta.json in snapshot archive")
    return meta, files["state.bin"]
