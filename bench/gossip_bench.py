"""Gossip on loopback processes: senate (`python -m agent.gossip`) against HashiCorp's
`serf` (Debian package), same profile, N = 10 and 30, in one run, with ratios.

    .venv/bin/python bench/gossip_bench.py [--sizes 10,30] [--profile lan] [--reps 1]

For each implementation and N: start N agents on their own 127.x.y.z address (no joins),
then measure
  join      first join issued (all join agent 0) -> every agent lists N alive
  detect    SIGKILL of one agent -> every survivor shows it failed; repeated --kills times
            per run (the victim is restarted, rejoined and seen alive in between), the
            median is over every kill of every rep
  event     user event fired on agent 1 (coalesce=false) -> delivered on every agent
  rss       median resident memory per agent after convergence (MiB)
  idle cpu  mean CPU per agent over an idle window after convergence (% of one core)
Views are polled every 50 ms (serf over its msgpack RPC, senate over its control
socket), as in ANCHORS.md. Serf's event time includes its handler (`sh` + `date`); ours
is taken where the event is delivered. Every process started is killed by PID at the end.
Network traffic stays on 127.0.0.0/8. GB_LOG=info keeps the agents' info logs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

REPO = Path(__file__).resolve().parents[1]
POLL = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_for(cond: Callable[[], bool], timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if cond():
                return time.monotonic() - start
        except (OSError, ValueError, KeyError, msgpack.ExtraData):
            pass
        time.sleep(POLL)
    return None


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------- serf


class SerfRPC:
    """Serf's agent RPC: msgpack header + body objects on one TCP stream."""

    def __init__(self, addr: str) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.seq = 0
        self.call("handshake", {"Version": 1}, body=False)

    def _read(self) -> Any:
        while True:
            for obj in self.unpacker:
                return obj
            data = self.sock.recv(65536)
            if not data:
                raise OSError("serf RPC closed")
            self.unpacker.feed(data)

    def call(self, command: str, args: dict[str, Any] | None, body: bool = True) -> Any:
        self.seq += 1
        out = msgpack.packb({"Command": command, "Seq": self.seq})
        if args is not None:
            out += msgpack.packb(args, use_bin_type=True)
        self.sock.sendall(out)
        header = self._read()
        if header.get("Error"):
            raise OSError(f"serf {command}: {header['Error']}")
        return self._read() if body else None

    def close(self) -> None:
        self.sock.close()


class SerfAgent:
    def __init__(self, root: Path, i: int, ip: str, profile: str) -> None:
        self.name = f"s{i}"
        self.ip = ip
        self.rpc_addr = f"{ip}:7373"
        self.dir = root / self.name
        self.dir.mkdir(parents=True)
        self.events_file = self.dir / "events"
        handler = self.dir / "handler.sh"
        handler.write_text(
            f'#!/bin/sh\necho "$SERF_USER_EVENT $(date +%s.%N)" >> {self.events_file}\n'
        )
        handler.chmod(0o755)
        args = [
            "serf", "agent", f"-node={self.name}", f"-bind={ip}:7946",
            f"-rpc-addr={self.rpc_addr}", f"-profile={profile}", "-log-level=warn",
            f"-event-handler=user={handler}",
        ]  # fmt: skip
        self.args = args
        self.log = open(self.dir / "log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        self._rpc: SerfRPC | None = None

    def restart(self) -> None:
        self._rpc = None
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log)

    @property
    def addr(self) -> str:
        return f"{self.ip}:7946"

    def rpc(self) -> SerfRPC:
        if self._rpc is None:
            self._rpc = SerfRPC(self.rpc_addr)
        return self._rpc

    def statuses(self) -> dict[str, str]:
        try:
            members = self.rpc().call("members", None)["Members"]
        except OSError:
            self._rpc = None
            raise
        return {m["Name"]: m["Status"] for m in members}

    def join(self, addr: str) -> None:
        self.rpc().call("join", {"Existing": [addr], "Replay": False})

    def fire(self, name: str) -> None:
        self.rpc().call("event", {"Name": name, "Payload": b"x", "Coalesce": False}, body=False)

    def got_event(self, name: str) -> float | None:
        if not self.events_file.exists():
            return None
        for line in self.events_file.read_text().splitlines():
            ev, _, at = line.partition(" ")
            if ev == name:
                return float(at)
        return None

    def ready(self) -> bool:
        return self.name in self.statuses()


# ---------------------------------------------------------------------- senate


class SenateAgent:
    def __init__(self, root: Path, i: int, ip: str, profile: str) -> None:
        self.name = f"g{i}"
        self.ip = ip
        self.dir = root / self.name
        self.dir.mkdir(parents=True)
        self.ctl = str(self.dir / "ctl.sock")
        args = [
            sys.executable, "-m", "agent.gossip", "-node", self.name, "-bind", ip,
            "-profile", profile, "-ctl", self.ctl, "-log-level", os.environ.get("GB_LOG", "warn"),
        ]  # fmt: skip
        self.args = args
        self.env = dict(os.environ, PYTHONPATH=str(REPO))
        self.log = open(self.dir / "log", "wb")  # noqa: SIM115
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args, stdout=self.log, stderr=self.log, env=self.env, cwd=REPO)

    def restart(self) -> None:
        self.proc = self._spawn()

    @property
    def addr(self) -> str:
        return f"{self.ip}:8301"

    def call(self, command: str) -> Any:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.ctl)
            s.sendall(command.encode() + b"\n")
            return json.loads(s.makefile().readline())

    def statuses(self) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self.call("members")}

    def join(self, addr: str) -> None:
        reply = self.call(f"join {addr}")
        if "error" in reply:
            raise OSError(reply["error"])

    def fire(self, name: str) -> None:
        self.call(f"event {name} x")

    def got_event(self, name: str) -> float | None:
        for e in self.call("events"):
            if e["Name"] == name:
                return float(e["Time"])
        return None

    def ready(self) -> bool:
        return self.name in self.statuses()


