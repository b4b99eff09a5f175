"""Shared pytest fixtures: `cluster` starts real agents through tests/harness.py and always
kills them (by PID) afterwards; a failing test gets the tail of every node's log in its report."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seeds",
        type=int,
        default=None,
        help="number of simulator seeds to run (default 500, or $SENATE_SEEDS)",
    )
    parser.addoption(
        "--run-long",
        action="store_true",
        default=False,
        help="run the tests marked long (also with SENATE_LONG=1); skipped otherwise",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `long` (e.g. client libraries' own suites, minutes each) run only when
    asked for: --run-long or SENATE_LONG=1."""
    if config.getoption("--run-long") or os.environ.get("SENATE_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long test: run with --run-long or SENATE_LONG=1")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


def _report_logs(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    node = request.node
    failed = any(
        getattr(node, f"rep_{w}", None) is not None and getattr(node, f"rep_{w}").failed
        for w in ("setup", "call")
    )
    if failed:
        sys.stderr.write("\n" + cluster.dump_logs() + "\n")


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        _report_logs(request, c)
        c.cleanup()
