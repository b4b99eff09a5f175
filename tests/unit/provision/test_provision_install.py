"""install_release on the local connection with small made-up wheels: the fast path unpacks them
into the release's venv and writes the console scripts; a wheel that does not fit the host sends
the install to pip (here a stand-in pip wheel that records how it was called)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from provision import remote
from provision.artifact import Artifact
from provision.hosts import LocalHost, StepError
from provision.inventory import load_inventory

_CLI = "import sys\ndef main() -> int:\n    print('demo senate', sys.prefix)\n    return 0\n"

# A stand-in for pip: `python <wheel>/pip install ...` runs pip/__main__.py from the zip.
_FAKE_PIP = (
    "import os, sys\n"
    "with open(os.path.join(sys.prefix, 'pip-args'), 'w') as f:\n"
    "    f.write(' '.join(sys.argv[1:]))\n"
    "p = os.path.join(sys.prefix, 'bin', 'senate')\n"
    "with open(p, 'w') as f:\n"
    "    f.write('#!/bin/sh\\necho pip-installed\\n')\n"
    "os.chmod(p, 0o755)\n"
)


def _wheel(d: Path, filename: str, files: dict[str, str]) -> None:
    with zipfile.ZipFile(d / filename, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)


def _artifact(
    tmp_path: Path, platform_tag: str = "py3-none-any", pip_inside: bool = False
) -> Artifact:
    """pip's wheel beside the wheelhouse tarball (or, as artifacts built before it moved out
    were, inside it)."""
    wh = tmp_path / "wh"
    wh.mkdir()
    _wheel(
        wh,
        f"senate-0.1-{platform_tag}.whl",
        {
            "demo/__init__.py": "",
            "demo/cli.py": _CLI,
            "senate-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: senate\nVersion: 0.1\n",
            "senate-0.1.dist-info/entry_points.txt": "[console_scripts]\nsenate = demo.cli:main\n",
            "senate-0.1.dist-info/RECORD": "",
            "senate-0.1.data/scripts/helper": "#!python\nprint('helper ran')\n",
        },
    )
    _wheel(wh, "other-2.0-py2.py3-none-any.whl", {"other_mod.py": "VALUE = 42\n"})
    beside = tmp_path / "beside"
    beside.mkdir()
    pip_dir = wh if pip_inside else beside
    _wheel(pip_dir, "pip-0-py3-none-any.whl", {"pip/__init__.py": "", "pip/__main__.py": _FAKE_PIP})
    tarball = tmp_path / "wheelhouse.tar"
    with tarfile.open(tarball, "w") as tf:
        for w in sorted(wh.iterdir()):
            tf.add(w, arcname=w.name)
    wheels = tuple(sorted(w.name for w in wh.iterdir()))
    pip = None if pip_inside else beside / "pip-0-py3-none-any.whl"
    return Artifact("0.1", "0.1-abc", tarball, wheels, pip=pip)


@pytest.fixture
def host(tmp_path: Path) -> LocalHost:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        f"defaults: {{connection: local, install_dir: '{tmp_path}/opt/{{name}}',"
        f" data_dir: '{tmp_path}/data/{{name}}'}}\n"
        "datacenters:\n  dc1:\n    servers: [{name: n1, host: 127.0.0.62}]\n"
    )
    return LocalHost(load_inventory(inv).nodes[0])


def _run(exe: Path) -> str:
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=20).stdout


def test_fast_install_unpacks_wheels_and_writes_console_scripts(
    host: LocalHost, tmp_path: Path
) -> None:
    remote.install_release(host, _artifact(tmp_path), timeout=60)
    rel = Path(host.node.install_dir) / "releases" / "0.1-abc"
    assert (rel / ".installed").exists() and not (rel / "pip-args").exists()
    assert _run(rel / "bin" / "senate") == f"demo senate {rel}\n"
    assert _run(rel / "bin" / "helper") == "helper ran\n"
    out = subprocess.run(
        [
            str(rel / "bin" / "python"),
            "-c",
            "import other_mod, importlib.metadata as m;"
            "print(other_mod.VALUE, m.version('senate'), other_mod.__file__)",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=tmp_path,
    ).stdout.split()
    assert out[:2] == ["42", "0.1"] and out[2].startswith(str(rel))
    # A second install of the same release starts from scratch and ends the same.
    (tmp_path / "again").mkdir()
    remote.install_release(host, _artifact(tmp_path / "again"), timeout=60)
    assert _run(rel / "bin" / "senate") == f"demo senate {rel}\n"


@pytest.mark.parametrize("pip_inside", [False, True], ids=["pip-sent-when-needed", "pip-in-tar"])
def test_wheel_for_another_platform_falls_back_to_pip(
    host: LocalHost, tmp_path: Path, pip_inside: bool
) -> None:
    art = _artifact(tmp_path, "cp27-cp27mu-linux_armv6l", pip_inside)
    remote.install_release(host, art, timeout=60)
    rel = Path(host.node.install_dir) / "releases" / "0.1-abc"
    args = (rel / "pip-args").read_text()
    assert args.startswith("install -q --no-index") and "senate==0.1" in args
    assert _run(rel / "bin" / "senate") == "pip-installed\n"
    assert (rel / ".installed").exists()
    assert not list(rel.glob("lib/python*/site-packages/demo"))
    artifacts = Path(host.node.install_dir) / "artifacts"
    assert list(artifacts.iterdir()) == []  # tarball and extracted wheels cleaned up


def test_broken_wheel_fails_the_step_without_pip(host: LocalHost, tmp_path: Path) -> None:
    art = _artifact(tmp_path)
    bad = tmp_path / "bad.tar"
    with tarfile.open(art.tarball) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            f = src.extractfile(m)
            assert f is not None
            if m.name.startswith("other-"):
                m.size = 10
                dst.addfile(m, io.BytesIO(b"not a zip!"))
            else:
                dst.addfile(m, f)
    with pytest.raises(StepError) as info:
        remote.install_release(host, Artifact("0.1", "0.1-abc", bad, art.wheels), timeout=60)
    assert info.value.step == "install" and "BadZipFile" in info.value.stderr_tail
    rel = Path(host.node.install_dir) / "releases" / "0.1-abc"
    assert not (rel / ".installed").exists() and not (rel / "pip-args").exists()


# -- bytecode shipped with the artifact ------------------------------------------------------


def _agent_wheelhouse(d: Path) -> Path:
    """A wheelhouse whose `agent` package imports `other_mod`; `unused_mod` is never imported."""
    d.mkdir()
    _wheel(
        d,
        "senate-0.1-py3-none-any.whl",
        {
            "agent/__init__.py": "import other_mod\n",
            "agent/sub.py": "VALUE = 7\n",
            "demo/__init__.py": "",
            "demo/cli.py": _CLI,
            "senate-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: senate\nVersion: 0.1\n",
            "senate-0.1.dist-info/entry_points.txt": "[console_scripts]\nsenate = demo.cli:main\n",
            "senate-0.1.dist-info/RECORD": "",
        },
    )
    _wheel(d, "other-2.0-py3-none-any.whl", {"other_mod.py": "VALUE = 42\n"})
    _wheel(d, "unused-1.0-py3-none-any.whl", {"unused_mod.py": "VALUE = 0\n"})
    _wheel(d, "pip-0-py3-none-any.whl", {"pip/__init__.py": "", "pip/__main__.py": _FAKE_PIP})
    return d


def _tar(tmp_path: Path, wheelhouse: Path, extra: list[Path]) -> Artifact:
    tarball = tmp_path / "wheelhouse.tar"
    with tarfile.open(tarball, "w") as tf:
        for f in sorted(wheelhouse.iterdir()) + extra:
            tf.add(f, arcname=f.name)
    wheels = tuple(sorted(w.name for w in wheelhouse.iterdir()))
    return Artifact("0.1", "0.1-abc", tarball, wheels, extra[0].name if extra else None)


def test_bytecode_of_what_the_agent_imports_is_compiled_once_and_unpacked_on_the_host(
    host: LocalHost, tmp_path: Path
) -> None:
    from provision.artifact import build_pycache, pycache_name

    wheelhouse = _agent_wheelhouse(tmp_path / "wh")
    bundle = build_pycache(wheelhouse, tmp_path / "site")
    assert bundle is not None and bundle.name == pycache_name()
    with tarfile.open(bundle) as tf:
        names = set(tf.getnames())
    tag = sys.implementation.cache_tag
    assert f"agent/__pycache__/sub.{tag}.pyc" in names
    assert f"__pycache__/other_mod.{tag}.pyc" in names
    assert not [n for n in names if "unused_mod" in n or "demo" in n]

    remote.install_release(host, _tar(tmp_path, wheelhouse, [bundle]), timeout=60)
    rel = Path(host.node.install_dir) / "releases" / "0.1-abc"
    (site,) = rel.glob("lib/python*/site-packages")
    pyc = site / "agent" / "__pycache__" / f"sub.{tag}.pyc"
    # hash-based and checked: valid whatever the mtimes, recompiled if a source is edited
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b11
    verbose = subprocess.run(
        [str(rel / "bin" / "python"), "-v", "-c", "import agent.sub"],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=tmp_path,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    ).stderr
    assert f"code object from '{pyc}'" in verbose


def test_bytecode_for_another_python_is_ignored(host: LocalHost, tmp_path: Path) -> None:
    from provision.artifact import build_pycache

    wheelhouse = _agent_wheelhouse(tmp_path / "wh")
    bundle = build_pycache(wheelhouse, tmp_path / "site")
    assert bundle is not None
    other = bundle.with_name("pycache-cpython-399-0d0d0a0a.tar.gz")
    bundle.rename(other)
    remote.install_release(host, _tar(tmp_path, wheelhouse, [other]), timeout=60)
    rel = Path(host.node.install_dir) / "releases" / "0.1-abc"
    (site,) = rel.glob("lib/python*/site-packages")
    assert (site / "agent" / "sub.py").exists()
    assert not list(site.glob("agent/__pycache__/*.pyc"))
