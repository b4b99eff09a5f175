"""3-server senate vs 3-member etcd on this machine, driven by the same load client (wrk).

Prints one table: time from the third server's start to an agreed leader, and KV writes/s and
p99 latency through HTTP at concurrency 1, 16 and 64 against the leader — senate's
`PUT /v1/kv/<key>` and etcd's v3 JSON gateway `POST /v3/kv/put` with the same 256-byte values
and fresh keys — with the ratio senate / etcd. Every process it starts is killed by PID on exit.

`--secure` also measures senate locked down, in the same run: ACLs on with default deny (every
write carries a token whose policy allows `bench/`), the HTTP API over TLS (wrk speaks HTTPS to
ports.https) and server RPC and raft over TLS with verify_incoming, verify_outgoing and
verify_server_hostname, certificates made by `senate tls`; the table gains the column
secure / plain, the cost of security.

    .venv/bin/python bench/cluster_bench.py [--duration 10] [--concurrency 1,16,64] [--secure]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SENATE_IPS = ["127.77.0.1", "127.77.0.2", "127.77.0.3"]
ETCD_IPS = ["127.77.1.1", "127.77.1.2", "127.77.1.3"]
#: --secure's cluster runs beside the plain one, so their wrk runs can alternate
SECURE_IPS = ["127.77.2.1", "127.77.2.2", "127.77.2.3"]
VALUE = "x" * 256

SECURE_TOKEN = "6c9a3f1e-8a51-4d5e-9c2b-0f7e1d2c3b4a"

SENATE_LUA = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
counter = 0
value = string.rep("x", 256)
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/bench/" .. tid .. "/" .. counter, HEADERS, value)
end
"""


def senate_lua(token: str | None) -> str:
    headers = "nil" if token is None else '{["X-Consul-Token"] = "' + token + '"}'
    return SENATE_LUA.replace("HEADERS", headers)


SECURE_PARTS = ("acl", "https", "rpc")


def secure_config(root: Path, parts: tuple[str, ...] = SECURE_PARTS) -> Path:
    """ACLs (default deny, a management token for the bench), HTTPS on 8501 and TLS on
    server RPC and raft, with a CA and server certificates from `senate tls`; `parts` picks
    which of the three (to tell their costs apart)."""
    pki = root / "pki"
    pki.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cli = [sys.executable, "-c", "from agent.cli import main; main()", "tls"]
    for argv in (["ca", "create"], ["cert", "create", "-server", "-dc=dc1"]):
        subprocess.run(cli + argv, cwd=pki, env=env, check=True, capture_output=True)
    conf = root / "secure.hcl"
    https = "ports { https = 8501 }\n" if "https" in parts else ""
    rpc = "rpc" in parts
    acl = "acl" in parts
    conf.write_text(
        https
        + f"""tls {{
  defaults {{
    ca_file = "{pki / "consul-agent-ca.pem"}"
    cert_file = "{pki / "dc1-server-consul-0.pem"}"
    key_file = "{pki / "dc1-server-consul-0-key.pem"}"
  }}
  internal_rpc {{
    verify_incoming = {str(rpc).lower()}
    verify_outgoing = {str(rpc).lower()}
    verify_server_hostname = {str(rpc).lower()}
  }}
}}
acl {{
  enabled = {str(acl).lower()}
  default_policy = "deny"
  tokens {{
    initial_management = "{SECURE_TOKEN}"
    agent = "{SECURE_TOKEN}"
  }}
}}
"""
    )
    return conf


# etcd's gateway wants base64 keys; encode in Lua so every request writes a fresh key.
ETCD_LUA = r"""
local b = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function enc(data)
  return ((data:gsub('.', function(x)
    local r, c = '', x:byte()
    for i = 8, 1, -1 do r = r .. (c % 2^i - c % 2^(i-1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if (#x < 6) then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2^(6-i) or 0) end
    return b:sub(c+1, c+1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
counter = 0
value = enc(string.rep("x", 256))
request = function()
  counter = counter + 1
  local body = '{"key":"' .. enc("bench/" .. tid .. "/" .. counter) .. '","value":"' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"}, body)
end
"""


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = cond()
            if value:
                return value
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def http(method: str, url: str, body: bytes | None = None, timeout: float = 2.0) -> Any:
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data = resp.read()
    return json.loads(data) if data else None


