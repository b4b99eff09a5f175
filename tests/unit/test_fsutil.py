"""write_atomic: the agent's one durable file replacement."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import fsutil
from agent.fsutil import write_atomic


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_bytes_and_text(tmp_path: Path) -> None:
    write_atomic(tmp_path / "b", b"\x00\xffbytes")
    write_atomic(tmp_path / "t", "näme\n")
    assert (tmp_path / "b").read_bytes() == b"\x00\xffbytes"
    assert (tmp_path / "t").read_bytes() == "näme\n".encode()
    write_atomic(tmp_path / "empty", b"")
    assert (tmp_path / "empty").read_bytes() == b""
    write_atomic(tmp_path / "chunks", (b"head|", memoryview(b"body"), b"", bytearray(b"|tail")))
    assert (tmp_path / "chunks").read_bytes() == b"head|body|tail"


def test_mode_defaults_to_owner_only_and_the_umask_applies(tmp_path: Path, umask_022: None) -> None:
    write_atomic(tmp_path / "private", "x")
    assert _mode(tmp_path / "private") == 0o600
    write_atomic(tmp_path / "shared", "x", mode=0o666)
    assert _mode(tmp_path / "shared") == 0o644  # as open() creates it under umask 022


def test_replaces_an_existing_file_with_the_new_mode(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "state"
    target.write_text("old contents, longer than the new")
    target.chmod(0o644)
    write_atomic(target, "new", mode=0o600)
    assert target.read_text() == "new"
    assert _mode(target) == 0o600
    assert os.listdir(tmp_path) == ["state"]


def test_leaves_no_temporary_file(tmp_path: Path) -> None:
    for i in range(3):
        write_atomic(tmp_path / "f", f"v{i}")
    assert os.listdir(tmp_path) == ["f"]
    assert (tmp_path / "f").read_text() == "v2"


def test_a_stale_temporary_file_is_neither_reused_nor_in_the_way(tmp_path: Path) -> None:
    stale = tmp_path / ".f.0000.tmp"  # what a crash mid-write leaves
    stale.write_text("half")
    write_atomic(tmp_path / "f", "whole")
    assert (tmp_path / "f").read_text() == "whole"
    assert sorted(os.listdir(tmp_path)) == [".f.0000.tmp", "f"]
    assert list(tmp_path.glob("*" + fsutil.TMP_SUFFIX)) == [stale]  # named so it can be reaped


def test_fsyncs_the_file_then_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "f", "x")
    assert len(synced) == 2
    assert Path(synced[0]).parent == tmp_path and synced[0].endswith(".tmp")  # before rename
    assert synced[1] == str(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "f", "x")
    assert os.listdir(tmp_path) == []
