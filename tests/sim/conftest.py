"""Simulator test options: `--seeds N` runs N seeds of every seeded simulation (default 500)."""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = 500


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seeds",
        type=int,
        default=None,
        help=f"number of simulator seeds to run (default {DEFAULT_SEEDS}, or $SENATE_SEEDS)",
    )


@pytest.fixture
def seeds(request: pytest.FixtureRequest) -> range:
    """Seeds 0..N-1. N from --seeds, else $SENATE_SEEDS, else 500."""
    n = request.config.getoption("--seeds", default=None)
    if n is None:
        n = int(os.environ.get("SENATE_SEEDS", DEFAULT_SEEDS))
    return range(int(n))
