from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_catalog import FakeCatalogAgent


@pytest.fixture
def catalog() -> FakeCatalogAgent:
    agent = FakeCatalogAgent()
    agent.add_node("n1", "127.0.0.1")
    agent.add_node("n2", "10.0.0.2")
    agent.add_node("n3", "10.0.0.3")
    agent.add_node("v6", "fd00::6")
    agent.add_service("n1", "consul", 8300)
    agent.add_service("n1", "web", 80, tags=["prod", "v1"])
    agent.add_service("n2", "web", 8080, tags=["prod"], address="10.9.9.2")
    agent.add_service("n3", "web", 80, tags=["canary"], status="warning")
    agent.add_service("n3", "db", 5432, status="critical")
    return agent
