"""Ten gossip-only agent processes (`python -m agent.gossip`) on their own loopback
addresses, port 8301, Local profile: they converge; one killed with SIGKILL is seen
failed by all others; restarted, it is alive again; a user event reaches all ten.

Addresses are 127.44.0.1-10 so these processes never meet the full agents other tests
start on 127.0.0.x. Every process is killed by PID at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
N = 10
pytestmark = pytest.mark.timeout(120)


def ip(i: int) -> str:
    return f"127.44.0.{i + 1}"


class Proc:
    def __init__(self, root: Path, i: int) -> None:
        self.i = i
        self.name = f"g{i}"
        self.dir = root / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ctl = str(self.dir / "ctl.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            sys.executable, "-m", "agent.gossip",
            "-node", self.name, "-bind", ip(self.i), "-profile", "local",
            "-data-dir", str(self.dir), "-ctl", self.ctl,
        ]  # fmt: skip
        if self.i != 0:
            args += ["-join", ip(0)]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(self.dir / "agent.log", "ab") as logf:
            self.proc = subprocess.Popen(args, stdout=logf, stderr=logf, env=env, cwd=REPO)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def call(self, command: str) -> Any:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.ctl)
            s.sendall(command.encode() + b"\n")
            return json.loads(s.makefile().readline())

    def statuses(self) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self.call("members")}


def wait_for(
    cond: Callable[[], bool], timeout: float, what: str, procs: list[Proc] | None = None
) -> float:
    start = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - start
        except (OSError, ValueError):
            pass  # a process still starting
        if time.monotonic() - start > timeout:
            seen: dict[str, Any] = {}
            for p in procs or []:
                try:
                    seen[p.name] = {
                        "members": p.statuses(),
                        "events": [e["Name"] for e in p.call("events")],
                        "stats": p.call("stats"),
                    }
                except (OSError, ValueError) as exc:
                    seen[p.name] = {"error": str(exc)}
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; views: {seen}")
        time.sleep(0.05)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Proc]]:
    ps = [Proc(tmp_path, i) for i in range(N)]
    try:
        yield ps
    finally:
        for p in ps:
            p.kill()
        for p in ps:
            if os.path.exists(p.dir / "agent.log"):
                sys.stderr.write(f"--- {p.name}\n" + (p.dir / "agent.log").read_text()[-1500:])


def test_ten_processes_converge_detect_restart_event(procs: list[Proc]) -> None:
    procs[0].start()
    wait_for(lambda: procs[0].statuses() == {"g0": "alive"}, 15, "g0 up")
    for p in procs[1:]:
        p.start()
    names = {p.name for p in procs}
    everyone_alive = {n: "alive" for n in names}
    took = wait_for(
        lambda: all(p.statuses() == everyone_alive for p in procs), 40, "convergence", procs
    )
    print(f"converged {took:.2f}s after the last start")

    victim = procs[5]
    victim.kill()
    others = [p for p in procs if p is not victim]
    took = wait_for(
        lambda: all(p.statuses()[victim.name] == "failed" for p in others),
        40,
        "failure seen",
        procs,
    )
    print(f"SIGKILLed member seen failed by all in {took:.2f}s")

    victim.start()  # rejoins by itself from its snapshot, and also joins g0
    took = wait_for(
        lambda: all(p.statuses() == everyone_alive for p in procs), 30, "alive again", procs
    )
    print(f"restarted member alive everywhere in {took:.2f}s")

    assert procs[3].call("event deploy v42") == {"ok": True}
    took = wait_for(
        lambda: all(
            any(e["Name"] == "deploy" and e["Payload"] == "v42" for e in p.call("events"))
            for p in procs
        ),
        40,
        "user event everywhere",
        procs,
    )
    print(f"user event reached all {N} in {took:.2f}s")
    log = (procs[1].dir / "agent.log").read_text()
    assert f"EventMemberFailed: {victim.name} {ip(victim.i)}" in log
    assert "EventMemberJoin: g0 127.44.0.1" in log
