"""DNS on loopback: a service lookup (`consul.service.consul` A) and a node lookup
(`dnsbench.node.consul` A) from a senate -dev agent, against a trivial dnslib responder and
dnsmasq answering the same names, in one run, with ratios.

    .venv/bin/python bench/dns_bench.py [--duration 3] [--inflight 1,10,50] [--reps 1]
                                        [--log-level info] [--python-client]

Targets (each on its own 127.6.0.x address, port 8600):
  senate    `senate agent -dev` (uvloop, as the agent runs); its answer is one catalog read
            (Health.ServiceNodes through the agent's RPC path) per query, TTL 0, no cache
  dnslib    a trivial responder: asyncio+uvloop, dnslib parses each query and packs a fixed A
  dnsmasq   native C, `--address=/service.consul/127.6.0.250` (Debian dnsmasq), if installed
The load client is dnsperf (Debian package) when installed, else a bounded Python client.
Each run lasts --duration seconds with N queries in flight (runs of the targets are
interleaved, --reps times; medians are printed); qps and mean latency per target, and each
target's ratios to senate (qps: target/senate; latency: target/senate). With one query in
flight dnsperf paces itself, so only its latency means something there (ANCHORS.md D1). Every process started is killed by
PID at the end. Traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dnslib import DNSRecord

REPO = Path(__file__).resolve().parents[1]
PORT = 8600
QNAME = "consul.service.consul"
#: the workloads: what each asks, one name per run
LOOKUPS = (("service", QNAME), ("node", "dnsbench.node.consul"))
SENATE_IP, DNSLIB_IP, DNSMASQ_IP = "127.6.0.31", "127.6.0.32", "127.6.0.250"

TRIVIAL = r"""
import asyncio, sys
from dnslib import DNSRecord, RR, QTYPE, A
class P(asyncio.DatagramProtocol):
    def connection_made(self, t): self.t = t
    def datagram_received(self, data, addr):
        try:
            q = DNSRecord.parse(data)
        except Exception:
            return
        r = q.reply()
        r.add_answer(RR(q.q.qname, QTYPE.A, ttl=0, rdata=A("127.6.0.32")))
        self.t.sendto(r.pack(), addr)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(P, local_addr=(sys.argv[1], int(sys.argv[2])))
    await asyncio.Event().wait()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


@dataclass
class Result:
    target: str
    inflight: int
    qps: float
    latency_ms: float
    lost: int


def answers(ip: str, timeout: float = 0.5) -> bool:
    try:
        r = DNSRecord.parse(DNSRecord.question(QNAME).send(ip, PORT, timeout=timeout))
    except (OSError, ValueError):
        return False
    return len(r.rr) > 0


