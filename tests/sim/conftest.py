"""Simulator fixtures: `seeds` is 0..N-1 with N from `--seeds N` (defined in tests/conftest.py so
it works from the repo root), else $SENATE_SEEDS, else 500."""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = 500


@pytest.fixture
def seeds(request: pytest.FixtureRequest) -> range:
    """Seeds 0..N-1. N from --seeds, else $SENATE_SEEDS, else 500."""
    n = request.config.getoption("--seeds", default=None)
    if n is None:
        n = int(os.environ.get("SENATE_SEEDS", DEFAULT_SEEDS))
    return range(int(n))
