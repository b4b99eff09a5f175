"""install_release on the local connection with small made-up wheels: the fast path unpacks them
into the release's venv and writes the console scripts; a wheel that does not fit the host sends
the install to pip (here a stand-in pip wheel that records how it was called). Then the program
that does it on the host, provision.hostside.install, its main run directly: where each part of
a wheel goes, which wheels fit which host, and how it refuses what it cannot install."""

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
from provision.hostside import install
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


# -- the host-side program itself (provision.hostside.install), its main run here ------------


def _unpack(tmp_path: Path, tarball: Path) -> tuple[int, Path, Path]:
    rel, art_dir = tmp_path / "rel", tmp_path / "art"
    return install.main([str(rel), str(tarball), str(art_dir)]), rel, art_dir


def _site(rel: Path) -> Path:
    (site,) = rel.glob("lib/python*/site-packages")
    return site


def test_main_unpacks_each_wheel_where_pip_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    art = _artifact(tmp_path)
    rel = tmp_path / "rel"
    (rel / "stale").mkdir(parents=True)  # what a failed earlier install left goes
    code, rel, art_dir = _unpack(tmp_path, art.tarball)
    assert (code, capsys.readouterr().err) == (0, "")
    site = _site(rel)
    assert (site / "demo" / "cli.py").read_text() == _CLI
    assert (site / "other_mod.py").read_text() == "VALUE = 42\n"
    assert not (rel / "stale").exists() and not art_dir.exists()
    assert not (site / "pip").exists()  # pip's own wheel is not installed
    assert (site / "senate-0.1.dist-info" / "INSTALLER").read_text() == "senate-provision\n"
    assert not (site / "other-2.0.dist-info").exists()  # no RECORD there, so no INSTALLER
    # the console script, as pip writes it, and a data script with its #!python made the venv's
    exe = rel / "bin" / "python"
    assert (rel / "bin" / "senate").read_text() == (
        f"#!{exe}\nimport sys\nfrom demo.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    assert (rel / "bin" / "helper").read_text() == f"#!{exe}\nprint('helper ran')\n"
    for script in ("senate", "helper"):
        assert (rel / "bin" / script).stat().st_mode & 0o777 == 0o755


def test_main_entry_points_with_extras_and_attributes(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    _wheel(
        wh,
        "tool-1.0-py3-none-any.whl",
        {
            "tool/__init__.py": "",
            "tool/run.sh": "#!/bin/sh\n",
            "tool-1.0.dist-info/entry_points.txt": (
                "[console_scripts]\nTool-CLI = tool.app : App.main [extra]\n"
                "[gui_scripts]\nignored = tool:x\n"
            ),
        },
    )
    # an executable file keeps its x bits
    with zipfile.ZipFile(wh / "tool-1.0-py3-none-any.whl", "a") as zf:
        info = zipfile.ZipInfo("tool/bin/exe")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\n")
    tarball = tmp_path / "wh.tar"
    with tarfile.open(tarball, "w") as tf:
        tf.add(wh / "tool-1.0-py3-none-any.whl", arcname="tool-1.0-py3-none-any.whl")
    code, rel, _ = _unpack(tmp_path, tarball)
    assert code == 0
    venv_own = ("python", "activate", "Activate")
    scripts = [p.name for p in (rel / "bin").iterdir() if not p.name.startswith(venv_own)]
    assert scripts == ["Tool-CLI"]  # the name as written; gui scripts are not made
    assert (rel / "bin" / "Tool-CLI").read_text().splitlines()[2:] == [
        "from tool.app import App",
        "if __name__ == '__main__':",
        "    sys.exit(App.main())",
    ]
    assert (_site(rel) / "tool" / "bin" / "exe").stat().st_mode & 0o777 == 0o755


def test_main_leaves_wheels_that_do_not_fit_to_pip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    art = _artifact(tmp_path, "cp27-cp27mu-linux_armv6l", pip_inside=True)
    code, rel, art_dir = _unpack(tmp_path, art.tarball)
    assert code == install.NOT_FOR_THIS_HOST == 3
    assert capsys.readouterr().err == (
        "wheels not for this host: senate-0.1-cp27-cp27mu-linux_armv6l.whl\n"
    )
    # every wheel (pip's too) extracted for pip, the venv made, nothing installed in it
    assert sorted(p.name for p in art_dir.iterdir()) == sorted(art.wheels)
    assert (rel / "bin" / "python").exists()
    assert list(_site(rel).iterdir()) == []


def test_main_refuses_paths_out_of_the_venv(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    _wheel(wh, "evil-1.0-py3-none-any.whl", {"evil/__init__.py": "", "../../escaped.py": "x"})
    tarball = tmp_path / "wh.tar"
    with tarfile.open(tarball, "w") as tf:
        tf.add(wh / "evil-1.0-py3-none-any.whl", arcname="evil-1.0-py3-none-any.whl")
    with pytest.raises(SystemExit) as info:
        _unpack(tmp_path, tarball)
    assert info.value.code == "unsafe path ../../escaped.py"
    assert not list(tmp_path.rglob("escaped.py"))


def test_main_names_a_broken_wheel(tmp_path: Path) -> None:
    tarball = tmp_path / "wh.tar"
    with tarfile.open(tarball, "w") as tf:
        m = tarfile.TarInfo("broken-1.0-py3-none-any.whl")
        m.size = 10
        tf.addfile(m, io.BytesIO(b"not a zip!"))
    with pytest.raises(SystemExit) as info:
        _unpack(tmp_path, tarball)
    assert info.value.code == "broken-1.0-py3-none-any.whl: BadZipFile: File is not a zip file"


GLIBC_X86 = install.Tags(3, 11, "x86_64", (2, 31))
MUSL_X86 = install.Tags(3, 11, "x86_64", None)


@pytest.mark.parametrize(
    ("wheel", "on_glibc", "on_musl"),
    [
        ("a-1-py3-none-any.whl", True, True),
        ("a-1-py2.py3-none-any.whl", True, True),
        ("a-1-py311-none-any.whl", True, True),
        ("a-1-cp311-none-any.whl", True, True),
        ("a-1-py312-none-any.whl", False, False),
        ("a-1-py2-none-any.whl", False, False),
        ("a-1-1build-py3-none-any.whl", True, True),  # with a build tag
        ("a-1-cp311-cp311-linux_x86_64.whl", True, True),
        ("a-1-cp311-cp311-linux_aarch64.whl", False, False),
        ("a-1-cp312-cp312-linux_x86_64.whl", False, False),
        ("a-1-cp311-cp311m-linux_x86_64.whl", True, True),
        ("a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True, False),
        ("a-1-cp311-cp311-manylinux_2_34_x86_64.whl", False, False),  # newer glibc than 2.31
        ("a-1-cp311-cp311-manylinux_2_31_x86_64.whl", True, False),
        ("a-1-cp311-cp311-manylinux1_x86_64.whl", True, False),
        ("a-1-cp311-cp311-manylinux2010_x86_64.whl", True, False),
        ("a-1-cp311-cp311-manylinux2014_aarch64.whl", False, False),
        ("a-1-cp311-cp311-musllinux_1_1_x86_64.whl", False, False),
        ("a-1-cp37-abi3-manylinux_2_17_x86_64.whl", True, False),
        ("a-1-cp312-abi3-manylinux_2_17_x86_64.whl", False, False),  # abi3 from a later 3.x
        ("a-1-cp311-cp311-win_amd64.whl", False, False),
        ("a-1-py3-none.whl", False, False),
        ("a-1-extra-build-py3-none-any.whl", False, False),
    ],
)
def test_which_wheels_fit_a_host(wheel: str, on_glibc: bool, on_musl: bool) -> None:
    assert (GLIBC_X86.fits(wheel), MUSL_X86.fits(wheel)) == (on_glibc, on_musl)