def wait_answering(ip: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{ip}: process exited with {proc.returncode}")
        if answers(ip):
            return
        time.sleep(0.1)
    raise SystemExit(f"{ip}: no answer for {QNAME} within {timeout:.0f}s")


def run_dnsperf(ip: str, inflight: int, duration: float, qfile: Path) -> tuple[float, float, int]:
    out = subprocess.run(
        [
            "dnsperf",
            "-s",
            ip,
            "-p",
            str(PORT),
            "-d",
            str(qfile),
            "-l",
            str(duration),
            "-q",
            str(inflight),
            "-t",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
    ).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if not qps or not lat:
        raise SystemExit(f"dnsperf output not understood:\n{out}")
    return float(qps.group(1)), float(lat.group(1)) * 1e3, int(lost.group(1)) if lost else 0


def run_python_client(
    ip: str, inflight: int, duration: float, qname: str = QNAME
) -> tuple[float, float, int]:
    """A bounded fallback client: `inflight` queries outstanding on one UDP socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((ip, PORT))
    sock.settimeout(1.0)
    packets = [DNSRecord.question(qname) for _ in range(65536 // 64)]
    sent: dict[int, float] = {}
    done, lat_total, lost, i = 0, 0.0, 0, 0
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            while len(sent) < inflight:
                p = packets[i % len(packets)]
                p.header.id = i % 65536
                sent[p.header.id] = time.perf_counter()
                sock.send(p.pack())
                i += 1
            try:
                data = sock.recv(4096)
            except TimeoutError:
                lost += len(sent)
                sent.clear()
                continue
            t0 = sent.pop(int.from_bytes(data[:2], "big"), None)
            if t0 is not None:
                lat_total += time.perf_counter() - t0
                done += 1
    finally:
        sock.close()
    return done / duration, (lat_total / done * 1e3) if done else float("nan"), lost


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per run (max 30)")
    ap.add_argument("--inflight", default="1,10,50", help="queries outstanding, comma-separated")
    ap.add_argument("--log-level", default="info", help="senate agent -log-level (-dev is debug)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (max 5); medians shown")
    ap.add_argument("--python-client", action="store_true", help="do not use dnsperf")
    args = ap.parse_args()
    duration = min(max(args.duration, 0.5), 30.0)
    inflights = [int(x) for x in args.inflight.split(",") if x.strip()]
    use_dnsperf = shutil.which("dnsperf") is not None and not args.python_client

    tmp = Path(tempfile.mkdtemp(prefix="dns_bench."))
    qfiles = {}
    for kind, name in LOOKUPS:
        qfiles[kind] = tmp / f"{kind}.txt"
        qfiles[kind].write_text(f"{name} A\n")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        procs["senate"] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from agent.cli import main; main()",
                "agent",
                "-dev",
                "-node=dnsbench",
                f"-bind={SENATE_IP}",
                f"-client={SENATE_IP}",
                f"-log-level={args.log_level}",
            ],
            stdout=(tmp / "senate.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        procs["dnslib"] = subprocess.Popen(
            [sys.executable, "-c", TRIVIAL, DNSLIB_IP, str(PORT)],
            stdout=(tmp / "dnslib.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        if shutil.which("dnsmasq"):
            procs["dnsmasq"] = subprocess.Popen(
                [
                    "dnsmasq",
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    f"--listen-address={DNSMASQ_IP}",
                    "--bind-interfaces",
                    f"--port={PORT}",
                    f"--address=/service.consul/{DNSMASQ_IP}",
                    f"--address=/node.consul/{DNSMASQ_IP}",
                    f"--pid-file={tmp / 'dnsmasq.pid'}",
                    "--user=root",
                    "--cache-size=0",
                ],
                stdout=(tmp / "dnsmasq.log").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ips = {"senate": SENATE_IP, "dnslib": DNSLIB_IP, "dnsmasq": DNSMASQ_IP}
        for name, proc in procs.items():
            wait_answering(ips[name], 40.0, proc)

        reps = min(max(args.reps, 1), 5)
        runs: dict[tuple[str, str, int], list[tuple[float, float, int]]] = {}
        for _ in range(reps):
            for kind, qname in LOOKUPS:
                for inflight in inflights:
                    for name in procs:
                        if use_dnsperf:
                            one = run_dnsperf(ips[name], inflight, duration, qfiles[kind])
                        else:
                            one = run_python_client(ips[name], inflight, duration, qname)
                        runs.setdefault((kind, name, inflight), []).append(one)
        results = [
            Result(
                f"{name} {kind}",
                inflight,
                statistics.median(r[0] for r in rs),
                statistics.median(r[1] for r in rs),
                sum(r[2] for r in rs),
            )
            for (kind, name, inflight), rs in runs.items()
        ]

        client = "dnsperf" if use_dnsperf else "python client"
        print(
            f"DNS A {' and '.join(n for _, n in LOOKUPS)}, {duration:.1f} s per run, {reps} rep(s), client: {client}, "
            f"senate -dev -log-level={args.log_level}"
        )
        print(
            f"{'target':<16} {'in flight':>9} {'qps':>10} {'mean ms':>9} {'lost':>6} "
            f"{'qps vs senate':>14} {'latency vs senate':>18}"
        )
        for (kind, _), inflight in ((k, i) for k in LOOKUPS for i in inflights):
            base = next(
                r for r in results if r.target == f"senate {kind}" and r.inflight == inflight
            )
            for r in results:
                if r.inflight != inflight or not r.target.endswith(f" {kind}"):
                    continue
                ratio = r.qps / base.qps if base.qps else float("nan")
                lat_ratio = r.latency_ms / base.latency_ms if base.latency_ms else float("nan")
                print(
                    f"{r.target:<16} {r.inflight:>9} {r.qps:>10.0f} {r.latency_ms:>9.3f} "
                    f"{r.lost:>6} {ratio:>13.2f}x {lat_ratio:>17.2f}x"
                )
        return 0
    finally:
        for proc in procs.values():
            kill(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
