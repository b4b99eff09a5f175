"""provision over real SSH hosts (network namespaces with their own sshd and filesystem).

The tests share one set of hosts and run in file order, each starting from the state the
previous one left (as an operator's session would): up, up again, rolling upgrade under write
load, a server killed mid-upgrade, a second datacenter over WAN, down. The datacenter is locked
down as inventories/prod.yml asks (tls: generate, acl: bootstrap, encrypt: generate): anonymous
requests are refused everywhere, verify/status/upgrade use the management token and HTTPS, and
the writes during the upgrade carry a token of their own.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from netns_hosts import NO_SUDO_USER, SUDO_USER, HostLab, write_inventory
from rich.console import Console

from agent.codec import RPCType, encode_frame
from provision import cli, remote, secure
from provision.artifact import Artifact
from provision.hosts import connect
from provision.inventory import Inventory, load_inventory
from provision.report import Reporter
from provision.up import (
    GateFailed,
    ProvisionFailed,
    Session,
    UpResult,
    down,
    preflight,
    verify_only,
    verify_until,
)
from provision.up import up as provision_up
from provision.upgrade import upgrade
from provision.verify import compare, observe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@dataclass
class Events:
    """Progress events, as the reporter saw them (node, step, status)."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, host: str, step: str, status: str) -> None:
        with self.lock:
            self.seen.append((host, step, status))

    def nodes(self, step: str, status: str = "ok") -> list[str]:
        return [h for h, s, st in self.seen if s == step and st == status]


def reporter(events: Callable[[str, str, str], None] | None = None) -> Reporter:
    return Reporter(Console(highlight=False, width=140), on_event=events)


def up(inv: Inventory, rep: Reporter, artifact: Artifact) -> UpResult:
    """provision's up; a failed run prints every host's error (the agent's log tail) first."""
    try:
        return provision_up(inv, rep, artifact=artifact)
    except ProvisionFailed as exc:
        rep.errors(exc.errors)
        raise


