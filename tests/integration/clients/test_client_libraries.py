"""Real Consul client libraries against a real senate agent: python-consul 1.1.0, py-consul 1.8.0
and node-consul 2.0.1 (installed by scripts/test.sh under .venv/clients/), each calling the HTTP
API exactly as its users do (Patroni, registrars, lock helpers).

Each test starts a fresh `senate agent -dev` on its own loopback IP and runs one group of one
library's scenario script (scenario_*.py / scenario_npm_consul.js) in a subprocess: both Python
libraries are the package `consul`, so each runs with PYTHONPATH at its own install dir. The
scripts' expectations are Consul 1.x's documented behaviour; where senate differs today the test
is a strict xfail whose reason says what senate does wrong, so fixing it flips the test to
XPASS(strict), a failure telling the fixer to remove the mark.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients_support import LIBRARIES, start_dev_agent
from harness import Cluster

pytestmark = pytest.mark.timeout(240)

COMMON = [
    "kv_basic",
    "kv_empty_and_flags",
    "kv_recurse_keys",
    "kv_cas",
    "kv_blocking",
    "sessions",
    "session_defaults",
    "session_checks",
    "lock",
    "lock_delay",
    "patroni",
    "session_ttl_expiry",
    "agent_info",
    "agent_local_state",
    "agent_service_ttl",
    "agent_maintenance",
    "health",
    "catalog_read",
    "catalog_register",
    "node_meta",
    "events",
    "txn",
    "status",
    "coordinates",
    "operator",
]
GROUPS = {
    "python-consul": COMMON,
    "py-consul": [
        *COMMON,
        "filter_expr",
        "service_meta_weights",
        "multi_tag",
        "config_entries",
        "aio_client",
        "event_blocking",
        "autopilot",
        "prepared_query",
    ],
    "node-consul": [
        "kv_basic",
        "kv_empty_and_flags",
        "kv_recurse_keys",
        "kv_cas",
        "kv_blocking",
        "sessions",
        "lock",
        "agent_info",
        "agent_local_state",
        "agent_service_ttl",
        "agent_maintenance",
        "health",
        "catalog_read",
        "catalog_register",
        "events",
        "txn",
        "status",
    ],
}

#: (library, group) -> what senate does wrong there, per Consul 1.x's documented behaviour.
#: Remove an entry when its test XPASSes.
KNOWN: dict[tuple[str, str], str] = {}

LIB_INDEX = {name: i for i, name in enumerate(GROUPS)}


def _cases() -> list[Any]:
    cases = []
    for lib, groups in GROUPS.items():
        for group in groups:
            marks = []
            reason = KNOWN.get((lib, group))
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            cases.append(pytest.param(lib, group, marks=marks, id=f"{lib}-{group}"))
    return cases


def _require(lib: str) -> None:
    library = LIBRARIES[lib]
    if library.runtime == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not library.installed():
        pytest.skip(f"{lib} is not installed under {library.path}: run scripts/test.sh")


@pytest.mark.parametrize(("lib", "group"), _cases())
def test_scenario(cluster: Cluster, lib: str, group: str) -> None:
    _require(lib)
    n = GROUPS[lib].index(group)
    ip = f"127.77.{10 + LIB_INDEX[lib]}.{n + 1}"
    name = f"{lib.replace('-', '')}-{n}"
    node = start_dev_agent(cluster, name, ip)
    try:
        out = LIBRARIES[lib].run(f"{ip}:8500", name, [group], timeout=150)
    except subprocess.TimeoutExpired as exc:
        out_text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"{lib} {group} did not finish in {exc.timeout}s:\n{out_text}")
    assert out.returncode == 0, (
        f"{lib} scenario {group!r} failed (exit {out.returncode}):\n"
        f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    )
    assert node.running(), "the agent died during the scenario"


@pytest.mark.parametrize("lib", list(GROUPS))
def test_group_lists_match_scripts(lib: str) -> None:
    """The groups above are exactly those the script defines (`--list`), in its order."""
    _require(lib)
    library = LIBRARIES[lib]
    out = subprocess.run(
        [*library.command("x:0", "x", [])[:2], "--list"],
        capture_output=True,
        text=True,
        timeout=60,
        env=library.env(),
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == GROUPS[lib]
