"""Runs the Consul client libraries' own test suites against senate and tabulates the results;
used by test_library_suites.py (the floor test) and scripts/client_suites.py (for a human).

- py-consul 1.8.0: its sdist's tests/ (scripts/test.sh extracts it under .venv/clients/src),
  with `python -m pytest -p suite_plugin_py_consul --noconftest` in a subprocess whose
  PYTHONPATH is .venv/clients/py-consul: the plugin gives each test a fresh senate -dev agent
  in place of their docker Consul. Their pyproject's pytest options (--cov) are not used: our
  own ini (`-c`) sets what their tests need (asyncio_mode=auto) and a per-test timeout.
- python-consul 1.1.0: its sdist ships no tests/, so there is no suite to run.
- node-consul 2.0.1: npm's tarball has no test/ (only lib/), so there is no suite to run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients_support import (
    CONSUL_ENV,
    HERE,
    LIBRARIES,
    NODE_MODULES,
    PY_CONSUL_SDIST,
    PYTHON_CONSUL_SDIST,
)

SUITE_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = 90
junit_family = xunit2
"""


@dataclass
class SuiteResult:
    name: str
    ran: bool
    note: str = ""
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    failing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    returncode: int | None = None
    log: Path | None = None


def _node_id(sdist: Path, classname: str, name: str) -> str:
    """JUnit's dotted classname back to a pytest node id (tests/api/test_kv.py::TestX::test_y)."""
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = Path(*parts[:i]).with_suffix(".py")
        if (sdist / path).is_file():
            return "::".join([path.as_posix(), *parts[i:], name])
    return f"{classname}::{name}"


def parse_junit(sdist: Path, xml_path: Path, result: SuiteResult) -> None:
    root = ET.parse(xml_path).getroot()
    for case in root.iter("testcase"):
        node_id = _node_id(sdist, case.get("classname", ""), case.get("name", ""))
        tags = {child.tag for child in case}
        if "error" in tags:
            result.errors += 1
            result.failing.append(f"{node_id} (error)")
        elif "failure" in tags:
            result.failed += 1
            result.failing.append(node_id)
        elif "skipped" in tags:
            result.skipped += 1
        else:
            result.passed += 1


def _kill_leftovers(pidfile: Path) -> None:
    """Kill agents an interrupted run left behind: only PIDs the plugin recorded, and only
    while they still are senate agents (a PID may have been reused)."""
    if not pidfile.exists():
        return
    for line in pidfile.read_text().split():
        pid = int(line)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"agent.cli" in cmdline and b"-dev" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run_py_consul(
    workdir: Path,
    net: str = "127.78",
    timeout: float = 2700.0,
    select: list[str] | None = None,
) -> SuiteResult:
    """py-consul's tests/ against senate; `select` narrows it (pytest args, e.g. -k or ids).
    The suite's output goes to <workdir>/py-consul-suite.log."""
    result = SuiteResult("py-consul 1.8.0", ran=False)
    library = LIBRARIES["py-consul"]
    if not (PY_CONSUL_SDIST / "tests").is_dir() or not library.installed():
        result.note = "not installed: run scripts/test.sh"
        return result
    workdir.mkdir(parents=True, exist_ok=True)
    ini = workdir / "suite-pytest.ini"
    ini.write_text(SUITE_INI)
    junit = workdir / "py-consul-junit.xml"
    pidfile = workdir / "agents.pid"
    pidfile.unlink(missing_ok=True)
    log = workdir / "py-consul-suite.log"
    env = {k: v for k, v in os.environ.items() if k not in CONSUL_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(library.path), str(HERE)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["SENATE_SUITE_NET"] = net
    env["SENATE_SUITE_PIDFILE"] = str(pidfile)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(ini),
        "--rootdir",
        str(PY_CONSUL_SDIST),
        "--noconftest",
        "--import-mode=append",
        "-p",
        "suite_plugin_py_consul",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(workdir / "tmp"),
        "--junitxml",
        str(junit),
        "-q",
        "-rfE",
        *(select or [str(PY_CONSUL_SDIST / "tests")]),
    ]
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            result.note = f"timed out after {timeout:.0f}s"
            proc.send_signal(signal.SIGINT)  # pytest runs fixture teardowns on SIGINT
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            _kill_leftovers(pidfile)
    result.seconds = time.monotonic() - started
    result.returncode = proc.returncode
    result.log = log
    if junit.exists():
        result.ran = True
        parse_junit(PY_CONSUL_SDIST, junit, result)
    elif not result.note:
        result.note = f"pytest exited {proc.returncode} without a report; see {log}"
    return result


def unavailable_suites() -> list[SuiteResult]:
    python_consul = SuiteResult("python-consul 1.1.0", ran=False)
    if PYTHON_CONSUL_SDIST.is_dir():
        python_consul.note = "no suite: its sdist ships no tests/ (only consul/)"
    else:
        python_consul.note = "sdist not extracted: run scripts/test.sh"
    node = SuiteResult("node-consul 2.0.1", ran=False)
    node.note = "no suite: npm's tarball has no test/ (only lib/)"
    if not (NODE_MODULES / "consul").is_dir():
        node.note += "; not installed: run scripts/test.sh"
    return [python_consul, node]


def table(results: list[SuiteResult]) -> str:
    head = f"{'suite':<22}{'passed':>8}{'failed':>8}{'skipped':>9}{'errors':>8}{'time':>8}  note"
    lines = [head, "-" * len(head)]
    for r in results:
        if r.ran:
            lines.append(
                f"{r.name:<22}{r.passed:>8}{r.failed:>8}{r.skipped:>9}{r.errors:>8}"
                f"{r.seconds:>7.0f}s  {r.note}"
            )
        else:
            lines.append(f"{r.name:<22}{'-':>8}{'-':>8}{'-':>9}{'-':>8}{'-':>8}  {r.note}")
    for r in results:
        if r.failing:
            lines.append("")
            lines.append(f"{r.name}: {len(r.failing)} failing")
            lines.extend(f"  {t}" for t in r.failing)
    return "\n".join(lines)
