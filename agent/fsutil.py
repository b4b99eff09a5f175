"""Durable file writes: the one way the agent replaces a file on disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

#: Every temporary file `write_atomic` creates ends so; a crash can leave one behind, and
#: readers of a directory skip (or at start-up delete) names ending in it.
TMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes | str | Sequence[bytes], mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a crash at any instant leaves either the old file
    or the new one, never a mix: write a temporary file beside it, fsync it, rename it over
    `path`, then fsync the directory so the rename itself is on disk. `data` may be a
    sequence of byte chunks, written one after another without joining them first.

    `mode` is the new file's permission bits as open(2) takes them (the umask applies):
    0o600 for the agent's own state, 0o666 for a file created as a plain `open()` would.
    The temporary file is `.<name>.<random>.tmp` in the same directory, created exclusively
    (so concurrent writers never share one and a stale one never lends its mode), and
    removed if the write fails. The directory must exist."""
    path = Path(path)
    if isinstance(data, str):
        chunks: Sequence[bytes | bytearray | memoryview] = (data.encode(),)
    elif isinstance(data, bytes | bytearray | memoryview):
        chunks = (data,)
    else:
        chunks = data
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, flags, mode)
            break
        except FileExistsError:  # 1 in 2**32: draw another name
            continue
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
