"""One harness for tests that run real `senate agent` processes on loopback addresses.

Each node gets its own 127.x.y.z address with Consul's default ports (8300-8302, 8400, 8500,
8600), its own data dir and log file. The harness waits for conditions with deadlines (never
sleeps and hopes), kills with SIGKILL and restarts nodes, and always kills what it started by
PID — also when a test fails, when it prints the tail of every node's log.

    with Cluster(tmp_path) as c:
        s1 = c.add("s1", "127.5.0.1", server=True, bootstrap_expect=3, retry_join=[...])
        c.start_all()
        c.wait_leader([s1, s2, s3], timeout=20)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The command that runs the senate CLI with this interpreter (no install step needed).
SENATE = [sys.executable, "-c", "from agent.cli import main; main()"]
REPO = Path(__file__).resolve().parent.parent


class HarnessError(AssertionError):
    """A condition was not met in time; the message says which and what was last seen."""


def wait_for(
    cond: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Poll `cond` until it returns a truthy value; raise HarnessError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # the condition may fail while nodes come up
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def senate_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("CONSUL_HTTP_ADDR", None)
    env.pop("SENATE_HTTP_ADDR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a short `senate <args>` command and return its result."""
    return subprocess.run(
        SENATE + args, capture_output=True, text=True, timeout=timeout, env=senate_env(), cwd=REPO
    )


@dataclass
class Node:
    name: str
    ip: str
    data_dir: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: the ACL token the harness's requests carry ("" for none)
    token: str = ""

    @property
    def http(self) -> str:
        return f"{self.ip}:8500"

    @property
    def server_addr(self) -> str:
        return f"{self.ip}:8300"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts}: senate agent {' '.join(self.args)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [*SENATE, "agent", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=senate_env(),
            cwd=REPO,
            start_new_session=True,
        )
        log.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, then reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int | None:
        """Send `sig` and wait for the exit; SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else None
        os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def restart(self) -> None:
        self.kill()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---- HTTP --------------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 10.0
    ) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(f"http://{self.http}{path}", data=body, method=method)
        if self.token:
            req.add_header("X-Consul-Token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def get_json(self, path: str, timeout: float = 10.0) -> Any:
        status, body, _ = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise HarnessError(f"GET {path} on {self.name}: {status} {body[:200]!r}")
        return json.loads(body) if body else None

    def leader(self) -> str:
        """The leader this node reports ("" when none or unreachable)."""
        try:
            return str(self.get_json("/v1/status/leader", timeout=2.0) or "")
        except (OSError, HarnessError, ValueError):
            return ""

    def alive_members(self, wan: bool = False) -> set[str]:
        members = self.get_json("/v1/agent/members" + ("?wan=1" if wan else ""), timeout=3.0)
        return {m["Name"] for m in members if m["Status"] == 1}


@dataclass
class Cluster:
    root: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    extra_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add(
        self,
        name: str,
        ip: str,
        *,
        server: bool = False,
        bootstrap_expect: int = 0,
        bootstrap: bool = False,
        datacenter: str = "dc1",
        join: Iterable[str] = (),
        retry_join: Iterable[str] = (),
        extra: Iterable[str] = (),
    ) -> Node:
        data_dir = self.root / name / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            f"-node={name}",
            f"-bind={ip}",
            f"-client={ip}",
            f"-data-dir={data_dir}",
            f"-datacenter={datacenter}",
            "-log-level=info",
        ]
        if server:
            args.append("-server")
        if bootstrap_expect:
            args.append(f"-bootstrap-expect={bootstrap_expect}")
        if bootstrap:
            args.append("-bootstrap")
        args += [f"-join={a}" for a in join]
        args += [f"-retry-join={a}" for a in retry_join]
        if retry_join:
            args.append("-retry-interval=1s")
        args += list(extra)
        node = Node(name, ip, data_dir, self.root / name / "agent.log", args)
        self.nodes[name] = node
        return node

    def start_all(self) -> None:
        for node in self.nodes.values():
            node.start()

    def wait_http(self, nodes: Iterable[Node], timeout: float = 20.0) -> None:
        for node in nodes:
            wait_for(
                lambda n=node: n.request("GET", "/v1/agent/self", timeout=2.0)[0] == 200,  # type: ignore[misc]
                timeout,
                f"HTTP API of {node.name}",
            )

    def wait_leader(self, nodes: Iterable[Node], timeout: float = 20.0) -> str:
        """Wait until every given (running) node reports the same non-empty leader."""
        nodes = [n for n in nodes if n.running()]

        def agreed() -> str | None:
            seen = {n.leader() for n in nodes}
            if len(seen) == 1:
                (leader,) = seen
                return leader or None
            return None

        return wait_for(agreed, timeout, f"one leader reported by {[n.name for n in nodes]}")

    def node_by_server_addr(self, addr: str) -> Node:
        for n in self.nodes.values():
            if n.server_addr == addr:
                return n
        raise HarnessError(f"no node has server address {addr}")

    def cleanup(self) -> None:
        for node in self.nodes.values():
            node.kill()
        for proc in self.extra_procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)

    def dump_logs(self, tail: int = 60) -> str:
        out = []
        for node in self.nodes.values():
            lines = node.log_text().splitlines()[-tail:]
            out.append(f"----- {node.name} ({node.ip}) last {len(lines)} lines -----")
            out.extend(lines)
        return "\n".join(out)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def start_server(
    cluster: Cluster,
    name: str,
    ip: str,
    config: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> Node:
    """One bootstrapped server of `cluster` (with `config` as a JSON config file, if any),
    started and leading."""
    extra: list[str] = []
    if config is not None:
        path = cluster.root / f"{name}.json"
        path.write_text(json.dumps(config))
        extra.append(f"-config-file={path}")
    node = cluster.add(name, ip, server=True, bootstrap=True, extra=extra)
    node.start()
    cluster.wait_http([node], timeout=timeout)
    cluster.wait_leader([node], timeout=timeout)
    return node


@contextlib.contextmanager
def one_server(root: Path, name: str, ip: str) -> Iterator[Node]:
    """A module's own bootstrapped server (see start_server), stopped on the way out."""
    cluster = Cluster(root)
    try:
        yield start_server(cluster, name, ip)
    finally:
        cluster.cleanup()
