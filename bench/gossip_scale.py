"""Gossip at scale in the simulator (agent/sim): how the SWIM + Lifeguard + Serf core
behaves at N = 10, 100, 1000 (and more, memory permitting), in virtual seconds.

    .venv/bin/python bench/gossip_scale.py [--sizes 10,100,1000] [--profile lan] [--seed 1]
        [--seeds 3]

For each N, starting from a converged cluster (the O(N^2) join storm is measured
separately, for N <= --full-join-max, by N staggered joins):
  join-all    N nodes join node0 10 ms apart -> every node lists all N alive
  newcomers   10 new nodes join random members -> every node lists them alive
  detect-1st  a host goes silent -> first member declares it failed
  detect-all  -> every member declares it failed
  kill-all    a process is killed on a host that still answers (ICMP port unreachable,
              TCP refused) -> every member declares it failed
  event       user event -> delivered on every member
  msgs/node/s UDP packets sent per node per virtual second, steady state (probes,
              acks, gossip), and TCP streams (push/pull request + reply) per node per
              second, over a window of min(30 s, push/pull interval)
  wall        real seconds the whole N took
Each figure is the median over --seeds runs (seed, seed+1, ...).
Memory: every node keeps a full member list, N^2 states in one process; the converged
start shares them copy-on-write (agent/sim/gossip_shared.py): about 140 MB and 25 s at
N = 1000, 640 MB and 10 minutes at N = 5000 (`--sizes 5000`) on the 2-core test box.
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.gossip.config import Profile
from agent.sim.gossip_sim import GossipCluster


def join_all(n: int, profile: Profile, seed: int) -> float | None:
    c = GossipCluster(seed, profile=profile, keep_events=False)
    nodes = [c.add_node() for _ in range(n)]
    gap = 0.01
    for i, node in enumerate(nodes[1:]):
        c.clock.call_at(i * gap, functools.partial(c.join, node, nodes[0]))
    c.run_until((n - 1) * gap)
    start = c.clock.now
    ok = c.run_until(start + 4 * profile.push_pull_scale(n), c.fully_converged)
    return c.clock.now - start if ok else None


def scale(n: int, profile: Profile, seed: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    c = GossipCluster(seed, profile=profile, keep_events=False)
    nodes = c.converged(n)
    c.run_for(2.0)

    # Steady-state message rate.
    udp0, stream0, t0 = c.sent["udp"], c.sent["stream"], c.clock.now
    # Long enough to include push/pulls (their interval grows with N), capped for cost.
    window = min(30.0, max(10.0, profile.push_pull_scale(n)))
    c.run_for(window)
    out["msgs"] = (c.sent["udp"] - udp0) / n / (c.clock.now - t0)
    out["streams"] = (c.sent["stream"] - stream0) / n / (c.clock.now - t0)

    # Newcomers.
    rng = random.Random(seed)
    newcomers = [c.add_node() for _ in range(10)]
    for node in newcomers:
        c.join(node, rng.choice(nodes))
    start = c.clock.now
    names = [x.name for x in newcomers]
    everyone = nodes + newcomers

    def newcomers_known() -> bool:
        for o in everyone:
            states = o.serf.member_states
            for name in names:
                ms = states.get(name)
                if ms is None or ms.member.status != "alive":
                    return False
        return True

    ok = c.run_until(start + 4 * profile.push_pull_scale(n), newcomers_known)
    out["newcomers"] = c.clock.now - start if ok else None

    # Crash detection.
    victim = nodes[n // 2]
    c.crash(victim)
    start = c.clock.now
    up = {x.name for x in c.up_nodes()}
    ok = c.run_until(start + 300, lambda: bool(c.saw("member-failed", victim.name)))
    out["detect_first"] = c.clock.now - start if ok else None
    ok = c.run_until(start + 300, lambda: up <= c.saw("member-failed", victim.name))
    out["detect_all"] = c.clock.now - start if ok else None

    # A killed process on a live host: refused, not silent.
    victim = nodes[n // 2 + 1]
    c.crash(victim, refuse=True)
    start = c.clock.now
    up = {x.name for x in c.up_nodes()}
    ok = c.run_until(start + 300, lambda: up <= c.saw("member-failed", victim.name))
    out["kill_all"] = c.clock.now - start if ok else None

    # User event.
    c.user_event(nodes[0], "bench", b"x")
    start = c.clock.now
    total = len(up)
    ok = c.run_until(
        start + 4 * profile.push_pull_scale(n), lambda: len(c.saw("user:bench")) >= total
    )
    out["event"] = c.clock.now - start if ok else None
    return out


def fmt(v: float | None, digits: int = 2) -> str:
    return "timeout" if v is None else f"{v:.{digits}f}"


def median(xs: list[float | None]) -> float | None:
    if any(x is None for x in xs) or not xs:
        return None
    return statistics.median(x for x in xs if x is not None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--profile", default="lan", choices=["lan", "wan", "local"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3, help="runs per N (median)")
    ap.add_argument("--full-join-max", type=int, default=100)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    profile = Profile.named(args.profile)
    print(
        f"profile={args.profile} seeds={args.seed}..{args.seed + args.seeds - 1} (median);"
        " times in virtual seconds; suspicion min "
        f"= {profile.suspicion_mult} x max(1, log10 N) x {profile.probe_interval}s"
    )
    header = (
        f"{'N':>6} {'join-all':>9} {'newcomers':>9} {'detect-1st':>10} {'detect-all':>10} "
        f"{'kill-all':>9} "
        f"{'event':>7} {'msgs/node/s':>11} {'streams/node/s':>14} {'wall s':>7}"
    )
    print(header)
    for n in (int(s) for s in args.sizes.split(",")):
        t = time.monotonic()
        seeds = range(args.seed, args.seed + args.seeds)
        joined = (
            median([join_all(n, profile, sd) for sd in seeds]) if n <= args.full_join_max else None
        )
        runs = [scale(n, profile, sd) for sd in seeds]
        r = {k: median([run[k] for run in runs]) for k in runs[0]}
        print(
            f"{n:>6} {fmt(joined) if n <= args.full_join_max else '-':>9} "
            f"{fmt(r['newcomers']):>9} {fmt(r['detect_first']):>10} {fmt(r['detect_all']):>10} "
            f"{fmt(r['kill_all']):>9} "
            f"{fmt(r['event']):>7} {fmt(r['msgs'], 1):>11} {fmt(r['streams'], 3):>14} "
            f"{time.monotonic() - t:>7.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