class Procs:
    """Processes started by this bench; all killed by PID on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            p = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        self.procs.append(p)
        return p

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
        self.procs.clear()


@contextlib.contextmanager
def senate_cluster(
    root: Path, procs: Procs, config: Path | None = None, ips: list[str] = SENATE_IPS
) -> Iterator[tuple[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    tag = "secure-" if config is not None else ""
    cmd = [sys.executable, "-c", "from agent.cli import main; main()", "agent"]
    started = 0.0
    for i, ip in enumerate(ips, 1):
        others = [f"-retry-join={o}" for o in ips if o != ip]
        args = [
            f"-node=b{i}",
            f"-bind={ip}",
            f"-client={ip}",
            f"-data-dir={root / f'{tag}senate{i}'}",
            "-server",
            "-bootstrap-expect=3",
            "-retry-interval=1s",
            "-log-level=warn",
            *others,
        ]
        if config is not None:
            args.append(f"-config-file={config}")
        procs.start(cmd + args, root / f"{tag}senate{i}.log", env)
        started = time.monotonic()

    def leader() -> str | None:
        seen = {http("GET", f"http://{ip}:8500/v1/status/leader", timeout=0.5) for ip in ips}
        return seen.pop() if len(seen) == 1 and "" not in seen and None not in seen else None

    addr = wait_for(leader, 60, "a senate leader")
    elapsed = time.monotonic() - started
    # Make sure we measure our own agents (not something else listening on these addresses).
    for i, ip in enumerate(ips, 1):
        req = urllib.request.Request(f"http://{ip}:8500/v1/agent/self")
        if config is not None:
            req.add_header("X-Consul-Token", SECURE_TOKEN)
            # the leader writes the management token from initial_management first
            wait_for(functools.partial(_ready, req), 30, "the bench's management token")
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            name = json.loads(resp.read())["Config"]["NodeName"]
        if name != f"b{i}" or any(p.poll() is not None for p in procs.procs):
            raise RuntimeError(f"{ip}:8500 is not the agent this bench started (see {root})")
    yield addr.split(":")[0], elapsed


def _ready(req: urllib.request.Request) -> bool:
    return _status(req) == 200


def _status(req: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@contextlib.contextmanager
def etcd_cluster(root: Path, procs: Procs) -> Iterator[tuple[str, float]]:
    initial = ",".join(f"e{i}=http://{ip}:2380" for i, ip in enumerate(ETCD_IPS, 1))
    started = 0.0
    for i, ip in enumerate(ETCD_IPS, 1):
        argv = [
            "etcd",
            f"--name=e{i}",
            f"--data-dir={root / f'etcd{i}'}",
            f"--listen-client-urls=http://{ip}:2379",
            f"--advertise-client-urls=http://{ip}:2379",
            f"--listen-peer-urls=http://{ip}:2380",
            f"--initial-advertise-peer-urls=http://{ip}:2380",
            f"--initial-cluster={initial}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=bench",
            "--log-level=error",
        ]
        procs.start(argv, root / f"etcd{i}.log")
        started = time.monotonic()

    def leader() -> str | None:
        ids: dict[str, str] = {}
        leaders = set()
        for ip in ETCD_IPS:
            st = http("POST", f"http://{ip}:2379/v3/maintenance/status", b"{}", timeout=0.5)
            ids[str(st["header"]["member_id"])] = ip
            leaders.add(str(st["leader"]))
        if len(leaders) == 1:
            (lid,) = leaders
            return ids.get(lid)
        return None

    ip = wait_for(leader, 60, "an etcd leader")
    elapsed = time.monotonic() - started
    if any(p.poll() is not None for p in procs.procs):
        raise RuntimeError(f"an etcd member exited early (see {root})")
    yield ip, elapsed


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / tick


def run_wrk(
    url: str, script: str, concurrency: int, duration: int, root: Path
) -> tuple[float, float, int]:
    """One wrk run -> (successful requests/s, p99 ms, failed requests)."""
    lua = root / f"load-{abs(hash(script))}.lua"
    lua.write_text(script)
    threads = 1 if concurrency < 16 else 2
    proc = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    out = proc.stdout + proc.stderr
    total_m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)\b", out)
    p99_m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if total_m is None or p99_m is None:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    failed = int(non2xx.group(1)) if non2xx else 0
    if errors:
        failed += sum(int(g) for g in errors.groups())
    seconds = float(total_m.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total_m.group(3)]
    ok_rps = max(0, int(total_m.group(1)) - failed) / seconds
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99_m.group(2)]
    return ok_rps, float(p99_m.group(1)) * scale, failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--concurrency", default="1,16,64", help="comma-separated wrk connections")
    ap.add_argument("--skip-etcd", action="store_true", help="measure senate only")
    ap.add_argument(
        "--secure", action="store_true", help="also measure senate with ACLs and TLS on"
    )
    ap.add_argument(
        "--secure-parts",
        default=",".join(SECURE_PARTS),
        help="what --secure turns on: any of acl,https,rpc (default all three)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="with --secure: alternating plain/secure runs per concurrency, medians (default 3)",
    )
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 1
    with_etcd = not args.skip_etcd and shutil.which("etcd") is not None
    if not args.skip_etcd and not with_etcd:
        print(
            "etcd is not installed (apt-get install -y etcd-server); measuring senate only",
            file=sys.stderr,
        )
    rows: dict[str, dict[str, float]] = {"senate": {}, "secure": {}, "etcd": {}}
    parts = tuple(p for p in args.secure_parts.split(",") if p)
    if not set(parts) <= set(SECURE_PARTS):
        print(f"--secure-parts: expected some of {','.join(SECURE_PARTS)}", file=sys.stderr)
        return 2
    procs = Procs()
    root = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    try:
        with contextlib.ExitStack() as clusters:
            plain = clusters.enter_context(senate_cluster(root, procs))
            pids = {"senate": [p.pid for p in procs.procs]}
            targets: dict[str, tuple[tuple[str, float], str]] = {
                "senate": (plain, "http://{}:8500")
            }
            if args.secure:
                # Both clusters stay up and their runs alternate, so a noisy minute on this
                # machine weighs on both sides alike; each figure is the median of the rounds.
                conf = secure_config(root, parts)
                url = "https://{}:8501" if "https" in parts else "http://{}:8500"
                started = senate_cluster(root, procs, conf, SECURE_IPS)
                targets["secure"] = (clusters.enter_context(started), url)
                pids["secure"] = [p.pid for p in procs.procs[len(pids["senate"]) :]]
            for name, ((_, elapsed), _) in targets.items():
                rows[name]["leader_s"] = elapsed
            for c in levels:
                runs: dict[str, list[tuple[float, float, int]]] = {n: [] for n in targets}
                cpu: dict[str, list[float]] = {n: [] for n in targets}
                for _ in range(args.rounds if args.secure else 1):
                    for name, ((leader_ip, _), url_fmt) in targets.items():
                        token = SECURE_TOKEN if name == "secure" else None
                        url = url_fmt.format(leader_ip)
                        before = cpu_seconds(pids[name])
                        result = run_wrk(url, senate_lua(token), c, args.duration, root)
                        runs[name].append(result)
                        # CPU the three servers spent per successful write: steadier than
                        # writes/s on a busy machine, and what security costs in the end
                        spent = cpu_seconds(pids[name]) - before
                        cpu[name].append(1000 * spent / max(1.0, result[0] * args.duration))
                for name, got in runs.items():
                    rows[name][f"rps{c}"] = statistics.median(r[0] for r in got)
                    rows[name][f"p99{c}"] = statistics.median(r[1] for r in got)
                    rows[name][f"fail{c}"] = sum(r[2] for r in got)
                    rows[name][f"cpu{c}"] = statistics.median(cpu[name])
        procs.kill_all()
        if with_etcd:
            with etcd_cluster(root, procs) as (leader_ip, elapsed):
                rows["etcd"]["leader_s"] = elapsed
                for c in levels:
                    rps, p99, failed = run_wrk(
                        f"http://{leader_ip}:2379", ETCD_LUA, c, args.duration, root
                    )
                    rows["etcd"][f"rps{c}"], rows["etcd"][f"p99{c}"] = rps, p99
                    rows["etcd"][f"fail{c}"] = failed
    finally:
        procs.kill_all()
        shutil.rmtree(root, ignore_errors=True)

    def ratio(key: str) -> str:
        if key.startswith("fail"):
            return "-"
        s, e = rows["senate"].get(key), rows["etcd"].get(key)
        return f"{s / e:.2f}x" if s is not None and e else "-"

    def fmt(v: float | None, unit: str) -> str:
        if v is None:
            return "-"
        return f"{v:,.0f}" if unit == "rps" else f"{v:.2f}"

    print(
        f"cluster_bench: 3 servers each, wrk -d{args.duration}s against the leader, 256 B values;"
        " writes/s counts successful (2xx) writes only"
    )

    def secure_ratio(key: str) -> str:
        s, p = rows["secure"].get(key), rows["senate"].get(key)
        if key.startswith("fail") or s is None or not p:
            return "-"
        return f"{s / p:.2f}x"

    head = f"| {'metric':<33} | {'senate':>10} | {'etcd':>10} | {'senate/etcd':>11} |"
    rule = f"|{'-' * 35}|{'-' * 12}|{'-' * 12}|{'-' * 13}|"
    if args.secure:
        head += f" {'secure':>10} | {'secure/plain':>12} |"
        rule += f"{'-' * 12}|{'-' * 14}|"
    print(head)
    print(rule)
    lines = [("third server start -> leader (s)", "leader_s", "s")]
    for c in levels:
        lines.append((f"KV writes/s, c={c}", f"rps{c}", "rps"))
        lines.append((f"KV write p99 ms, c={c}", f"p99{c}", "ms"))
        lines.append((f"failed requests, c={c}", f"fail{c}", "rps"))
        lines.append((f"server CPU ms per write, c={c}", f"cpu{c}", "ms"))
    for label, key, unit in lines:
        s, e = rows["senate"].get(key), rows["etcd"].get(key)
        line = f"| {label:<33} | {fmt(s, unit):>10} | {fmt(e, unit):>10} | {ratio(key):>11} |"
        if args.secure:
            line += f" {fmt(rows['secure'].get(key), unit):>10} | {secure_ratio(key):>12} |"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