# ---------------------------------------------------------------------- one run


def seen_as(victim: Any, others: list[Any], status: str) -> Callable[[], bool]:
    return lambda: all(a.statuses().get(victim.name) == status for a in others)


def run_one(kind: str, n: int, profile: str, subnet: int, kills: int) -> dict[str, float | None]:
    root = Path(tempfile.mkdtemp(prefix=f"gossip-bench-{kind}-"))
    cls = SerfAgent if kind == "serf" else SenateAgent
    agents: list[Any] = []
    result: dict[str, float | None] = {}
    try:
        for i in range(n):
            agents.append(cls(root, i, f"127.{subnet}.0.{i + 1}", profile))
        if wait_for(lambda: all(a.ready() for a in agents), 60) is None:
            raise RuntimeError(f"{kind}: agents did not start")
        names = {a.name for a in agents}
        start = time.monotonic()
        for a in agents[1:]:
            a.join(agents[0].addr)
        result["joins_issued"] = time.monotonic() - start
        converged = wait_for(
            lambda: all(
                set(s := a.statuses()) == names and all(v == "alive" for v in s.values())
                for a in agents
            ),
            120,
        )
        result["join"] = None if converged is None else time.monotonic() - start
        time.sleep(2)
        result["rss"] = statistics.median(proc_rss_mib(a.proc.pid) for a in agents)
        idle = 10.0
        cpu0 = [proc_cpu_seconds(a.proc.pid) for a in agents]
        time.sleep(idle)
        cpu1 = [proc_cpu_seconds(a.proc.pid) for a in agents]
        result["idle_cpu"] = (
            100 * statistics.mean(b - a for a, b in zip(cpu0, cpu1, strict=True)) / idle
        )

        fired = time.time()
        agents[1].fire("benchevent")
        got = wait_for(lambda: all(a.got_event("benchevent") is not None for a in agents), 60)
        if got is None:
            result["event"] = None
        else:
            result["event"] = max(a.got_event("benchevent") for a in agents) - fired

        # Detection: `kills` times, kill one member, time until every other member shows it
        # failed, then restart it (same name and address), join it back and wait until every
        # member shows it alive, so N stays the same for the next kill. More kills per run give
        # a steadier median: one kill's time varies by +-1 s with the probe order.
        detects: list[float] = []
        for k in range(kills):
            victim = agents[(n // 2 + k) % n]
            survivors = [a for a in agents if a is not victim]
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            start = time.monotonic()
            if wait_for(seen_as(victim, survivors, "failed"), 120) is None:
                break
            detects.append(time.monotonic() - start)
            if k == kills - 1:
                break
            victim.restart()
            if wait_for(victim.ready, 60) is None:
                break
            victim.join(survivors[0].addr)
            if wait_for(seen_as(victim, agents, "alive"), 120) is None:
                break
        result["detect"] = statistics.median(detects) if detects else None
        result["detect_all"] = detects  # type: ignore[assignment]
    finally:
        for a in agents:
            if a.proc.poll() is None:
                os.kill(a.proc.pid, signal.SIGKILL)
                a.proc.wait()
            a.log.close()
        shutil.rmtree(root, ignore_errors=True)
    return result


def fmt(v: float | None, unit: str) -> str:
    return "timeout" if v is None else f"{v:.3f}{unit}" if unit == "s" else f"{v:.1f}{unit}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,30")
    ap.add_argument("--profile", default="lan", choices=["lan", "wan", "local"])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--kills", type=int, default=3, help="kill/detect/restart cycles per run")
    args = ap.parse_args()
    if shutil.which("serf") is None:
        print("serf not installed: apt-get install -y serf", file=sys.stderr)
        return 1
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        runs: dict[str, list[dict[str, float | None]]] = {"serf": [], "senate": []}
        for rep in range(args.reps):
            for kind, subnet in (("serf", 61), ("senate", 62)):
                r = run_one(kind, n, args.profile, subnet, args.kills)
                print(f"# N={n} rep={rep} {kind}: {r}", flush=True)
                runs[kind].append(r)
        for metric, unit in (
            ("join", "s"),
            ("detect", "s"),
            ("event", "s"),
            ("rss", " MiB"),
            ("idle_cpu", "%"),
        ):
            vals: dict[str, float | None] = {}
            for kind in ("serf", "senate"):
                if metric == "detect":  # every kill of every rep, pooled
                    xs = [v for r in runs[kind] for v in r.get("detect_all") or []]  # type: ignore[union-attr]
                else:
                    xs = [v for r in runs[kind] if (v := r.get(metric)) is not None]
                vals[kind] = statistics.median(xs) if xs else None
            sv, gv = vals["serf"], vals["senate"]
            ratio = f"{gv / sv:.2f}" if sv and gv is not None else "-"
            rows.append((n, metric, fmt(sv, unit), fmt(gv, unit), ratio))
    print(
        f"\nprofile={args.profile} reps={args.reps} kills/run={args.kills}"
        " (median; detect pools every kill)"
    )
    print(f"{'N':>3}  {'metric':<9} {'serf':>12} {'senate':>12} {'senate/serf':>12}")
    for n, metric, s, g, ratio in rows:
        print(f"{n:>3}  {metric:<9} {s:>12} {g:>12} {ratio:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
