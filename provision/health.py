"""Cluster health as rolling restarts need it: who is alive, who leads, and the gate a node must
pass before the next one is touched. A server's gate is autopilot's word (every server of the
datacenter healthy, the restarted one caught up with the leader's last index, the failure
tolerance back); a client's is its agent running and seen alive."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence

from provision import remote
from provision.hosts import Host, HostError
from provision.inventory import Inventory, Node
from provision.remote import http
from provision.rolling import ObservedNode, Role
from provision.verify import (
    AutopilotHealth,
    DCView,
    autopilot_health,
    autopilot_problems,
    observe_dc,
)


def _servers_by_addr(inv: Inventory, dc: str) -> dict[str, Node]:
    """The servers of `dc` by their raft address (ip:port), as raft and Consul name them."""
    return {s.server_addr: s for s in inv.servers(dc)}


def leader_of(inv: Inventory, view: DCView) -> Node | None:
    addrs = _servers_by_addr(inv, view.datacenter)
    for p in view.peers:
        if p.state == "leader" and p.address in addrs:
            return addrs[p.address]
    return None


def observed_nodes(inv: Inventory, views: Sequence[DCView]) -> list[ObservedNode]:
    by_dc = {v.datacenter: v for v in views}
    out = []
    for n in inv.nodes:
        view = by_dc.get(n.datacenter)
        alive = False
        leader = False
        if view is not None:
            alive = any(m.name == n.name and m.status == "alive" for m in view.members)
            lead = leader_of(inv, view)
            leader = lead is not None and lead.name == n.name
        out.append(
            ObservedNode(
                n.name,
                n.datacenter,
                Role.SERVER if n.is_server else Role.CLIENT,
                alive=alive,
                leader=leader,
            )
        )
    return out


def agent_running(host: Host, timeout: float) -> bool:
    """The node's agent process is alive (its senatectl says so); cheap, no CLI start-up."""
    ctl = f"{host.node.install_dir}/bin/senatectl"
    try:
        res = host.run(f"{shlex.quote(ctl)} status", step="status", timeout=timeout, check=False)
    except HostError:
        return False
    return res.exit_code == 0


def failure_tolerance(
    inv: Inventory, hosts: dict[str, Host], dc: str, timeout: float
) -> int | None:
    """`dc`'s failure tolerance as autopilot tells it now (None: no server answered)."""
    try:
        return autopilot_health(inv, dc, hosts, timeout).failure_tolerance
    except HostError:
        return None


def tolerance_wanted(inv: Inventory, dc: str, before: int | None) -> int:
    """The failure tolerance a gate waits for: what `dc` had before the restart, or a full
    datacenter's (n-1)//2 if that is less (or if nothing was known before)."""
    full = (len(inv.servers(dc)) - 1) // 2
    return full if before is None else min(before, full)


def server_gate_problems(
    inv: Inventory,
    node: Node,
    health: AutopilotHealth,
    target_index: int,
    tolerance: int,
) -> list[str]:
    """What keeps a restarted server's gate closed, from one autopilot answer (pure): every
    server of the inventory healthy in autopilot's eyes, the datacenter healthy, `node`'s last
    index at `target_index` (the leader's when the gate started), the failure tolerance back."""
    dc = node.datacenter
    problems = autopilot_problems(inv, dc, health)
    mine = health.server(node)
    if mine is not None and mine.last_index < target_index:
        problems.append(
            f"{dc}: {node.name}: last index {mine.last_index} behind the leader's {target_index}"
        )
    if health.failure_tolerance < tolerance:
        problems.append(f"{dc}: failure tolerance {health.failure_tolerance}, want {tolerance}")
    return problems


