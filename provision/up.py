"""`provision up`, `status` and `down`: bring the hosts to what the inventory says, report on
them, take them away.

`up` runs in phases, each over every host in parallel (bounded by `parallel`) and each stopping
the run when a host fails: preflight, artifact, plan, install, write files, start servers and
join them, wait for a leader (with `acl: bootstrap`, then the primary's ACLs: provision.acl),
WAN join, start clients, rolling restarts of changed running nodes
(servers one at a time, followers first, leader last, then clients), verify. A converged datacenter gives a
plan of nothing everywhere, so a second `up` changes and restarts nothing.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.table import Table

from provision import acl, health, remote
from provision.artifact import Artifact, build_artifact
from provision.hosts import Host, HostError, connect, run_parallel
from provision.inventory import Inventory, Node
from provision.plan import Action, NodePlan, plan_node
from provision.remote import HostState
from provision.render import Rendered, render_node
from provision.report import Reporter
from provision.retire import retire_removed_servers
from provision.rolling import PlanRefused, Role, plan_rolling
from provision.verify import DCView, compare, observe, wan_problems

T = TypeVar("T")

AGENT_START_TIMEOUT = 60.0
LEADER_TIMEOUT = 90.0
GATE_TIMEOUT = 90.0
VERIFY_TIMEOUT = 90.0


class ProvisionFailed(Exception):
    """A run stopped; `errors` maps each failing host (or datacenter) to what went wrong."""

    def __init__(self, message: str, errors: dict[str, BaseException] | None = None) -> None:
        self.errors = errors or {}
        super().__init__(message)


@dataclass
class Session:
    """The inventory, one connection per node, and where progress goes."""

    inv: Inventory
    reporter: Reporter
    hosts: dict[str, Host] = field(default_factory=dict)

    @classmethod
    def open(cls, inv: Inventory, reporter: Reporter) -> Session:
        return cls(inv, reporter, {n.name: connect(n) for n in inv.nodes})

    def close(self) -> None:
        for h in self.hosts.values():
            h.close()

    @property
    def timeout(self) -> float:
        return self.inv.step_timeout

    def step(
        self,
        name: str,
        step: str,
        fn: Callable[[], T],
        detail: Callable[[T], str] | None = None,
    ) -> T:
        """Run `fn` as `name`'s `step`, with its progress line: ..., then ok or failed."""
        self.reporter.line(name, step, "...")
        try:
            value = fn()
        except Exception as exc:
            self.reporter.line(name, step, "failed", str(exc).splitlines()[0])
            raise
        self.reporter.line(name, step, "ok", detail(value) if detail else "")
        return value

    def each(
        self,
        nodes: Sequence[Node],
        step: str,
        fn: Callable[[Host], T],
        detail: Callable[[T], str] | None = None,
        fail: bool = True,
    ) -> dict[str, T]:
        """Run `fn` on every node's host in parallel, a progress line per host; raise
        ProvisionFailed naming every failed host if any failed (when `fail`)."""

        def one(node: Node) -> T:
            return self.step(node.name, step, lambda: fn(self.hosts[node.name]), detail)

        outcomes = run_parallel(list(nodes), one, self.inv.parallel)
        errors = {o.node.name: o.error for o in outcomes if o.error is not None}
        if errors and fail:
            raise ProvisionFailed(f"{step} failed on {len(errors)} host(s)", errors)
        return {o.node.name: o.value for o in outcomes if o.error is None}  # type: ignore[misc]


def preflight(s: Session) -> dict[str, HostState]:
    def check(host: Host) -> HostState:
        state = remote.probe(host, s.timeout)
        problems = remote.preflight_problems(host.node, state)
        if problems:
            raise HostError(host.node.name, "preflight: " + "; ".join(problems))
        return state

    def describe(st: HostState) -> str:
        py = ".".join(map(str, st.python))
        return f"python {py}, {'running ' + (st.current or '?') if st.running else 'not running'}"

    return s.each(s.inv.nodes, "preflight", check, describe)


def render_all(
    s: Session, states: dict[str, HostState] | None, template_dir: Path | None
) -> dict[str, Rendered]:
    out = {}
    for n in s.inv.nodes:
        service = (
            states[n.name].service(n)
            if states
            else ("launcher" if n.service == "auto" else n.service)
        )
        out[n.name] = render_node(s.inv, n, service, template_dir)
    return out


def make_plans(
    inv: Inventory,
    states: dict[str, HostState] | None,
    rendered: dict[str, Rendered],
    release: str,
) -> dict[str, NodePlan]:
    return {
        n.name: plan_node(inv, n, states[n.name] if states else None, rendered[n.name], release)
        for n in inv.nodes
    }


