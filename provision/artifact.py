"""The artifact pushed to hosts: this project's wheel plus a wheelhouse of all its dependencies.

Built once per source tree with pip (which may use a package index or local wheels here); hosts
then install from it with `--no-index`, so they need no index and no network beyond SSH. The
release name is `<version>-<source digest>`, so a changed tree is a new release even when the
version in pyproject.toml did not move.

The wheelhouse also carries the bytecode of what the agent imports, compiled once here
(`pycache-<cache tag>-<magic>.tar.gz`, hash-based pycs, so unpacking mtimes do not matter): a
host whose Python has the same cache tag and magic number unpacks it beside the sources instead
of every node compiling the same modules on its first start; any other host ignores it.

Shared libraries in the wheels are built with debug information that nothing on a node reads
(uvloop's extension is 13.6 MB with it, 1.9 MB without): where binutils' `strip` is on this
machine, the build strips it (`--strip-debug`, the symbol table stays) and rewrites the wheel's
RECORD to match, so every host receives, decompresses and writes 40 % fewer bytes. Without
`strip` the wheels ship as pip made them.
"""

from __future__ import annotations

import base64
import compileall
import csv
import hashlib
import importlib.util
import io
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from provision.render import project_root

# What goes into the wheel: a change to any of these makes a new release.
_SOURCE_GLOBS = ("pyproject.toml", "README.md", "agent/**/*.py", "provision/**/*.py")
_RELEASE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")


class ArtifactError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Artifact:
    version: str  # the distribution version, from pyproject.toml
    release: str  # <version>-<digest>: the directory name under <install_dir>/releases
    tarball: Path  # wheelhouse.tar: every wheel the agent needs, and the bytecode bundle
    wheels: tuple[str, ...]  # the wheels in the tarball
    pycache: str | None = None  # the bytecode bundle in the tarball, when it has one
    # pip's wheel, beside the tarball: sent to a host only when a wheel does not fit it (venvs
    # are made without pip). None in artifacts built before it moved out of the tarball.
    pip: Path | None = None

    @property
    def pip_wheel(self) -> str:
        if self.pip is not None:
            return self.pip.name
        for w in self.wheels:
            if w.startswith("pip-"):
                return w
        raise ArtifactError("artifact has no pip wheel")


def cache_dir() -> Path:
    base = os.environ.get("SENATE_PROVISION_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "senate-provision"
    )
    return Path(base)


def source_version(source: Path) -> str:
    try:
        data = tomllib.loads((source / "pyproject.toml").read_text())
        return str(data["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ArtifactError(
            f"{source}/pyproject.toml: cannot read project.version: {exc}"
        ) from None


def source_digest(source: Path) -> str:
    h = hashlib.sha256()
    files: set[Path] = set()
    for pattern in _SOURCE_GLOBS:
        files.update(p for p in source.glob(pattern) if "__pycache__" not in p.parts)
    for p in sorted(files):
        h.update(str(p.relative_to(source)).encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:10]


def release_name(source: Path) -> str:
    return f"{source_version(source)}-{source_digest(source)}"


def load_artifact(release: str, cache: Path | None = None) -> Artifact:
    """An artifact built earlier (`provision upgrade --version RELEASE`)."""
    if not _RELEASE_RE.match(release):
        raise ArtifactError(f"invalid release name {release!r}")
    root = (cache or cache_dir()) / release
    tarball = root / "wheelhouse.tar"
    if not tarball.exists():
        known = list_artifacts(cache)
        hint = f"; built: {', '.join(known)}" if known else ""
        raise ArtifactError(f"no artifact for release {release} in {root.parent}{hint}")
    with tarfile.open(tarball) as tf:
        names = [Path(m.name).name for m in tf.getmembers() if m.isfile()]
    wheels = tuple(sorted(n for n in names if n.endswith(".whl")))
    pycache = next((n for n in sorted(names) if n.startswith("pycache-")), None)
    pip = next(iter(sorted(root.glob("pip-*.whl"))), None)
    return Artifact(release.rsplit("-", 1)[0], release, tarball, wheels, pycache, pip)


def list_artifacts(cache: Path | None = None) -> list[str]:
    root = cache or cache_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "wheelhouse.tar").exists())


