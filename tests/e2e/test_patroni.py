"""Patroni (PostgreSQL HA) on senate as its DCS, end to end.

Three senate servers form a datacenter; each of three "hosts" (its own loopback address) runs a
senate client agent joined to them, a Patroni node talking only to that local agent, and the
PostgreSQL that Patroni manages. The test checks what an operator relies on:

* bootstrap: one leader is elected, the other two stream from it, a row written on the primary
  shows up on the replicas, and Patroni's state really lives in senate's KV (the leader key
  holds the leader's name under a session created through that node's own agent);
* failover: the leader's Patroni and postmaster are SIGKILLed; one of the two others becomes
  primary within ttl + loop_wait (measured and printed), while a watcher samples every alive
  node's REST API every 0.5 s and no sample ever shows two primaries;
* rejoin: the old leader's Patroni is started again and comes back as a streaming replica of
  the new primary (pg_rewind or a fresh clone), with the rows written after the failover.

Everything started here is stopped in teardown by PID, even on failure: Patroni, then any
postmaster left (from its postmaster.pid), then any process still working in the test's
directories (PostgreSQL's children), and the senate agents through the `cluster` fixture.
PostgreSQL refuses to run as root, so as root Patroni runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from base64 import b64decode
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, HarnessError, Node, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SCOPE = "senate-e2e"
TTL, LOOP_WAIT, RETRY_TIMEOUT = 20, 5, 10
#: Patroni promises a new leader within ttl + loop_wait of the old one's death; the slack is for
#: the survivors' HA loop and the promotion itself.
FAILOVER_BOUND = TTL + LOOP_WAIT
FAILOVER_SLACK = 5.0
SAMPLE_EVERY = 0.5
PG_PORT, API_PORT = 15432, 18008  # not the defaults: the distro cluster may hold 5432
SUPERUSER_PASSWORD = "senate-super"
REPLICATION_PASSWORD = "senate-repl"
SERVER_IPS = ["127.33.0.1", "127.33.0.2", "127.33.0.3"]
#: One "host" per Patroni node: its senate client agent, Patroni's REST API and PostgreSQL.
HOSTS = {"pg1": "127.33.0.11", "pg2": "127.33.0.12", "pg3": "127.33.0.13"}
PRIMARY_ROLES = ("master", "primary")

PATRONI = shutil.which("patroni") or "/usr/bin/patroni"


def _pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin dir (Debian's layout), preferring 15."""
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "pg_ctl").exists():
        return preferred
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