def print_plan(reporter: Reporter, plans: dict[str, NodePlan], diffs: bool = True) -> None:
    t = Table(title="plan", show_lines=False)
    for col in ("Node", "DC", "Role", "Install", "Files", "Agent", "Joins"):
        t.add_column(col)
    for p in plans.values():
        t.add_row(
            p.node.name,
            p.node.datacenter,
            p.node.role,
            p.install or "-",
            ", ".join(f.rsplit("/", 1)[-1] for f in p.files) or "-",
            p.action.value,
            ", ".join(p.joins) or "-",
        )
    reporter.table(t)
    if diffs:
        for p in plans.values():
            if p.config_diff and p.observed and p.node.name:
                reporter.info(p.config_diff)
    changed = [p.node.name for p in plans.values() if p.changes]
    reporter.info(
        f"{len(changed)} of {len(plans)} node(s) to change"
        + (": " + ", ".join(changed) if changed else "")
    )


class _ServersUp:
    """Opens once each of `count` servers of a datacenter is done with a step, or one of them
    failed at it. The datacenter's clients wait on two: the servers' installs (the servers are
    the critical path: they start, are joined and elect a leader while the clients install, so
    they have the controller's uplink and, where hosts share CPUs, the CPUs first) and the
    servers' start (so that a client's first retry_join finds a server listening; a failed one
    waits retry_interval, 30 s, to retry)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.failed: str | None = None
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self.opened = threading.Event()
        if count == 0:
            self.opened.set()

    def done(self, node: str, ok: bool) -> None:
        """`node` is done (once counts; later calls for it are ignored)."""
        with self._lock:
            if node in self._done:
                return
            self._done.add(node)
            if not ok and self.failed is None:
                self.failed = node
            if self.failed is not None or len(self._done) >= self.count:
                self.opened.set()


def rollout(
    s: Session,
    plans: dict[str, NodePlan],
    states: dict[str, HostState],
    rendered: dict[str, Rendered],
    artifact: Artifact,
) -> list[str]:
    """Install where the release is missing and start the nodes that are not running, every host
    in its own pipeline: upload, install, configure, start and wait until it answers, with no
    barrier between hosts. Servers go first; a client uploads and installs once its
    datacenter's servers have installed, and starts once they have started. While the clients
    install and start, the servers of each datacenter are joined and a leader is waited for,
    then datacenters are joined over WAN.
    Returns the nodes started; raises ProvisionFailed naming every host (or datacenter) that
    failed, after every host's pipeline has ended."""
    inv = s.inv
    release = artifact.release
    install_on = {n for n, p in plans.items() if p.install and release not in states[n].releases}
    start_on = {n for n, p in plans.items() if p.action is Action.START}
    # Servers first: a client's worker waits for its servers, which must not queue behind it.
    nodes = sorted(
        (n for n in inv.nodes if n.name in install_on | start_on), key=lambda n: not n.is_server
    )
    gates = {
        dc: _ServersUp(sum(n.name in start_on for n in inv.servers(dc))) for dc in inv.datacenters
    }
    installed = {
        dc: _ServersUp(sum(n.name in install_on for n in inv.servers(dc))) for dc in inv.datacenters
    }
    # A client waits at most as long as its servers' own steps could take.
    gate_wait = 2 * (s.timeout + AGENT_START_TIMEOUT)

    def pipeline(node: Node) -> None:
        host = s.hosts[node.name]
        name = node.name
        configure = remote.configure_cmds(node, release, rendered[name])
        starts = name in start_on
        ok = False
        try:
            if name in install_on:
                if not node.is_server:
                    installed[node.datacenter].opened.wait(gate_wait)
                try:
                    s.step(
                        name,
                        "install",
                        lambda: remote.install(
                            host,
                            artifact,
                            s.timeout,
                            states[name].executable,
                            [p for p in configure if isinstance(p, str)] if starts else [],
                        ),
                        lambda _: release,
                    )
                finally:
                    if node.is_server:  # also when it failed: its clients go on to install
                        installed[node.datacenter].done(name, ok=True)
                # what reads stdin (the files) cannot follow the wheelhouse on install's
                configure = [p for p in configure if not isinstance(p, str)]
            if not starts:
                ok = True
                return
            gate = gates[node.datacenter]
            if not node.is_server:
                if not gate.opened.wait(gate_wait):
                    raise HostError(name, f"not started: {node.datacenter}'s servers did not start")
                if gate.failed is not None:
                    raise HostError(
                        name, f"not started: server {gate.failed} of {node.datacenter} failed"
                    )
            s.step(
                name,
                "start",
                lambda: remote.start_agent(
                    host, "start", AGENT_START_TIMEOUT, s.timeout, configure
                ),
            )
            ok = True
        finally:
            if starts and node.is_server:
                gates[node.datacenter].done(name, ok)

    errors: dict[str, BaseException] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(inv.parallel, len(nodes) or 1)))
    try:
        futures = {n.name: pool.submit(pipeline, n) for n in nodes}
        try:
            _form_datacenters(s, gates, start_on, gate_wait)
        except ProvisionFailed as exc:
            errors.update(exc.errors)
    finally:
        pool.shutdown(wait=True)
    for name, fut in futures.items():
        err = fut.exception()
        if err is not None:
            errors[name] = err
    if errors:
        raise ProvisionFailed(f"up failed on {len(errors)} host(s) or datacenter(s)", errors)
    return [n.name for n in nodes if n.name in start_on]