def resolve_release(version: str, cache: Path | None = None) -> Artifact:
    """`--version` accepts a full release name or a bare version with exactly one build."""
    known = list_artifacts(cache)
    if version in known:
        return load_artifact(version, cache)
    matches = [r for r in known if r.rsplit("-", 1)[0] == version]
    if len(matches) == 1:
        return load_artifact(matches[0], cache)
    if len(matches) > 1:
        raise ArtifactError(f"version {version} has several builds: {', '.join(matches)}")
    hint = f"; built: {', '.join(known)}" if known else ""
    raise ArtifactError(f"no artifact for version {version}{hint}")


def build_artifact(
    source: Path | None = None, cache: Path | None = None, timeout: float = 600.0
) -> Artifact:
    """Build (or reuse) the wheelhouse for `source`, the project tree (default: this one)."""
    src = (source or project_root()).resolve()
    release = release_name(src)
    root = (cache or cache_dir()) / release
    if (root / "wheelhouse.tar").exists():
        return load_artifact(release, cache)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-", dir=root.parent) as tmp:
        wheelhouse = Path(tmp) / "wheelhouse"
        # Build outside the tree so concurrent builds and the source stay clean.
        build_src = Path(tmp) / "src"
        shutil.copytree(
            src,
            build_src,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "build", "*.egg-info", "__pycache__", "tests", "bench", ".*"
            ),
        )
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        for cmd in (
            [*pip, "wheel", "--wheel-dir", str(wheelhouse), str(build_src)],
            [*pip, "download", "--no-deps", "--dest", str(wheelhouse), "pip"],
        ):
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise ArtifactError(
                    f"artifact build timed out after {timeout:.0f}s: {' '.join(cmd)}"
                ) from None
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
                raise ArtifactError(
                    f"artifact build failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}"
                )
        strip_wheels(wheelhouse, Path(tmp) / "strip", timeout)
        bundle = build_pycache(wheelhouse, Path(tmp) / "site", timeout)
        staging = Path(tmp) / "out"
        staging.mkdir()
        for pip_whl in list(wheelhouse.glob("pip-*.whl")):  # kept beside: sent only when needed
            pip_whl.rename(staging / pip_whl.name)
        with tarfile.open(staging / "wheelhouse.tar", "w") as tf:
            for whl in sorted(wheelhouse.glob("*.whl")):
                tf.add(whl, arcname=whl.name)
            if bundle is not None:
                tf.add(bundle, arcname=bundle.name)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    return load_artifact(release, cache)


