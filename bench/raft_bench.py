"""Raft benchmark: committed proposals per second and commit latency, senate vs PySyncObj.

    .venv/bin/python bench/raft_bench.py [--seconds 3] [--concurrency 1,16,256]

(a) the sans-IO core on the simulator with zero network and disk latency: the algorithm's CPU
    cost per entry, three servers in one process;
(b) three `RaftNode` OS processes on 127.0.0.1-3 over TCP with LMDB and real fsync; the leader's
    process runs `concurrency` proposers (each awaits its commit, then proposes again);
(c) PySyncObj (PyPI) with three processes on 127.0.0.1-3, the same workload through its
    replicated-method callbacks (appendEntriesUseBatch=False: it sends per command; with its
    default batching it only sends every 100 ms). PySyncObj never fsyncs (in-memory journal).

It also measures this disk's fsync and a loopback TCP round trip, for the latency target
"p99 at concurrency 1 under 2 x (fsync + one loopback round trip)". Prints a table; exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAYLOAD = b"x" * 64


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


# --------------------------------------------------------------------------- (a) simulator


def bench_sim(total: int, concurrency: int) -> dict[str, float]:
    import logging

    import msgpack

    from agent.sim.network import Faults
    from agent.sim.raft_cluster import SIM_CONFIG, SimCluster

    logging.getLogger("raft").setLevel(logging.CRITICAL)
    cfg = SIM_CONFIG.__class__(
        election_timeout=1.0,
        heartbeat_interval=0.1,
        leader_lease_timeout=0.5,
        snapshot_threshold=10**9,
        max_inflight=64,
    )
    c = SimCluster(1, size=3, config=cfg, faults=Faults(min_delay=0.0, max_delay=0.0))
    c.disk_latency = (0.0, 0.0)
    assert c.clock.run_until(5.0, lambda: c.leader() is not None)
    lead = c.leader()
    assert lead is not None and lead.core is not None
    core = lead.core
    started: dict[int, float] = {}
    latencies: list[float] = []
    done = 0
    apply = lead.apply

    def on_apply(rd: Any) -> None:
        nonlocal done
        apply(rd)
        now = time.perf_counter()
        for e in rd.committed:
            t0 = started.pop(e.index, None)
            if t0 is not None:
                latencies.append(now - t0)
                done += 1

    lead.apply = on_apply  # type: ignore[method-assign]
    data = msgpack.packb(["k", "v" * 32])
    issued = 0
    t0 = time.perf_counter()
    while done < total:
        while issued - done < concurrency and issued < total:
            index, _ = core.propose(data)
            started[index] = time.perf_counter()
            issued += 1
        lead.after_event()
        if not c.clock.step():
            break
    elapsed = time.perf_counter() - t0
    return {
        "ops": done / elapsed,
        "p50": _pct(latencies, 0.5) * 1e3,
        "p99": _pct(latencies, 0.99) * 1e3,
    }


# --------------------------------------------------------------------------- (b) senate nodes


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _senate_level(node: Any, conc: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    stop_at = loop.time() + seconds

    async def worker() -> None:
        nonlocal errors
        while loop.time() < stop_at:
            t0 = time.perf_counter()
            try:
                await node.apply(PAYLOAD)
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)
                continue
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    elapsed = time.perf_counter() - t0
    return {
        "ops": len(latencies) / elapsed,
        "p50": _pct(latencies, 0.5) * 1e3,
        "p99": _pct(latencies, 0.99) * 1e3,
        "errors": errors,
    }


async def _senate_node(index: int, addrs: list[str], data_dir: Path, out: Path, args: Any) -> None:
    import logging

    from agent.mux import PortMux
    from agent.raft.config import RaftConfig
    from agent.raft.runner import RaftNode, ServerInfo

    logging.getLogger("raft").setLevel(logging.ERROR)

    class CountingFSM:
        def __init__(self) -> None:
            self.n = 0

        def apply(self, index: int, term: int, data: bytes) -> Any:
            self.n += 1
            return index

        def snapshot(self) -> bytes:
            return str(self.n).encode()

        def restore(self, data: bytes) -> None:
            self.n = int(data or b"0")

    addr = addrs[index]
    host, port = addr.rsplit(":", 1)
    mux = PortMux()
    await mux.start(host, int(port))
    node = RaftNode(
        node_id=addr,
        address=addr,
        data_dir=data_dir,
        fsm=CountingFSM(),
        mux=mux,
        config=RaftConfig.for_multiplier(1),
    )
    await node.bootstrap([ServerInfo(a, a, "Voter") for a in addrs])
    await node.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not node.is_leader():
        if loop.time() > deadline or out.exists():
            await asyncio.Event().wait()  # a follower: serve until killed
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    results = {conc: await _senate_level(node, conc, args.seconds) for conc in args.concurrency}
    out.write_text(json.dumps(results))
    await asyncio.Event().wait()


def _pysyncobj_level(obj: Any, conc: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.time() + seconds
    finished = threading.Event()
    inflight = [conc]

    def issue() -> None:
        t0 = time.perf_counter()

        def cb(result: Any, err: Any) -> None:
            with lock:
                if err == 0:  # FAIL_REASON.SUCCESS
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[0] += 1
                if time.time() < stop_at:
                    issue()
                else:
                    inflight[0] -= 1
                    if inflight[0] == 0:
                        finished.set()

        obj.incr(PAYLOAD, callback=cb)

    t0 = time.perf_counter()
    with lock:
        for _ in range(conc):
            issue()
    finished.wait(seconds + 30)
    elapsed = time.perf_counter() - t0
    return {
        "ops": len(latencies) / elapsed,
        "p50": _pct(latencies, 0.5) * 1e3,
        "p99": _pct(latencies, 0.99) * 1e3,
        "errors": errors[0],
    }


def _pysyncobj_node(index: int, addrs: list[str], out: Path, args: Any) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Store(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            others = [a for a in addrs if a != addrs[index]]
            conf = SyncObjConf(appendEntriesUseBatch=False, dynamicMembershipChange=False)
            super().__init__(addrs[index], others, conf=conf)
            self.n = 0

        @replicated  # type: ignore[misc]
        def incr(self, data: bytes) -> int:
            self.n += 1
            return self.n

    obj = Store()
    deadline = time.time() + 20
    while not obj._isLeader():
        if time.time() > deadline or out.exists():
            threading.Event().wait()
        time.sleep(0.01)
    time.sleep(0.3)
    results = {conc: _pysyncobj_level(obj, conc, args.seconds) for conc in args.concurrency}
    out.write_text(json.dumps(results))
    threading.Event().wait()


def run_cluster(kind: str, args: Any) -> dict[int, Any]:
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    addrs = [f"{h}:{_free_port(h)}" for h in hosts]
    with tempfile.TemporaryDirectory(prefix=f"raft-bench-{kind}-") as tmp:
        outs = [Path(tmp) / f"result-{i}.json" for i in range(3)]
        procs = []
        try:
            for i in range(3):
                cmd = [
                    sys.executable,
                    __file__,
                    "--node",
                    kind,
                    "--index",
                    str(i),
                    "--addrs",
                    ",".join(addrs),
                    "--dir",
                    tmp,
                    "--seconds",
                    str(args.seconds),
                    "--concurrency",
                    ",".join(map(str, args.concurrency)),
                ]
                # PySyncObj prints "truncating already-applied log entries" warnings under
                # load; they are its own and would drown the table.
                quiet = subprocess.DEVNULL if kind == "pysyncobj" else None
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=quiet))
            budget = 40 + len(args.concurrency) * (args.seconds + 10)
            deadline = time.time() + budget
            while time.time() < deadline:
                done = [o for o in outs if o.exists() and o.stat().st_size > 0]
                if done:
                    time.sleep(0.05)
                    return {int(k): v for k, v in json.loads(done[0].read_text()).items()}
                if all(p.poll() is not None for p in procs):
                    raise RuntimeError(f"{kind}: every node exited without a result")
                time.sleep(0.1)
            raise RuntimeError(f"{kind}: no result within {budget}s")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                p.wait()


# --------------------------------------------------------------------------- hardware anchors


def measure_fsync(n: int = 500) -> float:
    with tempfile.NamedTemporaryFile(dir=str(ROOT)) as f:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            f.write(b"x" * 256)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def measure_rtt(n: int = 2000) -> float:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    cli = socket.create_connection(srv.getsockname())
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        cli.sendall(b"p" * 64)
        cli.recv(64)
        times.append(time.perf_counter() - t0)
    cli.close()
    srv.close()
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,16,256")
    parser.add_argument("--sim-entries", type=int, default=20000)
    parser.add_argument("--node", choices=["senate", "pysyncobj"], help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--addrs", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.node:
        addrs = args.addrs.split(",")
        out = Path(args.dir) / f"result-{args.index}.json"
        if args.node == "senate":
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
            asyncio.run(
                _senate_node(args.index, addrs, Path(args.dir) / f"n{args.index}", out, args)
            )
        else:
            _pysyncobj_node(args.index, addrs, out, args)
        return 0

    fsync_ms = measure_fsync()
    rtt_ms = measure_rtt()
    print(f"disk fsync p50 {fsync_ms:.3f} ms; loopback TCP round trip p50 {rtt_ms:.3f} ms")
    sim = {c: bench_sim(args.sim_entries, c) for c in args.concurrency}
    senate = run_cluster("senate", args)
    pso = run_cluster("pysyncobj", args)
    print()
    print(f"{'workload':<44} {'conc':>5} {'ops/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for c in args.concurrency:
        r = sim[c]
        print(
            f"{'(a) senate core, simulator, zero latency':<44} {c:>5} {r['ops']:>10.0f} "
            f"{r['p50']:>9.3f} {r['p99']:>9.3f}"
        )
    for name, res in (
        ("(b) senate, 3 processes, TCP, LMDB fsync", senate),
        ("(c) PySyncObj, 3 processes, no fsync", pso),
    ):
        for c in args.concurrency:
            r = res[c]
            print(
                f"{name:<44} {c:>5} {r['ops']:>10.0f} {r['p50']:>9.3f} {r['p99']:>9.3f}"
                + (f"  ({r['errors']} errors)" if r.get("errors") else "")
            )
    print()
    for c in args.concurrency:
        ratio = senate[c]["ops"] / pso[c]["ops"] if pso[c]["ops"] else float("inf")
        print(f"throughput senate / PySyncObj at concurrency {c:>3}: {ratio:.2f}x")
    target = 2 * (fsync_ms + rtt_ms)
    c1 = senate.get(1)
    if c1:
        print(
            f"p99 at concurrency 1: {c1['p99']:.3f} ms vs target 2 x (fsync + RTT) = "
            f"{target:.3f} ms ({c1['p99'] / target:.2f}x of target)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