def _form_datacenters(
    s: Session, gates: dict[str, _ServersUp], start_on: set[str], gate_wait: float
) -> None:
    """Per datacenter, once its servers have started: join them, wait for a leader; then join
    the datacenters over WAN."""
    inv = s.inv
    for dc in inv.datacenters:
        if not gates[dc].opened.wait(gate_wait):
            err = HostError(dc, f"{dc}: its servers did not start within {gate_wait:.0f}s")
            raise ProvisionFailed(str(err), {dc: err})
        if gates[dc].failed is not None:
            return  # the server's own error says why
        servers = inv.servers(dc)
        fresh = [n for n in servers if n.name in start_on]
        if fresh:
            first = fresh[0]
            others = [x.serf_lan_addr for x in servers if x.name != first.name]
            if others:
                join(s, first, others)
        s.reporter.line(dc, "leader", "...")
        try:
            leader, leader_name = health.wait_leader(inv, s.hosts, dc, LEADER_TIMEOUT, s.timeout)
        except HostError as exc:
            s.reporter.line(dc, "leader", "failed")
            raise ProvisionFailed(str(exc), {dc: exc}) from None
        s.reporter.line(dc, "leader", "ok", leader_name)
        if dc == inv.datacenters[0] and leader.acl:
            _acls(s, leader)

    # Datacenters join over WAN as soon as each has a leader, before any rolling restart.
    if len(inv.datacenters) > 1 and wan_problems(inv, s.hosts, s.timeout):
        for dc in inv.datacenters:
            first = inv.servers(dc)[0]
            others = [
                f"{x.advertise}:{x.port('serf_wan')}" for x in inv.servers() if x.datacenter != dc
            ]
            join(s, first, others, wan=True)


def _acls(s: Session, leader: Node) -> None:
    """Bootstrap the ACLs once and make the agents' tokens (provision.acl)."""
    dc = leader.datacenter
    try:
        s.step(
            dc,
            "acl",
            lambda: acl.ensure_acls(s.inv, s.hosts, leader, LEADER_TIMEOUT, s.timeout),
            lambda r: r.summary(),
        )
    except HostError as exc:
        raise ProvisionFailed(str(exc), {dc: exc}) from None


def join(s: Session, node: Node, addrs: Sequence[str], wan: bool = False) -> None:
    flag = "-wan " if wan else ""
    args = " ".join(shlex.quote(a) for a in addrs)
    s.reporter.line(node.name, "join -wan" if wan else "join", "...", " ".join(addrs))
    try:
        remote.senate(s.hosts[node.name], f"join {flag}-rpc-addr={node.rpc_addr} {args}", s.timeout)
    except HostError as exc:
        s.reporter.line(node.name, "join", "failed")
        raise ProvisionFailed("join failed", {node.name: exc}) from None
    s.reporter.line(node.name, "join -wan" if wan else "join", "ok")


