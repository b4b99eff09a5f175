"""The artifact build strips debug information from the wheels' shared objects: a real shared
object built here with `gcc -g`, packed into a wheel with a correct RECORD, comes out smaller,
still loads and works, and the wheel's RECORD matches every file again; other members, their
order and modes are untouched; signed wheels and machines without `strip` are left alone."""

from __future__ import annotations

import base64
import csv
import ctypes
import hashlib
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from provision import artifact
from provision.artifact import strip_wheels

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("strip") is None,
    reason="needs gcc and binutils' strip (scripts/test.sh installs them)",
)

_C = "int answer(int x) { int table[4] = {1, 2, 3, 4}; return 40 + table[x % 2]; }\n"


def _shared_object(d: Path) -> bytes:
    src = d / "ext.c"
    src.write_text(_C)
    out = d / "ext.so"
    subprocess.run(
        ["gcc", "-g", "-O0", "-shared", "-fPIC", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.read_bytes()


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel(path: Path, files: dict[str, bytes], signed: bool = False) -> None:
    """A wheel whose RECORD lists every file with its hash and size."""
    dist = "demo-1.0.dist-info"
    files = {**files, f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"}
    if signed:
        files[f"{dist}/RECORD.jws"] = b"{}"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for name, data in files.items():
        w.writerow([name, _hash(data), len(data)])
    w.writerow([f"{dist}/RECORD", "", ""])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 5))
            info.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(f"{dist}/RECORD", buf.getvalue())


def _members(path: Path) -> dict[str, tuple[bytes, int, tuple[int, ...]]]:
    with zipfile.ZipFile(path) as zf:
        return {
            i.filename: (zf.read(i), i.external_attr, tuple(i.date_time)) for i in zf.infolist()
        }


def _record_matches(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        record = next(n for n in zf.namelist() if n.endswith(".dist-info/RECORD"))
        rows = list(csv.reader(io.StringIO(zf.read(record).decode())))
        listed = {r[0] for r in rows}
        assert listed == set(zf.namelist())
        for name, digest, size in rows:
            if name == record:
                continue
            data = zf.read(name)
            assert (digest, size) == (_hash(data), str(len(data))), name


def test_debug_info_is_stripped_and_the_wheel_stays_valid(tmp_path: Path) -> None:
    so = _shared_object(tmp_path)
    wh = tmp_path / "wh"
    wh.mkdir()
    whl = wh / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    files = {
        "demo/__init__.py": b"",
        "demo/_ext.so": so,
        "demo/not_elf.so.txt": b"just text that happens to be named .so",
    }
    _wheel(whl, files)
    pure = wh / "plain-1.0-py3-none-any.whl"
    _wheel(pure, {"plain.py": b"X = 1\n"})
    before, pure_bytes, size = _members(whl), pure.read_bytes(), whl.stat().st_size

    saved = strip_wheels(wh, tmp_path / "work")

    after = _members(whl)
    assert saved > 0 and saved == size - whl.stat().st_size
    assert list(after) == list(before)  # same members, same order
    new_so = after["demo/_ext.so"][0]
    assert new_so.startswith(b"\x7fELF") and len(new_so) < len(so)
    for name in before:
        assert after[name][1:] == before[name][1:], name  # modes and dates kept
        if name not in ("demo/_ext.so", "demo-1.0.dist-info/RECORD"):
            assert after[name][0] == before[name][0], name
    _record_matches(whl)
    assert pure.read_bytes() == pure_bytes  # nothing to strip: not rewritten
    assert not (tmp_path / "work").exists()
    # The stripped object still loads and works.
    (tmp_path / "stripped.so").write_bytes(new_so)
    lib = ctypes.CDLL(str(tmp_path / "stripped.so"))
    assert lib.answer(3) == 42
    # Stripping again finds nothing to save.
    assert strip_wheels(wh, tmp_path / "work") == 0


def test_signed_wheels_and_machines_without_strip_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    so = _shared_object(tmp_path)
    wh = tmp_path / "wh"
    wh.mkdir()
    signed = wh / "signed-1.0-cp311-cp311-linux_x86_64.whl"
    _wheel(signed, {"signed/_ext.so": so}, signed=True)
    plain = wh / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    _wheel(plain, {"demo/_ext.so": so})
    signed_bytes, plain_bytes = signed.read_bytes(), plain.read_bytes()

    monkeypatch.setattr(artifact.shutil, "which", lambda name: None)
    assert strip_wheels(wh, tmp_path / "work") == 0
    assert plain.read_bytes() == plain_bytes
    monkeypatch.undo()

    assert strip_wheels(wh, tmp_path / "work") > 0
    assert signed.read_bytes() == signed_bytes
    assert plain.read_bytes() != plain_bytes
    _record_matches(plain)
