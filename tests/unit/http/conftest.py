from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_double import AgentDouble, http_client
from aiohttp.test_utils import TestClient


@pytest.fixture
def agent() -> AgentDouble:
    return AgentDouble()


@pytest.fixture
async def client(agent: AgentDouble) -> AsyncIterator[TestClient[Any, Any]]:
    async with http_client(agent) as c:
        yield c
