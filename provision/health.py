"""Cluster health as rolling restarts need it: who is alive, who leads, and the gate a node must
pass before the next one is touched (alive in members, raft has every peer and a leader, its
commit index caught up with the leader's)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence

from provision import remote
from provision.hosts import Host, HostError
from provision.inventory import Inventory, Node
from provision.remote import http, senate
from provision.rolling import ObservedNode, Role
from provision.verify import DCView, compare, observe_dc, parse_info


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


def commit_index(host: Host, timeout: float) -> int | None:
    node = host.node
    try:
        res = senate(host, f"info -rpc-addr={node.rpc_addr}", timeout)
    except HostError:
        return None
    raw = parse_info(res.stdout).get("raft", {}).get("commit_index")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def agent_running(host: Host, timeout: float) -> bool:
    """The node's agent process is alive (its senatectl says so); cheap, no CLI start-up."""
    ctl = f"{host.node.install_dir}/bin/senatectl"
    try:
        res = host.run(f"{shlex.quote(ctl)} status", step="status", timeout=timeout, check=False)
    except HostError:
        return False
    return res.exit_code == 0


def gate(
    inv: Inventory,
    hosts: dict[str, Host],
    node: Node,
    deadline_s: float,
    step_timeout: float,
) -> list[str]:
    """Wait until `node` and its datacenter are healthy; [] when they are, else the problems
    still seen at the deadline."""
    dc = node.datacenter
    deadline = time.monotonic() + deadline_s
    problems: list[str] = ["not checked"]
    target_commit: int | None = None
    while True:
        view = observe_dc(inv, dc, hosts, step_timeout)
        # LAN health only: WAN membership does not decide whether the next node may restart.
        problems = [
            p for p in compare(inv, [view]) if p.startswith(f"{dc}:") and "WAN member" not in p
        ]
        if view.source is None:
            problems = [f"{dc}: no server answered ({'; '.join(view.errors)})"]
        if not problems:
            # Members lag a crash by the gossip suspicion time and raft peers are the
            # configuration, not who is up: ask every server of the datacenter directly.
            for server in inv.servers(dc):
                if server.name != node.name and not agent_running(hosts[server.name], step_timeout):
                    problems.append(f"{dc}: server {server.name} is not running or not answering")
        if not problems and node.is_server:
            leader = leader_of(inv, view)
            if leader is not None and leader.name != node.name:
                if target_commit is None:
                    target_commit = commit_index(hosts[leader.name], step_timeout)
                mine = commit_index(hosts[node.name], step_timeout)
                if target_commit is None or mine is None:
                    problems = [f"{dc}: {node.name}: commit index unknown"]
                elif mine < target_commit:
                    problems = [
                        f"{dc}: {node.name}: commit index {mine} behind the leader's {target_commit}"
                    ]
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
) -> Node:
    """The datacenter's leader once there is one: waited for on its first server (one remote
    command that sees the election within ~0.25 s), then asked of the servers as `verify` does;
    if that first server cannot tell, the servers are polled in turn until the deadline."""
    deadline = time.monotonic() + deadline_s
    addrs = _servers_by_addr(inv, dc)
    first = next((s for s in inv.servers(dc) if s.name in hosts), None)
    if first is not None:
        try:
            leader = addrs.get(remote.wait_leader(hosts[first.name], deadline_s, step_timeout))
        except HostError:
            leader = None
        if leader is not None:
            return leader
    errors: list[str] = []
    while True:
        view = observe_dc(inv, dc, hosts, step_timeout)
        leader = leader_of(inv, view)
        if leader is not None:
            return leader
        errors = view.errors
        if time.monotonic() >= deadline:
            why = "; ".join(errors) if errors else "no server reports a leader"
            raise HostError(dc, f"{dc}: no leader within {deadline_s:.0f}s: {why}")
        time.sleep(0.5)