def strip_wheels(wheelhouse: Path, work: Path, timeout: float = 300.0) -> int:
    """Strip the debug information from the ELF shared objects of every wheel in `wheelhouse`,
    rewriting the wheels in place (same members, order, modes and compression; RECORD's hash
    and size of each changed file updated). Returns the bytes saved; 0 when `strip` is missing.
    A signed wheel (RECORD.jws / RECORD.p7s) is left alone."""
    strip = shutil.which("strip")
    if strip is None:
        return 0
    saved = 0
    for whl in sorted(wheelhouse.glob("*.whl")):
        with zipfile.ZipFile(whl) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            if any(n.endswith((".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")) for n in names):
                continue
            elves = [i for i in infos if not i.is_dir() and ".so" in i.filename and _is_elf(zf, i)]
            if not elves:
                continue
            new = _strip_all(zf, elves, strip, work / whl.stem, timeout)
            if not new:
                continue
            record = next(
                (n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD")), None
            )
            tmp = whl.with_suffix(".tmp")
            with zipfile.ZipFile(tmp, "w") as out:
                for info in infos:
                    if info.filename in new:
                        data = new[info.filename]
                    elif info.filename == record:
                        data = _record(zf.read(info), new)
                    else:
                        data = zf.read(info)
                    out.writestr(info, data, compress_type=info.compress_type)
        saved += whl.stat().st_size - tmp.stat().st_size
        tmp.replace(whl)
    shutil.rmtree(work, ignore_errors=True)
    return saved


def _is_elf(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    with zf.open(info) as f:
        return f.read(4) == b"\x7fELF"


def _strip_all(
    zf: zipfile.ZipFile, elves: list[zipfile.ZipInfo], strip: str, work: Path, timeout: float
) -> dict[str, bytes]:
    """The stripped bytes of each member of `elves` that `strip` made smaller."""
    work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, info in enumerate(elves):
        paths[info.filename] = work / f"{i}.so"
        paths[info.filename].write_bytes(zf.read(info))
    try:
        proc = subprocess.run(
            [strip, "--strip-debug", *map(str, paths.values())],
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {}
    if proc.returncode != 0:  # e.g. an object for another architecture: ship it as it is
        return {}
    out = {}
    for info in elves:
        data = paths[info.filename].read_bytes()
        if len(data) < info.file_size:
            out[info.filename] = data
    return out


def _record(text: bytes, new: dict[str, bytes]) -> bytes:
    """RECORD (a CSV of path, hash, size) with the hash and size of each file in `new`
    replaced."""
    rows = list(csv.reader(io.StringIO(text.decode())))
    for row in rows:
        if row and row[0] in new:
            data = new[row[0]]
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            row[1:] = [f"sha256={digest.decode()}", str(len(data))]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def pycache_name() -> str:
    """The bundle name a host with this Python would look for (see provision.hostside.install)."""
    return f"pycache-{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}.tar.gz"


# Imports every module of the agent from the unpacked wheels (argv[1]) and prints the top-level
# names of what that loaded from there: the packages worth compiling ahead (others, like the
# provision tool's own dependencies, never run on a node and compile on first use if they do).
_IMPORTS = r"""
import importlib, json, os, pkgutil, sys
site = os.path.realpath(sys.argv[1])
sys.path.insert(0, site)
import agent
failed = []
for m in pkgutil.walk_packages(agent.__path__, "agent."):
    try:
        importlib.import_module(m.name)
    except Exception as exc:
        failed.append(f"{m.name}: {exc}")
tops = set()
for name, mod in list(sys.modules.items()):
    f = getattr(mod, "__file__", None) or ""
    if f and os.path.realpath(f).startswith(site + os.sep):
        tops.add(name.split(".")[0])
print(json.dumps({"top": sorted(tops), "failed": failed}))
"""


def _unpack_wheels(wheelhouse: Path, site: Path) -> None:
    """Unpack the wheels' library files as the host install does (enough to import them)."""
    for whl in sorted(wheelhouse.glob("*.whl")):
        if whl.name.startswith("pip-"):
            continue
        with zipfile.ZipFile(whl) as zf:
            for info in zf.infolist():
                parts = info.filename.split("/")
                if ".." in parts or info.filename.startswith("/") or info.is_dir():
                    continue
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                target = site.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
                if (info.external_attr >> 16) & 0o111:
                    target.chmod(0o755)


def build_pycache(wheelhouse: Path, site: Path, timeout: float = 300.0) -> Path | None:
    """Compile what the agent imports, from the wheels in `wheelhouse`, into a bundle of
    `__pycache__` files (paths relative to site-packages). None when the agent cannot be
    imported here (e.g. the wheels were not built for this Python): hosts then compile their
    own, as before."""
    _unpack_wheels(wheelhouse, site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-B", "-c", _IMPORTS, str(site)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=site,
            env=env,
        )
        tops = json.loads(proc.stdout)["top"] if proc.returncode == 0 else []
    except (subprocess.TimeoutExpired, ValueError, KeyError):
        tops = []
    if "agent" not in tops:
        return None
    for top in tops:
        target = site / top
        if target.is_dir():
            compileall.compile_dir(
                target,
                quiet=2,
                workers=1,
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
            )
        elif (site / f"{top}.py").is_file():
            compileall.compile_file(
                site / f"{top}.py",
                quiet=2,
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
            )
    bundle = site.parent / pycache_name()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tf:
        for pyc in sorted(site.rglob("__pycache__/*.pyc")):
            tf.add(pyc, arcname=str(pyc.relative_to(site)))
    bundle.write_bytes(buf.getvalue())
    return bundle