@pytest.fixture(scope="module")
def inv_path(lab: HostLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_inventory(
        tmp_path_factory.mktemp("inv") / "e2e.yml", lab, {"dc1": (3, 2)}, secure=True
    )


@pytest.fixture(scope="module")
def dc1(inv_path: Path, base_artifact: Artifact) -> Iterator[Inventory]:
    inv = load_inventory(inv_path)
    result = up(inv, reporter(), artifact=base_artifact)
    assert result.problems == [], result.problems
    assert sorted(result.started) == ["c1", "c2", "s1", "s2", "s3"]
    yield inv


def management(inv: Inventory) -> str:
    return secure.acl_token_path(inv.path).read_text().strip()


def api(
    addr: str, method: str, path: str, token: str | None = None, body: object = None
) -> tuple[int, str]:
    """One request to a node's HTTP port (8500) from the controller."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{addr}:8500{path}", data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


@pytest.fixture(scope="module")
def writer_token(dc1: Inventory) -> str:
    """A token for the load of the upgrade test: it may write e2e/ and nothing else."""
    server = dc1.servers()[0].host
    rules = 'key_prefix "e2e/" { policy = "write" }'
    status, body = api(
        server, "PUT", "/v1/acl/policy", management(dc1), {"Name": "e2e-writer", "Rules": rules}
    )
    assert status == 200, body
    status, body = api(
        server, "PUT", "/v1/acl/token", management(dc1), {"Policies": [{"Name": "e2e-writer"}]}
    )
    assert status == 200, body
    secret: str = json.loads(body)["SecretID"]
    return secret


def leader_name(inv: Inventory) -> str:
    s = Session.open(inv, reporter())
    try:
        from provision.health import leader_of

        views = observe(inv, s.hosts, 30)
        lead = leader_of(inv, views[0])
        assert lead is not None
        return lead.name
    finally:
        s.close()


def current_releases(inv: Inventory) -> dict[str, str | None]:
    s = Session.open(inv, reporter())
    try:
        return {n: st.current for n, st in preflight(s).items()}
    finally:
        s.close()


def test_up_three_servers_two_clients_verifies(
    dc1: Inventory, base_artifact: Artifact, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify_only(dc1, reporter()) == []
    # autopilot's word on the datacenter: three healthy voters tolerate one failure
    out = capsys.readouterr().out
    assert re.search(r"dc1\s+autopilot\s+ok\s+failure tolerance 1", out), out[-2000:]
    assert set(current_releases(dc1).values()) == {base_artifact.release}
    # the CLI agrees, with exit status 0
    assert cli.main(["verify", str(dc1.path)]) == 0


def test_second_up_changes_nothing(dc1: Inventory, base_artifact: Artifact) -> None:
    events = Events()
    result = up(dc1, reporter(events), artifact=base_artifact)
    assert result.problems == []
    assert result.changed == [] and result.started == [] and result.restarted == []
    assert not [e for e in events.seen if e[1] in ("install", "start", "restart", "join")]
    # the ACLs were bootstrapped by the first `up`: this one finds nothing to change
    assert ("dc1", "acl", "ok") in events.seen


def test_the_datacenter_is_locked_down(dc1: Inventory) -> None:
    """Anonymous requests are refused on every host; the management token and HTTPS with a
    certificate of the inventory's CA work; the secrets are private, beside the inventory and
    on the hosts."""
    token = management(dc1)
    for n in dc1.nodes:
        for method, path in (("PUT", "/v1/kv/e2e/anonymous"), ("GET", "/v1/agent/self")):
            status, body = api(n.host, method, path, body="x" if method == "PUT" else None)
            assert (status, body.split(":")[0]) == (403, "Permission denied"), (n.name, path)
        assert api(n.host, "GET", "/v1/agent/self", token)[0] == 200, n.name
    # HTTPS on 8501 wants a client certificate: the CLI's from <stem>.tls/ is served
    d = secure.tls_dir(dc1.path)
    with_cert = ssl.create_default_context(cafile=str(d / "ca.pem"))
    with_cert.load_cert_chain(str(d / "cli.pem"), str(d / "cli-key.pem"))
    without = ssl.create_default_context(cafile=str(d / "ca.pem"))
    for n in dc1.nodes:
        url = f"https://{n.host}:8501/v1/status/leader"  # the node's certificate names its IP
        with urllib.request.urlopen(url, context=with_cert, timeout=10) as r:
            assert r.status == 200
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(url, context=without, timeout=10).close()
    for secret in (secure.acl_token_path(dc1.path), secure.agent_tokens_path(dc1.path)):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "ca-key.pem").stat().st_mode) == 0o600
    host = connect(dc1.node("s1"))
    try:
        res = host.run(
            "stat -c '%n %a' /opt/senate/tls/* /opt/senate/etc/senate.json",
            step="check",
            timeout=10,
        )
    finally:
        host.close()
    modes = dict(line.split() for line in res.stdout.splitlines())
    assert modes == {
        "/opt/senate/tls/agent-key.pem": "600",
        "/opt/senate/tls/agent.pem": "644",
        "/opt/senate/tls/ca.pem": "644",
        "/opt/senate/etc/senate.json": "640",
    }


def test_server_rpc_refuses_a_plain_connection(dc1: Inventory) -> None:
    """verify_incoming on internal RPC: a plain (not TLS) RPC connection to 8300 is closed
    unanswered."""
    s1 = dc1.node("s1")
    request = bytes([RPCType.CONSUL]) + encode_frame(
        {"Seq": 1, "Method": "Status.Ping", "Args": {}}
    )
    with socket.create_connection((s1.host, 8300), timeout=10) as sock:
        sock.sendall(request)
        try:
            answer = sock.recv(4096)
        except (ConnectionError, TimeoutError):
            answer = b""
    assert answer == b"", "a plain RPC connection was answered"


def test_status_table(dc1: Inventory, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", str(dc1.path)]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert len(rows) == 5
    assert sum("leader" in r for r in rows) == 1 and sum("follower" in r for r in rows) == 2
    assert all(" yes " in r and "alive" in r for r in rows)


class KVWriter:
    """Writes KV through the clients, one write at a time, until stopped (bounded in count and
    time), always through a client that is not being restarted (`avoid`, fed by the upgrade's
    progress events). A write that a node answers with anything but `true`, or does not answer
    in time, is a failed write. A connection the node drops before answering (the restart
    raced the request) is retried, same key and value (a KV put is idempotent), on the other
    client, and counted in `retried`."""

    def __init__(
        self, addrs: list[str], token: str, max_writes: int = 20000, max_seconds: float = 240
    ) -> None:
        self.addrs = addrs
        self.token = token
        self.avoid: set[str] = set()
        self.max_writes = max_writes
        self.deadline = time.monotonic() + max_seconds
        self.written: list[int] = []
        self.failed: list[str] = []
        self.retried = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> KVWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _put(self, addr: str, i: int) -> bool | None:
        """True: acknowledged; False: failed; None: connection dropped or refused."""
        req = urllib.request.Request(
            f"http://{addr}:8500/v1/kv/e2e/upgrade/{i:06d}", data=str(i).encode(), method="PUT"
        )
        req.add_header("X-Consul-Token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = r.read().decode().strip()
                if r.status == 200 and body == "true":
                    return True
                self.failed.append(f"write {i} via {addr}: HTTP {r.status} {body}")
                return False
        except urllib.error.HTTPError as e:
            self.failed.append(f"write {i} via {addr}: HTTP {e.code} {e.read()[:200]!r}")
            return False
        except urllib.error.URLError as e:
            if isinstance(e.reason, ConnectionError):
                return None
            self.failed.append(f"write {i} via {addr}: {e.reason}")
            return False
        except ConnectionError:  # reset, broken pipe, remote disconnected
            return None
        except OSError as e:
            self.failed.append(f"write {i} via {addr}: {e}")
            return False

    def _run(self) -> None:
        i = 0
        k = 0
        while not self._stop.is_set() and i < self.max_writes and time.monotonic() < self.deadline:
            for _ in range(200):
                usable = [a for a in self.addrs if a not in self.avoid] or self.addrs
                outcome = self._put(usable[k % len(usable)], i)
                if outcome is None:
                    self.retried += 1
                    k += 1
                    self._stop.wait(0.05)
                    continue
                if outcome:
                    self.written.append(i)
                break
            i += 1
            self._stop.wait(0.02)  # pace: about 50 writes/s, load without starving the box

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def test_upgrade_rolls_in_order_while_writes_keep_succeeding(
    dc1: Inventory, newer_artifact: Artifact, lab: HostLab, writer_token: str
) -> None:
    leader = leader_name(dc1)
    followers = sorted(n.name for n in dc1.servers() if n.name != leader)
    order: list[str] = []
    clients = [n.host for n in dc1.clients()]
    with KVWriter(clients, writer_token) as writer:

        def steer(host: str, step: str, status: str) -> None:
            # the writer moves off a client before it restarts, back once it passed its gate
            if host in ("c1", "c2"):
                addr = dc1.node(host).host
                if step == "restart" and status == "...":
                    writer.avoid.add(addr)
                elif step == "health gate" and status == "ok":
                    writer.avoid.discard(addr)

        result = upgrade(dc1, reporter(steer), newer_artifact, on_step=order.append)
        assert writer.running, "the writer stopped before the upgrade ended"
    assert order == [*followers, leader, "c1", "c2"]
    assert result.upgraded == order
    assert set(current_releases(dc1).values()) == {newer_artifact.release}
    print(f"KV writes: {len(writer.written)} acknowledged, {writer.retried} retried")
    assert writer.failed == [], writer.failed[:5]
    assert len(writer.written) >= 20
    # every acknowledged write is there, read through a server
    status, body = api(dc1.servers()[0].host, "GET", "/v1/kv/e2e/upgrade/?keys", writer_token)
    assert status == 200, body
    keys = set(json.loads(body))
    missing = [i for i in writer.written if f"e2e/upgrade/{i:06d}" not in keys]
    assert missing == []
    assert verify_only(dc1, reporter()) == []


def test_server_killed_mid_upgrade_stops_with_a_clear_report(
    dc1: Inventory, base_artifact: Artifact, newer_artifact: Artifact
) -> None:
    leader = leader_name(dc1)
    followers = sorted(n.name for n in dc1.servers() if n.name != leader)
    victim = leader

    def kill_after_first(node: str) -> None:
        if node == followers[0]:
            host = connect(dc1.node(victim))
            try:
                remote.kill_agent(host, 10)
            finally:
                host.close()

    with pytest.raises(GateFailed) as info:
        upgrade(
            dc1, reporter(), base_artifact, rollback=True, on_step=kill_after_first, gate_timeout=10
        )
    failed = info.value
    assert failed.node == followers[1]
    assert failed.done == [followers[0]]
    # autopilot names the killed server: unhealthy while the new leader still lists it, gone
    # from its servers once cleanup_dead_servers has removed it from raft (gossip: failed)
    named = (f"dc1: server {victim} is unhealthy (", f"dc1: server {victim} is not among")
    assert any(p.startswith(named) for p in failed.problems), failed.problems
    assert f"health gate failed after restarting {followers[1]}" in str(failed)
    # --rollback pointed the node that failed its gate back at the release it ran before
    releases = current_releases(dc1)
    assert releases[followers[1]] == newer_artifact.release
    assert releases[followers[0]] == base_artifact.release
    # `up` brings the killed server back and every node to one release again: the newer one,
    # which the clients still run (so only the two switched servers restart)
    result = up(dc1, reporter(), artifact=newer_artifact)
    assert result.problems == []
    assert result.started == [victim]
    assert result.restarted == [followers[0]]


def test_two_datacenters_join_over_wan(
    dc1: Inventory, inv_path: Path, lab: HostLab, newer_artifact: Artifact
) -> None:
    two = write_inventory(
        inv_path.with_name("e2e-two.yml"), lab, {"dc1": (3, 2), "dc2": (1, 0)}, secure=True
    )
    copy_secrets(inv_path, two)
    inv = load_inventory(two)
    events = Events()
    result = up(inv, reporter(events), artifact=newer_artifact)
    assert result.problems == []
    assert result.started == ["t1"]
    # dc1's servers got retry_join_wan: they restart, one at a time; the clients do not
    assert sorted(result.restarted) == ["s1", "s2", "s3"]
    assert verify_only(inv, reporter()) == []
    # dc2 enforces the primary's ACLs: anonymous refused, the management token served
    t1 = inv.node("t1").host
    assert api(t1, "PUT", "/v1/kv/e2e/dc2", body="x")[0] == 403
    status, body = api(t1, "PUT", "/v1/kv/e2e/dc2", management(inv), "x")
    assert (status, body.strip()) == (200, "true")


def copy_secrets(src: Path, dst: Path) -> None:
    """The secrets beside `src` beside `dst` too: one datacenter's CA and tokens, as an operator
    keeps them with an inventory that grows a datacenter under a new name."""
    for make in (secure.tls_dir, secure.acl_token_path, secure.agent_tokens_path):
        if make(src).is_dir():
            shutil.copytree(make(src), make(dst), dirs_exist_ok=True)
        else:
            shutil.copy2(make(src), make(dst))
    shutil.copy2(src.with_name(f"{src.stem}.gossip-key"), dst.with_name(f"{dst.stem}.gossip-key"))


def test_verify_reports_a_partitioned_client_until_it_heals(dc1: Inventory, lab: HostLab) -> None:
    victim = dc1.node("c1")
    s = Session.open(dc1, reporter())
    try:
        lab.partition(victim.host)
        try:
            deadline = time.monotonic() + 45
            problems: list[str] = []
            while time.monotonic() < deadline:
                problems = compare(dc1, observe(dc1, s.hosts, 20))
                if problems:
                    break
                time.sleep(0.5)
            assert problems in (
                ["dc1: c1 is failed, want alive"],
                ["dc1: c1 is suspect, want alive"],
            )
        finally:
            lab.heal(victim.host)
        assert verify_until(s, 60) == []
    finally:
        s.close()


def test_a_server_replaced_in_the_inventory_is_one_up(
    dc1: Inventory, inv_path: Path, lab: HostLab, newer_artifact: Artifact
) -> None:
    """s3 replaced by s4 on a new host: one `up` starts s4 (a non-voter autopilot promotes),
    then stops s3, which autopilot's cleanup_dead_servers removes from raft."""
    two = inv_path.with_name("e2e-two.yml")
    replaced = inv_path.with_name("e2e-replaced.yml")
    old, new = (
        load_inventory(two).node("s3").host,
        lab.addresses[6],
    )  # the lab's seventh host, free until now
    text = two.read_text()
    line = f"- {{name: s3, host: {old}, agent: {{client_addr: {old}}}}}"
    assert line in text
    replaced.write_text(
        text.replace(line, f"- {{name: s4, host: {new}, agent: {{client_addr: {new}}}}}")
    )
    copy_secrets(two, replaced)
    inv = load_inventory(replaced)
    events = Events()
    result = up(inv, reporter(events), artifact=newer_artifact)
    assert result.started == ["s4"]
    assert events.nodes("retire") == ["s3"]
    assert result.problems == []
    # autopilot: s1, s2, s4 healthy voters, s3 gone from raft
    status, body = api(inv.node("s1").host, "GET", "/v1/operator/autopilot/health", management(inv))
    assert status == 200, body
    servers = {s["Name"]: s for s in json.loads(body)["Servers"]}
    assert sorted(servers) == ["s1", "s2", "s4"], body
    assert all(s["Voter"] and s["Healthy"] for s in servers.values()), body
    # s3's agent is stopped
    assert [p for p in lab.pids(old) if "senate agent" in _cmdline(p)] == []


def test_down_leaves_nothing_running(dc1: Inventory, inv_path: Path, lab: HostLab) -> None:
    two = load_inventory(inv_path.with_name("e2e-two.yml"))
    down(two, reporter(), purge=True)
    replaced = inv_path.with_name("e2e-replaced.yml")
    if replaced.exists():  # the replacement test's new server
        down(load_inventory(replaced), reporter(), purge=True)
    for n in two.nodes:
        host = connect(n)
        try:
            res = host.run(
                "ls /opt/senate /var/lib/senate 2>&1; pgrep -f 'senate agent' || true",
                step="check",
                timeout=10,
                check=False,
            )
        finally:
            host.close()
        assert "No such file" in res.stdout and "senate agent" not in res.stdout
    for a in lab.addresses:
        leftover = [p for p in lab.pids(a) if _cmdline(p) and "sshd" not in _cmdline(p)]
        assert leftover == [], [(p, _cmdline(p)) for p in leftover]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_unreachable_host_fails_clearly(
    lab: HostLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "bad.yml"
    p.write_text(
        f"defaults: {{ssh: {{user: root, key_file: {lab.key_file}, connect_timeout: 2}}}}\n"
        "datacenters:\n  dc1:\n    servers: [{name: ghost, host: 10.77.0.99}]\n"
    )
    assert cli.main(["plan", str(p)]) == 1
    out = capsys.readouterr().out
    assert "1 host(s) failed:" in out and "cannot reach root@10.77.0.99:22 over SSH" in out


def test_jump_host(lab: HostLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hosts reached through a jump host (the first lab host) answer the preflight."""
    first, *others = lab.addresses[:3]
    p = tmp_path / "jump.yml"
    servers = ", ".join(f"{{name: j{i}, host: {a}}}" for i, a in enumerate(others))
    p.write_text(
        f"defaults: {{ssh: {{user: root, key_file: {lab.key_file}, jump_host: 'root@{first}:22'}}}}\n"
        f"datacenters:\n  dc1:\n    servers: [{servers}]\n"
    )
    assert cli.main(["plan", str(p)]) == 0
    out = capsys.readouterr().out
    assert out.count("preflight        ok") == 2


def test_non_root_ssh_user_runs_everything_through_sudo(
    lab: HostLab, tmp_path: Path, base_artifact: Artifact, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hosts reached as a non-root user: every step runs under `sudo -n`, so the release and
    the agent belong to root, and the datacenter verifies; a user who may not sudo fails the
    preflight with what sudo said, and nothing is installed."""
    if lab.users_dir is None:
        pytest.skip("sudo is not installed (scripts/test.sh installs it as root)")
    a, b = lab.addresses[:2]

    def inventory(user: str, name: str) -> Path:
        p = tmp_path / name
        p.write_text(
            f"defaults: {{ssh: {{user: {user}, key_file: {lab.key_file}, connect_timeout: 5}},"
            " install_dir: /opt/senate, data_dir: /var/lib/senate, step_timeout: 60}\n"
            f"datacenters:\n  dc1:\n    servers: [{{name: u1, host: {a}}}]\n"
            f"    clients: [{{name: u2, host: {b}}}]\n"
        )
        return p

    refused = inventory(NO_SUDO_USER, "nosudo.yml")
    assert cli.main(["up", str(refused)]) == 1
    out = capsys.readouterr().out
    assert f"{NO_SUDO_USER}@{a} cannot run commands as root with `sudo -n`" in out
    assert "sudo: a password is required" in out

    inv = load_inventory(inventory(SUDO_USER, "deploy.yml"))
    try:
        result = up(inv, reporter(), artifact=base_artifact)
        assert result.problems == [] and sorted(result.started) == ["u1", "u2"]
        for n in inv.nodes:
            host = connect(n)
            try:
                res = host.run(
                    "whoami; stat -c %U /opt/senate/current/bin/senate /var/lib/senate;"
                    " ps -o user= -p $(cat /opt/senate/run/senate.pid)",
                    step="check",
                    timeout=10,
                )
            finally:
                host.close()
            assert res.stdout.split() == ["root"] * 4, (n.name, res.stdout)
    finally:
        down(inv, reporter(), purge=True)
    for addr in (a, b):
        leftover = [p for p in lab.pids(addr) if _cmdline(p) and "sshd" not in _cmdline(p)]
        assert leftover == [], [(p, _cmdline(p)) for p in leftover]
