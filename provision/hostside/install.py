"""The fast install, run by the host's python (as the probe resolved it, so no shim or wrapper
starts in between) before the release exists.

Makes the venv RELEASE_DIR and installs every wheel of the wheelhouse tarball (except pip's
own) into it by unpacking it, as pip would, without pip's resolver and startup; writes the
console scripts; then unpacks the bytecode bundle compiled on the controller, when this Python
is the one it was compiled for. Exits NOT_FOR_THIS_HOST with the venv made and the wheels
extracted to WHEELS_DIR, nothing else written, when a wheel's tags do not fit this host (the
caller then installs with pip from there).

    python3 -I -c <this file> RELEASE_DIR TARBALL WHEELS_DIR

Standard library only.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import platform
import re
import shutil
import sys
import sysconfig
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from typing import IO

NOT_FOR_THIS_HOST = 3

_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


@dataclass(frozen=True)
class Tags:
    """What a wheel's tags are checked against: this Python and this machine."""

    major: int
    minor: int
    machine: str
    glibc: tuple[int, ...] | None

    @classmethod
    def here(cls) -> Tags:
        libc, libc_ver = platform.libc_ver()
        glibc = (
            tuple(int(x) for x in libc_ver.split(".")[:2]) if libc == "glibc" and libc_ver else None
        )
        return cls(sys.version_info[0], sys.version_info[1], platform.machine(), glibc)

    def platform_ok(self, p: str) -> bool:
        if p == "any":
            return True
        if p == f"linux_{self.machine}":
            return True
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(.+)", p)
        if m:
            return (
                m.group(3) == self.machine
                and self.glibc is not None
                and self.glibc >= (int(m.group(1)), int(m.group(2)))
            )
        for name, need in _LEGACY_MANYLINUX.items():
            if p == f"{name}_{self.machine}":
                return self.glibc is not None and self.glibc >= need
        return False

    def python_ok(self, py: str, abi: str) -> bool:
        maj, mnr = self.major, self.minor
        if abi == "none":
            return py in ("py3", f"py3{mnr}", f"cp3{mnr}") or py == f"py{maj}"
        if abi == "abi3":
            m = re.fullmatch(r"cp3(\d+)", py)
            return m is not None and int(m.group(1)) <= mnr
        return py == f"cp{maj}{mnr}" and abi in (f"cp{maj}{mnr}", f"cp{maj}{mnr}m")

    def fits(self, wheel: str) -> bool:
        """The wheel file name's tags allow installing it here."""
        parts = wheel[:-4].split("-")
        if len(parts) not in (5, 6):
            return False
        pys, abis, plats = (t.split(".") for t in parts[-3:])
        return any(self.python_ok(p, a) for p in pys for a in abis) and any(
            self.platform_ok(p) for p in plats
        )


def safe(name: str) -> list[str]:
    """The parts of the archive member path `name`; exits when it would leave the target."""
    parts = name.split("/")
    if ".." in parts or name.startswith("/"):
        raise SystemExit(f"unsafe path {name}")
    return parts


def bundle_name() -> str:
    """The bytecode bundle this Python would use (see artifact.pycache_name)."""
    return f"pycache-{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}.tar.gz"