def _server_gate(
    inv: Inventory, hosts: dict[str, Host], node: Node, tolerance: int, step_timeout: float
) -> Callable[[], list[str]]:
    target_index: int | None = None

    def check() -> list[str]:
        nonlocal target_index
        try:
            health = autopilot_health(inv, node.datacenter, hosts, step_timeout)
        except HostError as exc:
            return [str(exc)]
        leader = health.leader
        if leader is None:
            return [f"{node.datacenter}: autopilot knows no leader"]
        if target_index is None:
            target_index = leader.last_index
        return server_gate_problems(inv, node, health, target_index, tolerance)

    return check


def _client_gate(
    inv: Inventory, hosts: dict[str, Host], node: Node, step_timeout: float
) -> Callable[[], list[str]]:
    def check() -> list[str]:
        dc = node.datacenter
        if not agent_running(hosts[node.name], step_timeout):
            return [f"{dc}: client {node.name} is not running or not answering"]
        view = observe_dc(inv, dc, hosts, step_timeout)
        if view.source is None:
            return [f"{dc}: no server answered ({'; '.join(view.errors)})"]
        m = next((m for m in view.members if m.name == node.name), None)
        if m is None:
            return [f"{dc}: {node.name} is not a member"]
        if m.status != "alive":
            return [f"{dc}: {node.name} is {m.status}, want alive"]
        return []

    return check


def gate(
    inv: Inventory,
    hosts: dict[str, Host],
    node: Node,
    deadline_s: float,
    step_timeout: float,
    tolerance_before: int | None = None,
) -> list[str]:
    """Wait until `node` and its datacenter are healthy; [] when they are, else the problems
    still seen at the deadline. A server's gate is autopilot's answer (`server_gate_problems`,
    `tolerance_before` being the datacenter's failure tolerance before the restart); a
    client's, its agent running and a server seeing it alive."""
    deadline = time.monotonic() + deadline_s
    if node.is_server:
        wanted = tolerance_wanted(inv, node.datacenter, tolerance_before)
        check = _server_gate(inv, hosts, node, wanted, step_timeout)
    else:
        check = _client_gate(inv, hosts, node, step_timeout)
    while True:
        problems = check()
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(0.5)


def transfer_leadership(host: Host, timeout: float) -> str:
    """Ask the leader to hand leadership to a follower. Agents without the endpoint fall back to
    an election when the leader stops; the message says which happened."""
    try:
        status, _body = http(host, "/v1/operator/raft/transfer-leader", timeout, method="POST")
    except HostError as exc:
        return f"transfer failed ({exc}); an election follows the restart"
    if status == 200:
        return "leadership transferred"
    return f"transfer not supported (HTTP {status}); an election follows the restart"


def wait_leader(
    inv: Inventory, hosts: dict[str, Host], dc: str, deadline_s: float, step_timeout: float
) -> tuple[Node, str]:
    """The datacenter's leader once there is one: waited for on its first server (one remote
    command that sees the election within ~0.25 s), then asked of the servers as `verify` does;
    if that first server cannot tell, the servers are polled in turn until the deadline.
    Returns a server to act through (the leader, or while a server the inventory no longer
    lists leads, the server that saw it) and the leader's name (its address when unknown)."""
    deadline = time.monotonic() + deadline_s
    addrs = _servers_by_addr(inv, dc)
    first = next((s for s in inv.servers(dc) if s.name in hosts), None)
    if first is not None:
        try:
            addr = remote.wait_leader(hosts[first.name], deadline_s, step_timeout)
        except HostError:
            addr = ""
        if addr:
            leader = addrs.get(addr)
            return (leader, leader.name) if leader is not None else (first, addr)
    errors: list[str] = []
    while True:
        view = observe_dc(inv, dc, hosts, step_timeout)
        leader = leader_of(inv, view)
        if leader is not None:
            return leader, leader.name
        other = next((p for p in view.peers if p.state == "leader"), None)
        if other is not None and view.source is not None:
            return inv.node(view.source), other.node
        errors = view.errors
        if time.monotonic() >= deadline:
            why = "; ".join(errors) if errors else "no server reports a leader"
            raise HostError(dc, f"{dc}: no leader within {deadline_s:.0f}s: {why}")
        time.sleep(0.5)
