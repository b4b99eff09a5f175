"""agent/local/state.py: anti-entropy writes exactly the differences between the agent's own
services/checks and the catalog, and logs Consul's lines."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.api import RPCError
from agent.local.state import (
    AntiEntropy,
    LocalState,
    check_from_config,
    service_checks_from_config,
    service_from_config,
)


class FakeCatalog:
    def __init__(self) -> None:
        self.node: dict[str, Any] | None = None
        self.services: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.leader = True

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        if not self.leader:
            raise RPCError("No cluster leader")
        if method == "Catalog.NodeServices":
            ns = {"Node": self.node, "Services": self.services} if self.node else None
            return {"NodeServices": ns, "Index": 1}
        if method == "Health.NodeChecks":
            return {"HealthChecks": list(self.checks.values()), "Index": 1}
        self.writes.append((method, args))
        if method == "Catalog.Register":
            self.node = {
                "Node": args["Node"],
                "Address": args["Address"],
                "TaggedAddresses": args["TaggedAddresses"],
                "Meta": args["NodeMeta"],
            }
            if args.get("Service"):
                self.services[args["Service"]["ID"]] = dict(args["Service"])
            for c in [args.get("Check"), *(args.get("Checks") or [])]:
                if c:
                    self.checks[c["CheckID"]] = dict(c)
        elif method == "Catalog.Deregister":
            self.services.pop(args.get("ServiceID", ""), None)
            self.checks.pop(args.get("CheckID", ""), None)
        return None


def make(cat: FakeCatalog) -> tuple[LocalState, AntiEntropy]:
    state = LocalState(node_name="web1")
    ae = AntiEntropy(
        state=state,
        rpc=cat.rpc,
        datacenter="dc1",
        node_id="id-1",
        address=lambda: "10.0.0.5",
        tagged_addresses=lambda: {"lan": "10.0.0.5", "wan": "10.0.0.5"},
        node_meta={},
    )
    return state, ae


async def test_sync_registers_node_services_checks_then_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cat = FakeCatalog()
    state, ae = make(cat)
    state.add_service(service_from_config({"name": "web", "port": 80, "tags": ["v1"]}))
    state.add_check(check_from_config("web1", {"name": "disk", "ttl": "30s"}))
    with caplog.at_level(logging.INFO):
        await ae.sync_full()
    assert "Synced node info" in caplog.text and "Synced service 'web'" in caplog.text
    assert cat.services["web"]["Port"] == 80 and cat.checks["disk"]["Status"] == "critical"
    n = len(cat.writes)
    await ae.sync_full()
    assert len(cat.writes) == n  # in sync: no writes
    state.remove_service("web")
    state.update_check("disk", "passing", "ok")
    await ae.sync_full()
    assert "web" not in cat.services and cat.checks["disk"]["Status"] == "passing"
    # A service the catalog has but the agent never had is removed; serfHealth is left alone.
    cat.services["stray"] = {"ID": "stray", "Service": "stray"}
    cat.checks["serfHealth"] = {"CheckID": "serfHealth", "Status": "passing"}
    await ae.sync_full()
    assert "stray" not in cat.services and "serfHealth" in cat.checks


async def test_sync_without_leader_raises_consul_error() -> None:
    cat = FakeCatalog()
    cat.leader = False
    _, ae = make(cat)
    with pytest.raises(RPCError, match="No cluster leader"):
        await ae.sync_full()


def test_checks_embedded_in_a_service_are_bound_to_it() -> None:
    one = service_checks_from_config("web1", {"name": "web", "check": {"ttl": "10s"}})
    assert [(c["CheckID"], c["ServiceID"], c["Name"]) for c in one] == [
        ("service:web", "web", "Service 'web' check")
    ]
    two = service_checks_from_config(
        "web1",
        {"name": "web", "id": "web-1", "checks": [{"ttl": "1s"}, {"name": "http", "ttl": "2s"}]},
    )
    assert [c["CheckID"] for c in two] == ["service:web-1:1", "service:web-1:2"]
    assert two[1]["Name"] == "http" and all(c["Status"] == "critical" for c in two)
