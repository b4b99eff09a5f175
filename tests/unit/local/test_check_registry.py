"""LocalRegistry: registrations are all-or-nothing, checks run and their results reach
LocalState with Consul's log lines, HTTP-registered definitions survive a restart, maintenance
mode and reaping work."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.local.checks import CRITICAL, PASSING, SCRIPTS_DISABLED, WARNING
from agent.local.registry import (
    NODE_MAINT,
    LocalRegistry,
    RegistrationError,
    parse_check,
    parse_service,
)
from agent.local.state import LocalState


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[LocalRegistry]:
    reg = LocalRegistry(state=LocalState(node_name="node1"), data_dir=tmp_path, min_interval=0.02)
    try:
        yield reg
    finally:
        await reg.stop()


def web_ttl(**check: object) -> dict[str, object]:
    return {"Name": "web", "Port": 80, "Tags": ["v1"], "Check": {"TTL": "1s", **check}}


async def test_service_with_ttl_check_then_pass_and_fail(registry: LocalRegistry) -> None:
    registry.add_service(parse_service(web_ttl()), persist=True)
    st = registry.state
    assert st.services["web"]["Port"] == 80 and st.services["web"]["Tags"] == ["v1"]
    chk = st.checks["service:web"]
    assert (chk["Status"], chk["Name"], chk["ServiceName"]) == (
        CRITICAL,
        "Service 'web' check",
        "web",
    )
    st.changed.clear()
    registry.update_ttl("service:web", PASSING, "ok")
    assert (st.checks["service:web"]["Status"], st.checks["service:web"]["Output"]) == (
        PASSING,
        "ok",
    )
    assert st.changed.is_set()  # anti-entropy wakes on a status change
    st.changed.clear()
    registry.update_ttl("service:web", PASSING, "still ok")
    assert not st.changed.is_set()  # output-only change waits for the periodic sync
    registry.update_ttl("service:web", WARNING, "meh")
    assert st.checks["service:web"]["Status"] == WARNING and st.changed.is_set()


async def test_http_check_drives_status_with_consul_log_lines(
    registry: LocalRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = True

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200 if healthy else 500, text="status")

    app = web.Application()
    app.router.add_get("/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/health"))
        caplog.set_level(logging.DEBUG, logger="agent")
        registry.add_service(
            parse_service({"Name": "web", "Check": {"HTTP": url, "Interval": "20ms"}}),
            persist=False,
        )
        checks = registry.state.checks
        await wait_until(lambda: checks["service:web"]["Status"] == PASSING)
        assert checks["service:web"]["Output"] == f"HTTP GET {url}: 200 OK Output: status"
        assert "Check 'service:web' is passing" in caplog.text
        healthy = False
        await wait_until(lambda: checks["service:web"]["Status"] == CRITICAL)
        assert "Check 'service:web' is now critical" in caplog.text
        infos = [r for r in caplog.records if r.levelno >= logging.INFO and "Check '" in r.message]
        await wait_until(lambda: caplog.text.count("Check 'service:web' is critical") >= 2)
        # unchanged results are logged at DEBUG only: two INFO/WARN lines for two changes
        again = [r for r in caplog.records if r.levelno >= logging.INFO and "Check '" in r.message]
        assert len(infos) == len(again) == 2
    finally:
        await server.close()


async def test_refused_registrations_change_nothing(registry: LocalRegistry) -> None:
    before = (dict(registry.state.services), dict(registry.state.checks))
    script = {"Name": "web", "Checks": [{"TTL": "5s"}, {"Args": ["true"], "Interval": "5s"}]}
    with pytest.raises(RegistrationError) as err:
        registry.add_service(parse_service(script), persist=True)
    assert (err.value.status, err.value.message) == (400, SCRIPTS_DISABLED)
    with pytest.raises(RegistrationError, match='ServiceID "nope" does not exist') as err:
        registry.add_check(
            parse_check({"Name": "c", "TTL": "1s", "ServiceID": "nope"}), persist=True
        )
    assert err.value.status == 404
    assert (registry.state.services, registry.state.checks) == before
    assert not (registry.data_dir / "services").exists()  # type: ignore[operator]
    assert not (registry.data_dir / "checks").exists()  # type: ignore[operator]


async def test_scripts_run_when_enabled(registry: LocalRegistry) -> None:
    registry.enable_script_checks = True
    registry.add_check(
        parse_check({"Name": "disk", "Args": ["sh", "-c", "echo 91%; exit 1"], "Interval": "20ms"}),
        persist=False,
    )
    await wait_until(lambda: registry.state.checks["disk"]["Status"] == WARNING)
    assert registry.state.checks["disk"]["Output"] == "91%\n"
    assert registry.stats()["check_monitors"] == 1


async def test_restart_restores_api_registrations_and_ttl_state(tmp_path: Path) -> None:
    first = LocalRegistry(state=LocalState(node_name="node1"), data_dir=tmp_path)
    first.add_service(parse_service(web_ttl(TTL="30s")), persist=True)
    first.add_check(parse_check({"Name": "mem", "TTL": "30s", "Notes": "memory"}), persist=True)
    first.update_ttl("service:web", PASSING, "was fine")
    first.enable_node_maintenance("patching")
    await first.stop()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert [f.split("/")[0] for f in files] == ["checks"] * 4 + ["services"]
    wrapped = json.loads((tmp_path / "services" / Path(files[-1]).name).read_text())
    assert wrapped["Service"]["Service"] == "web"

    second = LocalRegistry(state=LocalState(node_name="node1"), data_dir=tmp_path)
    try:
        second.load_persisted()
        st = second.state
        assert st.services["web"]["Port"] == 80
        assert (st.checks["service:web"]["Status"], st.checks["service:web"]["Output"]) == (
            PASSING,
            "was fine",
        )
        assert st.checks["mem"]["Notes"] == "memory" and st.checks["mem"]["Status"] == CRITICAL
        assert st.checks[NODE_MAINT]["Notes"] == "patching"
        assert second.stats()["check_ttls"] == 2
        # deregistration removes the files: a third start has nothing
        second.remove_service("web")
        second.remove_check("mem")
        second.disable_node_maintenance()
    finally:
        await second.stop()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_config_definitions_win_over_files_and_reload(registry: LocalRegistry) -> None:
    registry.load_config(
        [{"name": "web", "port": 80, "check": {"ttl": "10s"}}],
        [{"name": "disk", "ttl": "10s"}, {"name": "legacy"}],
    )
    registry.update_ttl("disk", PASSING, "")
    assert set(registry.state.checks) == {"service:web", "disk", "legacy"}
    assert registry.data_dir is not None and not (registry.data_dir / "services").exists()
    # reload: web changed (port), disk unchanged keeps its status, legacy removed
    registry.load_config(
        [{"name": "web", "port": 81, "check": {"ttl": "10s"}}], [{"name": "disk", "ttl": "10s"}]
    )
    assert registry.state.services["web"]["Port"] == 81
    assert set(registry.state.checks) == {"service:web", "disk"}
    assert registry.state.checks["disk"]["Status"] == PASSING
    registry.load_config([], [])
    assert registry.state.services == {} and registry.state.checks == {}


async def test_maintenance_checks(registry: LocalRegistry) -> None:
    registry.add_service(parse_service({"Name": "web", "ID": "web1"}), persist=True)
    assert registry.enable_service_maintenance("web1", "") is True
    chk = registry.state.checks["_service_maintenance:web1"]
    assert (chk["Status"], chk["Name"], chk["ServiceID"]) == (
        CRITICAL,
        "Service Maintenance Mode",
        "web1",
    )
    assert chk["Notes"].startswith("Maintenance mode is enabled for this service")
    assert registry.enable_service_maintenance("web1", "again") is False
    with pytest.raises(RegistrationError, match='No service registered with ID "web"'):
        registry.enable_service_maintenance("web", "")
    assert registry.disable_service_maintenance("web1") is True
    assert "_service_maintenance:web1" not in registry.state.checks


async def test_reaper_deregisters_services_critical_too_long(registry: LocalRegistry) -> None:
    registry.min_deregister_after = 0.0
    registry.add_service(
        parse_service(web_ttl(TTL="30s", DeregisterCriticalServiceAfter="1m")), persist=True
    )
    registry.add_service(parse_service({"Name": "db", "Check": {"TTL": "30s"}}), persist=True)
    now = time.monotonic()
    assert registry.reap(now + 30) == []
    assert registry.reap(now + 61) == ["web"]  # db has no deregister_critical_service_after
    assert "web" not in registry.state.services and "service:web" not in registry.state.checks
    assert "db" in registry.state.services


async def test_config_check_for_an_unknown_service_is_refused_whole(
    registry: LocalRegistry,
) -> None:
    registry.load_config([{"name": "web", "check": {"ttl": "10s"}}], [])
    with pytest.raises(RegistrationError, match='ServiceID "db" does not exist'):
        registry.load_config([], [{"name": "c", "ttl": "5s", "service_id": "db"}])
    assert set(registry.state.services) == {"web"}  # nothing of the refused reload applied
    assert set(registry.state.checks) == {"service:web"}


async def test_deregistering_a_running_script_check_kills_it(
    registry: LocalRegistry, tmp_path: Path
) -> None:
    import os

    registry.enable_script_checks = True
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    registry.add_check(
        parse_check({"Name": "slow", "Script": script, "Interval": "20ms"}), persist=False
    )
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    child = int(pidfile.read_text())
    registry.remove_check("slow")

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{child}/stat").read_text().split(") ", 1)[1].startswith("Z")

    await wait_until(gone)
    assert "slow" not in registry.state.checks and registry.stats()["check_monitors"] == 0


async def test_registering_a_service_again_keeps_its_check_results(
    registry: LocalRegistry,
) -> None:
    registry.add_service(parse_service(web_ttl(TTL="30s")), persist=True)
    registry.update_ttl("service:web", PASSING, "alive")
    registry.add_service(parse_service(web_ttl(TTL="30s", Notes="v2")), persist=True)
    chk = registry.state.checks["service:web"]
    assert (chk["Status"], chk["Output"], chk["Notes"]) == (PASSING, "alive", "v2")
    assert "service:web" not in registry.critical_since