PG_BIN = _pg_bin_dir()


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user PostgreSQL runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def unavailable_reason() -> str | None:
    if not Path(PATRONI).exists():
        return "patroni is not installed (scripts/test.sh installs it as root: apt patroni)"
    if PG_BIN is None:
        return "PostgreSQL is not installed (scripts/test.sh installs it as root: apt postgresql)"
    with open(PATRONI, "rb") as f:
        shebang = f.readline().decode(errors="replace")
    interpreter = shebang[2:].strip().split()[0] if shebang.startswith("#!") else sys.executable
    probe = subprocess.run(
        [interpreter, "-c", "import consul, psycopg2"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"patroni's python ({interpreter}) lacks python-consul/psycopg2 (apt python3-consul)"
    if os.geteuid() == 0 and _run_as() is None:
        return "running as root and there is no `postgres` user to run PostgreSQL as"
    return None


# ---- processes ---------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _pids_working_in(root: Path) -> list[int]:
    """Processes whose current directory is under `root` (PostgreSQL's processes run in their
    data dir): how teardown finds, by PID, what an killed postmaster left behind."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            pids.append(int(entry.name))
    return pids


@dataclass
class PgNode:
    name: str
    ip: str
    dir: Path
    agent: Node
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def config_path(self) -> Path:
        return self.dir / "patroni.yml"

    @property
    def log_path(self) -> Path:
        return self.dir / "patroni.log"

    @property
    def api(self) -> str:
        return f"http://{self.ip}:{API_PORT}"

    def write_config(self) -> None:
        assert PG_BIN is not None
        config: dict[str, Any] = {
            "scope": SCOPE,
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"{self.ip}:{API_PORT}",
                "connect_address": f"{self.ip}:{API_PORT}",
            },
            "consul": {"host": self.agent.http, "register_service": True},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": LOOP_WAIT,
                    "retry_timeout": RETRY_TIMEOUT,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {"use_pg_rewind": True},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums"],
            },
            "postgresql": {
                "listen": f"{self.ip}:{PG_PORT}",
                "connect_address": f"{self.ip}:{PG_PORT}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(self.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                    "replication": {"username": "replicator", "password": REPLICATION_PASSWORD},
                },
                "parameters": {
                    "unix_socket_directories": str(self.dir),
                    "max_connections": 20,
                    "shared_buffers": "16MB",
                    "wal_level": "replica",
                    "hot_standby": "on",
                    "max_wal_senders": 10,
                    "max_replication_slots": 10,
                    "wal_keep_size": "64MB",
                    "fsync": "off",  # a test cluster in tmp: speed over durability
                },
                "pg_hba": [
                    "local all all trust",
                    "host replication replicator 127.0.0.0/8 md5",
                    "host all all 127.0.0.0/8 md5",
                ],
                "use_pg_rewind": True,
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
        }
        # JSON is YAML: no YAML writer needed.
        self.config_path.write_text(json.dumps(config, indent=2))
        _chown(self.config_path)

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.starts += 1
        user = _run_as()
        env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts}: {PATRONI} {self.config_path}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [PATRONI, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                env=env,
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            return None

    def kill_patroni(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _kill(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def stop(self) -> None:
        """Patroni stops PostgreSQL on SIGTERM; whatever is left is killed by PID."""
        if self.proc is not None and self.proc.poll() is None:
            _kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_patroni()
        pid = self.postmaster_pid()
        if pid is not None and _alive(pid) and pid in _pids_working_in(self.data_dir):
            _kill(pid, signal.SIGQUIT)  # immediate shutdown: the postmaster ends its children
            with contextlib.suppress(HarnessError):
                wait_for(lambda: not _alive(pid), 10, f"postmaster {pid} of {self.name}", 0.1)
            _kill(pid, signal.SIGKILL)
        for child in _pids_working_in(self.dir):
            _kill(child, signal.SIGKILL)

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.api}/patroni", timeout=timeout) as resp:
            return dict(json.loads(resp.read()))

    def status_or_none(self, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            return self.status(timeout)
        except (OSError, ValueError):
            return None

    def leader_endpoint(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.api}/leader", timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(text)


def _chown(path: Path) -> None:
    user = _run_as()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def psql(node: PgNode, sql: str) -> str:
    assert PG_BIN is not None
    env = dict(os.environ, PGPASSWORD=SUPERUSER_PASSWORD, PGCONNECT_TIMEOUT="3")
    proc = subprocess.run(
        [
            *(str(PG_BIN / "psql"), "-h", node.ip, "-p", str(PG_PORT), "-U", "postgres"),
            *("-d", "postgres", "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql),
        ],
        capture_output=True,
        text=True,
        timeout=15,
        env=env,
    )
    if proc.returncode != 0:
        raise HarnessError(f"psql on {node.name}: {sql!r}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def wait_row(node: PgNode, row: int, note: str) -> None:
    """Wait until `node` has replicated row `row` of the test table with `note`."""
    wait_for(
        lambda: psql(node, f"SELECT note FROM ha WHERE id = {row}") == note,
        20,
        f"row {row} ({note!r}) on {node.name}",
        interval=0.25,
    )


# ---- observation -------------------------------------------------------------------------


def _is_primary(status: dict[str, Any] | None) -> bool:
    return status is not None and status.get("role") in PRIMARY_ROLES


def roles(nodes: list[PgNode]) -> dict[str, dict[str, Any] | None]:
    with ThreadPoolExecutor(len(nodes)) as pool:
        return dict(
            zip([n.name for n in nodes], pool.map(PgNode.status_or_none, nodes), strict=True)
        )


@dataclass
class PrimaryWatch:
    """Samples every running node's REST API every SAMPLE_EVERY s, in a thread, and records
    which of them report a primary role (the no-two-primaries check)."""

    nodes: list[PgNode]
    samples: list[tuple[float, dict[str, str | None]]] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> PrimaryWatch:
        self.thread = threading.Thread(target=self._run, name="primary-watch", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        pool = ThreadPoolExecutor(len(self.nodes))
        try:
            while not self.stop_event.is_set():
                t = time.monotonic()
                alive = [n for n in self.nodes if n.running()]
                answers = pool.map(lambda n: n.status_or_none(timeout=1.0), alive)
                seen = dict(zip([n.name for n in alive], answers, strict=True))
                self.samples.append(
                    (t, {k: (v.get("role") if v else None) for k, v in seen.items()})
                )
                self.stop_event.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - t)))
        finally:
            pool.shutdown(wait=False)

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(10)

    def first_primary_after(self, t0: float, among: set[str]) -> tuple[float, str] | None:
        for t, seen in self.samples:
            if t < t0:
                continue
            for name, role in seen.items():
                if name in among and role in PRIMARY_ROLES:
                    return t, name
        return None

    def unanswered(self) -> int:
        """Node-samples where a running node's REST API did not answer in time."""
        return sum(1 for _, seen in self.samples for role in seen.values() if role is None)

    def max_gap(self) -> float:
        times = [t for t, _ in self.samples]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def double_primaries(self) -> list[tuple[float, list[str]]]:
        out = []
        for t, seen in self.samples:
            prim = sorted(n for n, r in seen.items() if r in PRIMARY_ROLES)
            if len(prim) > 1:
                out.append((t, prim))
        return out


def kv_get(agent: Node, key: str) -> dict[str, Any] | None:
    status, body, _ = agent.request("GET", f"/v1/kv/{key}", timeout=3)
    if status == 404:
        return None
    assert status == 200, f"GET /v1/kv/{key}: {status} {body[:200]!r}"
    entries = json.loads(body)
    assert len(entries) == 1, entries
    return dict(entries[0])


def kv_value(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    return b64decode(entry["Value"]).decode() if entry.get("Value") else ""


def session_info(agent: Node, session: str) -> dict[str, Any] | None:
    found = agent.get_json(f"/v1/session/info/{session}")
    return dict(found[0]) if found else None


def wait_cluster_healthy(
    nodes: list[PgNode], timeout: float, what: str
) -> tuple[PgNode, list[PgNode]]:
    """One running primary, the others running replicas that the primary reports streaming."""
    by_name = {n.name: n for n in nodes}

    def healthy() -> tuple[PgNode, list[PgNode]] | None:
        seen = roles(nodes)
        if any(s is None or s.get("state") != "running" for s in seen.values()):
            return None
        primaries = [name for name, s in seen.items() if _is_primary(s)]
        replicas = [name for name, s in seen.items() if s and s.get("role") == "replica"]
        if len(primaries) != 1 or len(replicas) != len(nodes) - 1:
            return None
        primary = seen[primaries[0]]
        assert primary is not None
        streaming = {
            r.get("application_name")
            for r in primary.get("replication") or []
            if r.get("state") == "streaming"
        }
        if not set(replicas) <= streaming:
            return None
        return by_name[primaries[0]], [by_name[r] for r in replicas]

    try:
        return wait_for(healthy, timeout, what, interval=0.5)
    except HarnessError as exc:
        raise HarnessError(f"{exc}; last seen: {roles(nodes)}") from None


# ---- fixtures ----------------------------------------------------------------------------


@dataclass
class Lab:
    cluster: Cluster
    servers: list[Node]
    nodes: list[PgNode]
    root: Path


def _addresses_in_use() -> list[str]:
    """Our addresses that something already listens on (another run of this test, say)."""
    ports = [(ip, p) for ip in SERVER_IPS for p in (8300, 8500)]
    ports += [(ip, p) for ip in HOSTS.values() for p in (8500, PG_PORT, API_PORT)]
    busy = []
    for ip, port in ports:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((ip, port)) == 0:
                busy.append(f"{ip}:{port}")
    return busy


@pytest.fixture
def lab(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Lab]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    busy = _addresses_in_use()
    if busy:
        pytest.fail(f"already in use before the test started (another run?): {busy}")
    # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, and postgres must reach its dirs.
    root = Path(tempfile.mkdtemp(prefix="senate-patroni-"))
    _chown(root)
    servers = [
        cluster.add(
            f"s{i + 1}",
            ip,
            server=True,
            bootstrap_expect=3,
            retry_join=[o for o in SERVER_IPS if o != ip],
        )
        for i, ip in enumerate(SERVER_IPS)
    ]
    nodes = []
    for i, (name, ip) in enumerate(HOSTS.items()):
        agent = cluster.add(f"c{i + 1}", ip, retry_join=SERVER_IPS)
        node_dir = root / name
        node_dir.mkdir(mode=0o700)
        _chown(node_dir)
        nodes.append(PgNode(name, ip, node_dir, agent))
    try:
        yield Lab(cluster, servers, nodes, root)
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.stop()
        failed = any(
            getattr(request.node, f"rep_{w}", None) is not None
            and getattr(request.node, f"rep_{w}").failed
            for w in ("setup", "call")
        )
        if failed:
            for node in nodes:
                sys.stderr.write(f"\n----- patroni {node.name} ({node.ip}) -----\n")
                sys.stderr.write(node.log_tail() + "\n")
        for pid in _pids_working_in(root):  # nothing of ours may outlive the test
            _kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


# ---- the test ----------------------------------------------------------------------------


def test_patroni_on_senate(lab: Lab) -> None:
    c, servers, nodes = lab.cluster, lab.servers, lab.nodes
    t_begin = time.monotonic()
    c.start_all()
    c.wait_http(c.nodes.values(), timeout=30)
    c.wait_leader(servers, timeout=30)
    names = set(c.nodes)
    wait_for(
        lambda: all(n.alive_members() == names for n in c.nodes.values()),
        30,
        "all 6 agents alive in every agent's member list",
        interval=0.2,
    )

    # ---- bootstrap ----------------------------------------------------------------------
    for node in nodes:
        node.write_config()
    t_start = time.monotonic()
    for node in nodes:
        node.start()

    def first_leader() -> str | None:
        for node in nodes:
            assert node.running(), f"patroni {node.name} exited:\n{node.log_tail()}"
        return next((n for n, s in roles(nodes).items() if _is_primary(s)), None)

    elected = wait_for(first_leader, 60, "a Patroni leader", interval=0.25)
    election_s = time.monotonic() - t_start
    primary, replicas = wait_cluster_healthy(nodes, 90, "a primary and two streaming replicas")
    assert primary.name == elected
    healthy_s = time.monotonic() - t_start
    print(
        f"\n[patroni] leader {primary.name} elected {election_s:.1f}s after start; "
        f"both replicas streaming after {healthy_s:.1f}s"
    )
    assert [n.leader_endpoint() for n in nodes].count(200) == 1

    # Patroni's state is in senate: the leader key holds the leader's name under a session that
    # the leader created through its own local agent.
    leader_key = f"service/{SCOPE}/leader"
    entry = kv_get(servers[0], leader_key)
    assert kv_value(entry) == primary.name, entry
    assert entry is not None and entry.get("Session"), f"no session on the leader key: {entry}"
    old_session = str(entry["Session"])
    info = session_info(servers[1], old_session)
    assert info is not None, f"session {old_session} unknown"
    assert info["Node"] == primary.agent.name, info
    assert info["Name"] == f"{SCOPE}-{primary.name}", info
    assert info["Behavior"] == "delete", info
    keys = set(servers[2].get_json(f"/v1/kv/service/{SCOPE}/?keys"))
    for key in ("initialize", "config", "leader", *(f"members/{n.name}" for n in nodes)):
        assert f"service/{SCOPE}/{key}" in keys, (key, keys)
    for node in nodes:
        member = kv_get(servers[0], f"service/{SCOPE}/members/{node.name}")
        assert member is not None and member.get("Session"), member
        assert json.loads(kv_value(member) or "{}").get("role") in (*PRIMARY_ROLES, "replica")
    # register_service: every node registered with its own agent, the leader tagged primary.
    tagged = wait_for(
        lambda: servers[0].get_json(f"/v1/catalog/service/{SCOPE}?tag=primary"),
        30,
        "the primary's service in the catalog",
        interval=0.5,
    )
    assert [(s["Node"], s["ServicePort"]) for s in tagged] == [(primary.agent.name, PG_PORT)]
    wait_for(
        lambda: len(servers[0].get_json(f"/v1/health/service/{SCOPE}?passing")) == 3,
        30,
        "three passing instances of the service",
        interval=0.5,
    )

    psql(primary, "CREATE TABLE ha (id int PRIMARY KEY, note text)")
    psql(primary, "INSERT INTO ha VALUES (1, 'before failover')")
    for replica in replicas:
        wait_row(replica, 1, "before failover")

    # ---- failover -----------------------------------------------------------------------
    old = primary
    postmaster = old.postmaster_pid()
    assert postmaster is not None and _alive(postmaster), "no postmaster for the primary"
    watch = PrimaryWatch(nodes)
    try:
        t_kill = time.monotonic()
        old.kill_patroni()
        _kill(postmaster, signal.SIGKILL)
        watch.start()
        survivors = {n.name for n in replicas}

        # The leader key goes when the old session expires (Consul: 2 x TTL after its last
        # renewal, TTL = ttl / 2), taking the old leader's member key with it (behavior=delete).
        def key_moved() -> float | None:
            value = kv_value(kv_get(servers[0], leader_key))
            return time.monotonic() if value != old.name else None

        t_key = wait_for(key_moved, FAILOVER_BOUND + FAILOVER_SLACK, "the leader key to move", 0.1)
        print(f"[patroni] old leader key released {t_key - t_kill:.1f}s after the kill")

        def new_primary() -> tuple[float, str] | None:
            return watch.first_primary_after(t_kill, survivors)

        t_new, new_name = wait_for(
            new_primary, FAILOVER_BOUND + FAILOVER_SLACK + 5, "a new primary", interval=0.1
        )
        failover_s = t_new - t_kill
        print(
            f"[patroni] failover: {new_name} primary {failover_s:.1f}s after SIGKILL of "
            f"{old.name} (bound ttl + loop_wait = {FAILOVER_BOUND}s, slack {FAILOVER_SLACK}s)"
        )
        assert failover_s <= FAILOVER_BOUND + FAILOVER_SLACK, failover_s
        new = next(n for n in nodes if n.name == new_name)
        other = next(n for n in replicas if n is not new)

        def leader_entry() -> dict[str, Any] | None:
            e = kv_get(servers[0], leader_key)
            return e if kv_value(e) == new.name else None

        entry = wait_for(leader_entry, 10, "the leader key naming the new primary", interval=0.2)
        assert entry["Session"] != old_session
        info = session_info(servers[0], str(entry["Session"]))
        assert info is not None and info["Node"] == new.agent.name, info
        assert session_info(servers[0], old_session) is None, "the dead leader's session lives"
        assert kv_get(servers[0], f"service/{SCOPE}/members/{old.name}") is None

        wait_cluster_healthy([new, other], 60, f"{other.name} streaming from {new.name}")
        psql(new, "INSERT INTO ha VALUES (2, 'after failover')")
        wait_row(other, 2, "after failover")

        # ---- rejoin ---------------------------------------------------------------------
        # The killed postmaster's children notice its death and exit; a leftover one would
        # keep the old shared memory and stop the new postmaster from starting.
        with contextlib.suppress(HarnessError):
            wait_for(lambda: not _pids_working_in(old.data_dir), 10, "the old postgres to exit")
        for pid in _pids_working_in(old.data_dir):
            _kill(pid, signal.SIGKILL)
        t_restart = time.monotonic()
        old.start()
        wait_cluster_healthy(nodes, 90, f"{old.name} back as a streaming replica of {new.name}")
        print(f"[patroni] {old.name} rejoined as a replica {time.monotonic() - t_restart:.1f}s")
        wait_for(
            lambda: psql(old, "SELECT count(*) FROM ha") == "2",
            20,
            f"both rows on the rejoined {old.name}",
            interval=0.25,
        )
        assert _is_primary(new.status())
        # The catalog follows: the new primary's instance is the one tagged primary and passing.
        wait_for(
            lambda: (
                [
                    e["Node"]["Node"]
                    for e in servers[0].get_json(f"/v1/health/service/{SCOPE}?passing&tag=primary")
                ]
                == [new.agent.name]
                and len(servers[0].get_json(f"/v1/health/service/{SCOPE}?passing")) == 3
            ),
            30,
            f"the catalog to show {new.name} as the passing primary and 3 passing instances",
            interval=0.5,
        )
    finally:
        watch.stop()

    doubles = watch.double_primaries()
    print(
        f"[patroni] {len(watch.samples)} samples over {watch.samples[-1][0] - t_kill:.1f}s "
        f"(largest gap {watch.max_gap():.2f}s, {watch.unanswered()} unanswered node-samples), "
        f"two primaries in {len(doubles)}; whole test {time.monotonic() - t_begin:.1f}s"
    )
    assert not doubles, f"two primaries at once: {doubles[:5]}"
    assert watch.max_gap() < 3 * SAMPLE_EVERY, "the watcher did not sample often enough"
