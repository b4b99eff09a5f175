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


async def test_output_alone_is_written_back_after_check_update_interval() -> None:
    """Consul's check_update_interval: a new status is synced at once; new output alone waits
    interval/2 .. 1.5 x interval (periodic syncs meanwhile leave it), then one write carries
    it; 0 syncs output at once."""
    import asyncio

    cat = FakeCatalog()
    state, ae = make(cat)
    state.check_update_interval = 0.2
    state.add_check(check_from_config("web1", {"name": "disk", "ttl": "30s"}))
    state.update_check("disk", "passing", "load 0.1", defer_output=True)
    await ae.sync_full()
    assert cat.checks["disk"]["Output"] == "load 0.1"  # first result: a status change
    state.changed.clear()
    writes = len(cat.writes)

    state.update_check("disk", "passing", "load 0.2", defer_output=True)
    state.update_check("disk", "passing", "load 0.3", defer_output=True)
    assert not state.changed.is_set() and list(state.deferred) == ["disk"]
    await ae.sync_full()  # a periodic sync meanwhile: output differs alone, nothing written
    assert len(cat.writes) == writes and cat.checks["disk"]["Output"] == "load 0.1"
    await asyncio.wait_for(state.changed.wait(), 1.0)  # due within 1.5 x 0.2 s
    assert state.deferred == {}
    await ae.sync_full()
    assert len(cat.writes) == writes + 1 and cat.checks["disk"]["Output"] == "load 0.3"

    # A status change cancels the wait and goes at once.
    state.changed.clear()
    state.update_check("disk", "passing", "load 0.4", defer_output=True)
    state.update_check("disk", "critical", "disk full", defer_output=True)
    assert state.changed.is_set() and state.deferred == {}
    await ae.sync_full()
    assert (cat.checks["disk"]["Status"], cat.checks["disk"]["Output"]) == ("critical", "disk full")

    # check_update_interval 0: every output change wakes anti-entropy.
    state.check_update_interval = 0
    state.changed.clear()
    state.update_check("disk", "critical", "disk still full", defer_output=True)
    assert state.changed.is_set() and state.deferred == {}


async def test_removing_a_check_cancels_its_pending_write_back() -> None:
    cat = FakeCatalog()
    state, _ = make(cat)
    state.add_check(check_from_config("web1", {"name": "disk", "ttl": "30s"}))
    state.update_check("disk", "passing", "a", defer_output=True)
    state.update_check("disk", "passing", "b", defer_output=True)
    timer = state.deferred["disk"]
    state.remove_check("disk")
    assert state.deferred == {} and timer.cancelled()