class _EntryPoints(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # script names keep their case


def _member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(m)
    assert f is not None, m.name  # only regular files are read
    return f


@dataclass(frozen=True)
class Venv:
    """Where the parts of a wheel go in the venv `root`."""

    root: str
    site: str
    bindir: str
    exe: str
    dest: dict[str, str]

    @classmethod
    def create(cls, root: str) -> Venv:
        venv.EnvBuilder(symlinks=os.name != "nt", with_pip=False).create(root)
        scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "posix_prefix"
        base = {"base": root, "platbase": root, "installed_base": root, "installed_platbase": root}
        paths = sysconfig.get_paths(scheme, vars=base)
        bindir = os.path.join(root, "bin")
        dest = {
            "purelib": paths["purelib"],
            "platlib": paths["platlib"],
            "scripts": bindir,
            "headers": os.path.join(root, "include"),
            "data": root,
        }
        return cls(root, paths["purelib"], bindir, os.path.join(bindir, "python"), dest)


def unpack_wheel(zf: zipfile.ZipFile, env: Venv, scripts: dict[str, str]) -> None:
    """Every file of the wheel to where it goes in `env`, as pip would; its console scripts
    are added to `scripts` (name -> module:function)."""
    for info in zf.infolist():
        parts = safe(info.filename)
        data_dir = parts[0].endswith(".data")
        if data_dir and len(parts) > 2:
            target = os.path.join(env.dest[parts[1]], *parts[2:])
        else:
            target = os.path.join(env.site, *parts)
        if info.is_dir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        data = zf.read(info)
        is_script = data_dir and parts[1] == "scripts"
        if is_script and data.startswith(b"#!python"):
            data = b"#!" + env.exe.encode() + data[len(b"#!python") :]
        with open(target, "wb") as f:
            f.write(data)
        mode = (info.external_attr >> 16) & 0o777
        if mode & 0o111 or is_script:
            os.chmod(target, 0o755)
        metadata = parts[0].endswith(".dist-info") and len(parts) == 2
        if metadata and parts[1] == "entry_points.txt":
            cp = _EntryPoints(delimiters=("=",))
            cp.read_string(data.decode())
            if cp.has_section("console_scripts"):
                scripts.update(cp.items("console_scripts"))
        if metadata and parts[1] == "RECORD":
            with open(os.path.join(os.path.dirname(target), "INSTALLER"), "w") as f:
                f.write("senate-provision\n")


def unpack_bytecode(bundle: IO[bytes], site: str) -> None:
    """The __pycache__/*.pyc files of the bundle into `site` (anything else in it is skipped)."""
    with tarfile.open(fileobj=bundle, mode="r:gz") as pyc:
        for m in pyc:
            parts = safe(m.name)
            if not (
                m.isfile()
                and len(parts) > 1
                and parts[-2] == "__pycache__"
                and parts[-1].endswith(".pyc")
            ):
                continue
            target = os.path.join(site, *parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                shutil.copyfileobj(_member(pyc, m), f)


def write_console_script(env: Venv, name: str, ref: str) -> None:
    """bin/<name> of `env`, calling the entry point `ref` (module:function) as pip's do."""
    mod, _, attr = ref.partition(":")
    attr = attr.split("[")[0].strip()
    head = attr.split(".")[0]
    path = os.path.join(env.bindir, name)
    with open(path, "w") as f:
        f.write(
            f"#!{env.exe}\nimport sys\nfrom {mod.strip()} import {head}\n"
            f"if __name__ == '__main__':\n    sys.exit({attr}())\n"
        )
    os.chmod(path, 0o755)


def main(argv: list[str]) -> int:
    rel, tarball, art_dir = argv[0], argv[1], argv[2]
    tags = Tags.here()
    shutil.rmtree(rel, ignore_errors=True)
    shutil.rmtree(art_dir, ignore_errors=True)
    env = Venv.create(rel)
    bundle = bundle_name()
    scripts: dict[str, str] = {}
    with tarfile.open(tarball) as tf:
        members = {os.path.basename(m.name): m for m in tf.getmembers() if m.isfile()}
        wheels = sorted(w for w in members if w.endswith(".whl") and not w.startswith("pip-"))
        bad = [w for w in wheels if not tags.fits(w)]
        if bad:
            os.makedirs(art_dir)
            for name, m in members.items():
                if name.endswith(".whl"):
                    with open(os.path.join(art_dir, name), "wb") as f:
                        shutil.copyfileobj(_member(tf, m), f)
            print("wheels not for this host: " + ", ".join(bad), file=sys.stderr)
            return NOT_FOR_THIS_HOST
        for w in wheels:
            try:
                zf = zipfile.ZipFile(_member(tf, members[w]))
            except zipfile.BadZipFile as exc:
                raise SystemExit(f"{w}: BadZipFile: {exc}") from None
            with zf:
                unpack_wheel(zf, env, scripts)
        if bundle in members:
            unpack_bytecode(_member(tf, members[bundle]), env.site)
    for name, ref in scripts.items():
        write_console_script(env, name, ref)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
