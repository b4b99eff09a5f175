"""Fixtures for provision's end-to-end tests: one set of netns SSH hosts and one artifact for
the whole session, and helpers to write inventories for them."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_hosts import HostLab, unavailable_reason

from provision.artifact import Artifact, build_artifact
from provision.render import project_root

LAB_HOSTS = 7  # dc1: 3 servers + 2 clients; dc2: 1 server; one to replace a server with


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostLab]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    hosts = HostLab(LAB_HOSTS, tmp_path_factory.mktemp("lab")).start()
    try:
        yield hosts
    finally:
        hosts.close()


@pytest.fixture(scope="session")
def artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared with `provision` runs outside the tests: the default cache (built once per tree).
    from provision.artifact import cache_dir

    return cache_dir()


@pytest.fixture(scope="session")
def base_artifact(artifact_cache: Path) -> Artifact:
    return build_artifact(None, artifact_cache)


@pytest.fixture(scope="session")
def newer_artifact(tmp_path_factory: pytest.TempPathFactory, artifact_cache: Path) -> Artifact:
    """A newer build of this tree: the same code with the version bumped, made by the test."""
    src = tmp_path_factory.mktemp("newer-src")
    root = project_root()
    for name in ("agent", "provision"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "README.md", src / "README.md")
    pyproject = (root / "pyproject.toml").read_text()
    old = next(ln for ln in pyproject.splitlines() if ln.startswith("version = "))
    major, minor, patch = old.split('"')[1].split(".")[:3]
    new_version = f"{major}.{minor}.{int(patch) + 1}"
    (src / "pyproject.toml").write_text(pyproject.replace(old, f'version = "{new_version}"', 1))
    art = build_artifact(src, artifact_cache)
    assert art.version == new_version
    return art
