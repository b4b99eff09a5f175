from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent_double import Served, serve_agent


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    for name in ("CONSUL_HTTP_ADDR", "SENATE_HTTP_ADDR", "CONSUL_RPC_ADDR", "SENATE_RPC_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with serve_agent() as s:
        yield s
