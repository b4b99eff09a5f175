from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "http"))

from fake_agent import FakeAgent, Served, serve_in_thread


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    for name in ("CONSUL_HTTP_ADDR", "SENATE_HTTP_ADDR", "CONSUL_RPC_ADDR", "SENATE_RPC_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with serve_in_thread(FakeAgent(index=161)) as s:
        yield s
