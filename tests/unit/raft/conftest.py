"""Fixtures for the raft unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from raft_harness import Cluster

from agent.raft.config import RaftConfig


@pytest.fixture
async def cluster3(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, 3, RaftConfig.dev())
    try:
        await c.start()
        yield c
    finally:
        await c.close()
