"""agent.version is the one version: the CLI, the package and pyproject.toml agree with it."""

from __future__ import annotations

import tomllib
from pathlib import Path

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
    assert (config.PROTOCOL_MIN, config.PROTOCOL_MAX) == (
        version.PROTOCOL_MIN,
        version.PROTOCOL_MAX,
    )
    assert config.AgentConfig().protocol == version.PROTOCOL_DEFAULT
