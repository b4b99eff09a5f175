"""agent.version is the one version: the CLI, the package and pyproject.toml agree with it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import agent
from agent import config, version
from agent.cli import version_text


def test_pyproject_repeats_the_one_version() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == version.VERSION == agent.__version__


def test_version_output_and_config_use_the_one_protocol_range() -> None:
    assert version_text() == (
        f"Senate v{version.VERSION}\n"
        f"Protocol {version.PROTOCOL_DEFAULT} spoken by default, understands "
        f"{version.PROTOCOL_MIN} to {version.PROTOCOL_MAX} (agent will automatically use "
        f"protocol >{version.PROTOCOL_DEFAULT} when speaking to compatible agents)\n"
    )
    for ok in (version.PROTOCOL_MIN, version.PROTOCOL_MAX):
        assert config.load(["-data-dir=/x", f"-protocol={ok}"]).protocol == ok
    for bad in (version.PROTOCOL_MIN - 1, version.PROTOCOL_MAX + 1):
        with pytest.raises(config.ConfigError, match="expected a protocol version between"):
            config.load(["-data-dir=/x", f"-protocol={bad}"])
    assert config.AgentConfig().protocol == version.PROTOCOL_DEFAULT