def rolling_restart(
    s: Session,
    pending: Mapping[str, Callable[[Host], None]],
    serial: int = 1,
    on_step: Callable[[str], None] | None = None,
    gate_timeout: float = GATE_TIMEOUT,
) -> list[str]:
    """Restart the `pending` nodes (name -> what to do to it before the restart) in the rolling
    order; after each step the health gate must pass. Returns the nodes restarted, in order."""
    if not pending:
        return []
    views = observe(s.inv, s.hosts, s.timeout)
    plan = plan_rolling(health.observed_nodes(s.inv, views), set(pending), serial)
    s.reporter.info("rolling order: " + " -> ".join(plan.order))
    done: list[str] = []
    for step in plan.steps:
        nodes = [s.inv.node(n) for n in step.nodes]
        # a server's gate waits for the failure tolerance its datacenter has now
        before = (
            health.failure_tolerance(s.inv, s.hosts, step.datacenter, s.timeout)
            if step.role is Role.SERVER and step.datacenter is not None
            else None
        )
        if step.transfer_leadership:
            msg = health.transfer_leadership(s.hosts[nodes[0].name], s.timeout)
            s.reporter.line(nodes[0].name, "leadership", "ok", msg)

        def restart(host: Host) -> None:
            pending[host.node.name](host)
            remote.start_agent(host, "restart", AGENT_START_TIMEOUT, s.timeout)

        s.each(nodes, "restart", restart)
        for node in nodes:
            s.reporter.line(node.name, "health gate", "...")
            problems = health.gate(s.inv, s.hosts, node, gate_timeout, s.timeout, before)
            if problems:
                s.reporter.line(node.name, "health gate", "failed", problems[0])
                raise GateFailed(node.name, problems, done)
            s.reporter.line(node.name, "health gate", "ok")
            done.append(node.name)
            if on_step is not None:
                on_step(node.name)
    return done


class GateFailed(ProvisionFailed):
    def __init__(self, node: str, problems: list[str], done: list[str]) -> None:
        self.node = node
        self.problems = problems
        self.done = done
        super().__init__(
            f"health gate failed after restarting {node}: " + "; ".join(problems),
            {node: HostError(node, "health gate: " + "; ".join(problems))},
        )


@dataclass
class UpResult:
    plans: dict[str, NodePlan]
    started: list[str]
    restarted: list[str]
    problems: list[str]

    @property
    def changed(self) -> list[str]:
        return [n for n, p in self.plans.items() if p.changes]


def up(
    inv: Inventory,
    reporter: Reporter,
    source: Path | None = None,
    artifact: Artifact | None = None,
    template_dir: Path | None = None,
    verify: bool = True,
) -> UpResult:
    for w in inv.warnings:
        reporter.warn(w)
    s = Session.open(inv, reporter)
    try:
        return _up(s, source, artifact, template_dir, verify)
    finally:
        s.close()


def _up(
    s: Session,
    source: Path | None,
    artifact: Artifact | None,
    template_dir: Path | None,
    verify: bool,
) -> UpResult:
    inv = s.inv
    states = preflight(s)
    if artifact is None:
        s.reporter.line("local", "artifact", "...")
        artifact = build_artifact(source)
        s.reporter.line(
            "local", "artifact", "ok", f"{artifact.release} ({len(artifact.wheels)} wheels)"
        )
    rendered = render_all(s, states, template_dir)
    plans = make_plans(inv, states, rendered, artifact.release)
    print_plan(s.reporter, plans, diffs=False)
    started = rollout(s, plans, states, rendered, artifact)
    # A server replaced in the inventory: the old one stops once the new ones are voters.
    retire_removed_servers(inv, s.hosts, s.reporter, s.timeout)

    # Running nodes whose release or config changed: rolling, servers one at a time.
    def refresh(host: Host) -> None:
        node = host.node
        parts = remote.configure_cmds(node, artifact.release, rendered[node.name])
        remote.apply(host, parts, "refresh", s.timeout)

    pending = {n: refresh for n, p in plans.items() if p.action is Action.RESTART}
    # Only the control script changed: rewrite it, nothing restarts.
    for n, p in plans.items():
        if p.action is Action.NOTHING and p.files:
            s.each(
                [inv.node(n)],
                "write files",
                lambda h: remote.write_files(h, rendered[h.node.name], s.timeout),
            )
    restarted: list[str] = []
    if pending:
        try:
            restarted = rolling_restart(s, pending)
        except PlanRefused as exc:
            raise ProvisionFailed(
                "cannot restart changed nodes: " + "; ".join(exc.reasons)
            ) from None

    problems: list[str] = []
    if verify:
        problems = verify_until(s, VERIFY_TIMEOUT)
    return UpResult(plans, started, restarted, problems)


def verify_until(s: Session, deadline_s: float) -> list[str]:
    """Verify, retrying while gossip converges; prints the table once, at the end."""
    deadline = time.monotonic() + deadline_s
    s.reporter.line("all", "verify", "...")
    while True:
        views = observe(s.inv, s.hosts, s.timeout, autopilot=True)
        problems = compare(s.inv, views)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    s.reporter.table(verify_table(s.inv, views, problems))
    for v in views:
        ap = v.autopilot
        ft = "unknown" if ap is None else str(ap.failure_tolerance)
        healthy = ap is not None and ap.healthy
        s.reporter.line(
            v.datacenter,
            "autopilot",
            "ok" if healthy else "failed",
            f"failure tolerance {ft}" + ("" if healthy else ", unhealthy"),
        )
    s.reporter.line(
        "all", "verify", "failed" if problems else "ok", f"{len(problems)} mismatch(es)"
    )
    for p in problems:
        s.reporter.info(f"  mismatch: {p}")
    return problems


