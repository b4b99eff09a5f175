"""Wall time of `provision up` on 5 and on 10 netns SSH hosts, and of a rolling upgrade of 5.

Hosts are the e2e lab's (tests/e2e/netns_hosts.py: network namespaces, own sshd, private
/opt and /var/lib). The artifacts are built before timing starts (a cached build is reused).
The figure that matters is the ratio of the 10-host `up` to the 5-host one: hosts are worked on
in parallel, so it should stay within 1.5x. Ups of 5 and of 10 alternate, `--reps` of each
(a fresh install every time: each is followed by `down --purge`), and the ratio is of medians.
It also times the floor under it: one SSH command on every host in parallel.

    sudo .venv/bin/python bench/provision_bench.py [--skip-10] [--reps N]

Prints a table and exits 0; without root or ip/sshd it says why and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from netns_hosts import HostLab, unavailable_reason  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from provision.artifact import Artifact, build_artifact  # noqa: E402
from provision.hosts import connect, run_parallel  # noqa: E402
from provision.inventory import Inventory, load_inventory  # noqa: E402
from provision.report import Reporter  # noqa: E402
from provision.up import down, up  # noqa: E402
from provision.upgrade import upgrade  # noqa: E402


def inventory(path: Path, lab: HostLab, hosts: int) -> Inventory:
    addrs = lab.addresses[:hosts]
    lines = [
        "defaults:",
        f"  ssh: {{user: root, key_file: {lab.key_file}, connect_timeout: 5}}",
        "  parallel: 10",
        "datacenters:",
        "  dc1:",
        "    servers:",
    ]
    lines += [f"      - {{name: s{i + 1}, host: {a}}}" for i, a in enumerate(addrs[:3])]
    lines.append("    clients:")
    lines += [f"      - {{name: c{i + 1}, host: {a}}}" for i, a in enumerate(addrs[3:])]
    path.write_text("\n".join(lines) + "\n")
    return load_inventory(path)


def newer_build(workdir: Path) -> Artifact:
    src = workdir / "newer-src"
    for name in ("agent", "provision"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "README.md", src / "README.md")
    text = (ROOT / "pyproject.toml").read_text()
    old = next(ln for ln in text.splitlines() if ln.startswith("version = "))
    v = old.split('"')[1].split(".")
    (src / "pyproject.toml").write_text(
        text.replace(old, f'version = "{v[0]}.{v[1]}.{int(v[2]) + 1}"', 1)
    )
    return build_artifact(src)


def ssh_floor(inv: Inventory) -> float:
    t0 = time.monotonic()
    hosts = {n.name: connect(n) for n in inv.nodes}
    try:
        out = run_parallel(
            list(inv.nodes),
            lambda n: hosts[n.name].run("true", step="floor", timeout=30),
            inv.parallel,
        )
    finally:
        for h in hosts.values():
            h.close()
    assert all(o.error is None for o in out), [o.error for o in out]
    return time.monotonic() - t0


class CPU:
    """CPU seconds spent meanwhile by this (controller) process and by the whole machine
    (/proc/stat user+system, every process: sshd, installs, agents, controller)."""

    def __init__(self) -> None:
        self.own0, self.all0 = time.process_time(), self._machine()

    @staticmethod
    def _machine() -> float:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system = (int(x) for x in fields[:3])
        return (user + nice + system) / os.sysconf("SC_CLK_TCK")

    def summary(self) -> str:
        own = time.process_time() - self.own0
        machine = self._machine() - self.all0
        return f"  cpu s: controller {own:.1f}, machine {machine:.1f}"


class Phases:
    """First start to last finish of every step name, from the reporter's progress events."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.spans: dict[str, list[float]] = {}

    def __call__(self, host: str, step: str, status: str) -> None:
        now = time.monotonic() - self.t0
        span = self.spans.setdefault(step, [now, now])
        span[1] = max(span[1], now)

    def summary(self) -> str:
        keep = ("preflight", "install", "start", "join", "leader", "verify", "restart", "unpack")
        return ", ".join(
            f"{k} {b - a:.1f}" for k, (a, b) in self.spans.items() if k in keep and b > a
        )


def timed_up(
    inv: Inventory, quiet: Reporter, artifact: Artifact
) -> tuple[float, list[tuple[str, float, str]]]:
    """Wall seconds of one `provision up`, and its phase and CPU rows."""
    t0 = time.monotonic()
    ph, cpu = Phases(), CPU()
    res = up(inv, Reporter(quiet.console, on_event=ph), artifact=artifact)
    took = time.monotonic() - t0
    assert res.problems == [], res.problems
    return took, [("  phases (s): " + ph.summary(), 0.0, ""), (cpu.summary(), 0.0, "")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-10", action="store_true", help="only the 5-host runs")
    ap.add_argument(
        "--reps",
        type=int,
        default=5,
        help="ups of each size (the ratio is of the medians: the 5-host up waits on raft's "
        "randomised first election, 0.9-1.7 s, which alone moves one ratio by 0.3)",
    )
    args = ap.parse_args()
    console = Console(highlight=False, width=120)
    reason = unavailable_reason()
    if reason:
        console.print(f"provision bench skipped: {reason}")
        return 0
    quiet = Reporter(Console(file=open("/dev/null", "w"), width=120))  # noqa: SIM115
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="provision-bench-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        base = build_artifact()
        newer = newer_build(work)
        rows.append(("artifacts (2 builds, cached when unchanged)", time.monotonic() - t0, ""))
        lab = HostLab(5 if args.skip_10 else 10, work / "lab").start()
        try:
            inv5 = inventory(work / "five.yml", lab, 5)
            inv10 = None if args.skip_10 else inventory(work / "ten.yml", lab, 10)
            rows.append(("ssh `true` on 5 hosts (floor)", ssh_floor(inv5), ""))
            if inv10 is not None:
                rows.append(("ssh `true` on 10 hosts (floor)", ssh_floor(inv10), ""))
            times: dict[int, list[float]] = {5: [], 10: []}
            for rep in range(1, args.reps + 1):
                for size, inv in ((5, inv5), (10, inv10)):
                    if inv is None:
                        continue
                    took, details = timed_up(inv, quiet, base)
                    times[size].append(took)
                    kind = "3 servers + 2 clients" if size == 5 else "3 servers + 7 clients"
                    rows.append((f"up, {size} hosts ({kind}), run {rep}", took, ""))
                    rows += details
                    if size == 5 and rep == 1:
                        t0 = time.monotonic()
                        ph = Phases()
                        upgrade(inv5, Reporter(quiet.console, on_event=ph), newer)
                        rows.append(("upgrade of 5, one node at a time", time.monotonic() - t0, ""))
                        rows.append(("  phases (s): " + ph.summary(), 0.0, ""))
                    down(inv, quiet, purge=True)
            med5 = statistics.median(times[5])
            rows.append((f"up, 5 hosts: median of {len(times[5])}", med5, "1.00x"))
            if times[10]:
                med10 = statistics.median(times[10])
                ratio = f"{med10 / med5:.2f}x of 5-host up"
                rows.append((f"up, 10 hosts: median of {len(times[10])}", med10, ratio))
        finally:
            lab.close()
    t = Table(title="provision bench")
    t.add_column("what")
    t.add_column("wall s", justify="right")
    t.add_column("ratio")
    for what, secs, ratio in rows:
        t.add_row(what, f"{secs:.1f}" if secs else "", ratio)
    console.print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