def verify_table(inv: Inventory, views: Sequence[DCView], problems: Sequence[str]) -> Table:
    t = Table(title="verify")
    for col in ("Node", "DC", "Role", "Address", "Member", "Raft", "Check"):
        t.add_column(col)
    by_dc = {v.datacenter: v for v in views}
    for n in inv.nodes:
        v = by_dc.get(n.datacenter)
        m = next((m for m in v.members if m.name == n.name), None) if v else None
        raft = "-"
        if n.is_server and v is not None:
            peer = next((p for p in v.peers if p.address == n.server_addr), None)
            raft = peer.state if peer else "missing"
        mine = [p for p in problems if f" {n.name} " in f" {p} " or f" {n.name}." in p]
        t.add_row(
            n.name,
            n.datacenter,
            n.role,
            n.serf_lan_addr,
            f"{m.status} {m.type}" if m else "missing",
            raft,
            "[red]" + "; ".join(x.split(": ", 1)[1] for x in mine) + "[/]"
            if mine
            else "[green]ok[/]",
        )
    return t


def verify_only(inv: Inventory, reporter: Reporter, deadline_s: float = 0.0) -> list[str]:
    s = Session.open(inv, reporter)
    try:
        return verify_until(s, deadline_s)
    finally:
        s.close()


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node: Node
    release: str | None
    running: bool
    role: str
    leader: str


def status(inv: Inventory, reporter: Reporter) -> list[NodeStatus]:
    s = Session.open(inv, reporter)
    try:
        probes = run_parallel(
            list(inv.nodes), lambda n: remote.probe(s.hosts[n.name], s.timeout), inv.parallel
        )
        views = observe(inv, s.hosts, s.timeout)
    finally:
        s.close()
    by_dc = {v.datacenter: v for v in views}
    out = []
    t = Table(title="status")
    for col in ("Node", "DC", "Role", "Release", "Up", "Member", "Leader"):
        t.add_column(col)
    for o in probes:
        n = o.node
        st = o.value
        v = by_dc.get(n.datacenter)
        lead = health.leader_of(inv, v) if v else None
        m = next((m for m in v.members if m.name == n.name), None) if v else None
        leader = (
            "-" if not n.is_server else ("leader" if lead and lead.name == n.name else "follower")
        )
        if n.is_server and not (st and st.running):
            leader = "-"
        if o.error is not None:
            up_s = f"unreachable: {o.error}"
        else:
            up_s = "yes" if st and st.running else "no"
        out.append(
            NodeStatus(n, st.current if st else None, bool(st and st.running), n.role, leader)
        )
        t.add_row(
            n.name,
            n.datacenter,
            n.role,
            (st.current if st else None) or "-",
            up_s,
            m.status if m else "-",
            leader,
        )
    reporter.table(t)
    return out


def down(inv: Inventory, reporter: Reporter, purge: bool = False) -> None:
    """Graceful leave and stop, clients first, then servers; `purge` also removes the data and
    install directories."""
    s = Session.open(inv, reporter)
    try:

        def stop(host: Host) -> None:
            node = host.node
            st = remote.probe(host, s.timeout)
            if st.running and not node.is_server:
                # Clients leave gracefully; servers just stop, keeping their raft state so a
                # later `up` brings the same datacenter back (servers leaving at once would
                # each wait for a quorum that is going away).
                remote.senate(host, f"leave -rpc-addr={node.rpc_addr}", s.timeout, check=False)
            if st.control is not None:
                remote.control(host, "stop", s.timeout)
            if st.unit is not None:
                host.run(
                    "systemctl disable -q senate.service; rm -f /etc/systemd/system/senate.service; "
                    "systemctl daemon-reload",
                    step="systemd",
                    timeout=s.timeout,
                    check=False,
                )
            if purge:
                host.run(
                    f"rm -rf {shlex.quote(node.data_dir)} {shlex.quote(node.install_dir)}",
                    step="purge",
                    timeout=s.timeout,
                )

        s.each(inv.clients(), "down", stop)
        s.each(inv.servers(), "down", stop)
    finally:
        s.close()


__all__ = [
    "GateFailed",
    "ProvisionFailed",
    "Role",
    "Session",
    "UpResult",
    "down",
    "make_plans",
    "preflight",
    "render_all",
    "rolling_restart",
    "status",
    "up",
    "verify_only",
]
