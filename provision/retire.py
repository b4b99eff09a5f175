"""Servers replaced through the inventory: a server the datacenter still gossips with but the
inventory no longer lists is retired once its replacements are healthy voters.

`up` installs and starts the new server like any other; it joins as a non-voter and autopilot
promotes it after ServerStabilizationTime. Only then is the old one stopped (reached over SSH
with the inventory's defaults at its gossip address, where the inventory last had it), so the
datacenter never has fewer healthy voters than before; autopilot's cleanup_dead_servers then
removes it from raft once gossip sees it gone. An old server that cannot be reached is left to
that cleanup, and `up` says so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from provision.hosts import Host, HostError, connect
from provision.inventory import Inventory, Node
from provision.remote import control, senate
from provision.report import Reporter
from provision.verify import Member, autopilot_health, observe_dc

PROMOTE_TIMEOUT = 90.0  # autopilot promotes after ServerStabilizationTime (10 s by default)
# autopilot removes a failed or left server on its next pass (seconds); past this, by hand
REMOVAL_WAIT = 30.0


def removed_servers(inv: Inventory, dc: str, members: list[Member]) -> list[Member]:
    """Servers of `dc` alive in gossip that the inventory does not list (pure)."""
    names = {n.name for n in inv.nodes}
    return [
        m
        for m in members
        if m.type == "server"
        and m.status == "alive"
        and m.name not in names
        and m.datacenter in ("", dc)
    ]


def _voters_ready(inv: Inventory, dc: str, hosts: dict[str, Host], timeout: float) -> list[str]:
    """What keeps the inventory's servers of `dc` from all being healthy voters ([]: ready)."""
    try:
        health = autopilot_health(inv, dc, hosts, timeout)
    except HostError as exc:
        return [str(exc)]
    problems = []
    for s in inv.servers(dc):
        sh = health.server(s)
        if sh is None:
            problems.append(f"{dc}: server {s.name} is not among autopilot's servers")
        elif not (sh.healthy and sh.voter):
            problems.append(f"{dc}: server {s.name} is not a healthy voter yet")
    return problems


def old_server_node(inv: Inventory, dc: str, member: Member) -> Node:
    """Where the inventory would have had the old server: its gossip address, the settings of
    the datacenter's servers (SSH, install_dir) as the inventory gives them now."""
    template = inv.servers(dc)[0]
    ip = member.address.rsplit(":", 1)[0].strip("[]")
    return dataclasses.replace(
        template, name=member.name, host=ip, bind_addr=ip, path=f"(removed) {member.name}"
    )


def retire_removed_servers(
    inv: Inventory,
    hosts: dict[str, Host],
    reporter: Reporter,
    timeout: float,
    promote_timeout: float = PROMOTE_TIMEOUT,
    connect_to: Callable[[Node], Host] = connect,
) -> list[str]:
    """Stop each server of the datacenters that the inventory no longer lists, once the
    inventory's servers are healthy voters. Returns the names of those stopped."""
    stopped: list[str] = []
    for dc in inv.datacenters:
        view = observe_dc(inv, dc, hosts, timeout)
        old = removed_servers(inv, dc, view.members)
        if not old:
            continue
        for m in old:
            reporter.line(m.name, "retire", "...", "a server not in the inventory any more")
        deadline = time.monotonic() + promote_timeout
        while (waiting := _voters_ready(inv, dc, hosts, timeout)) and time.monotonic() < deadline:
            time.sleep(1.0)
        if waiting:
            for m in old:
                reporter.line(m.name, "retire", "skip", "left running: " + "; ".join(waiting))
            continue
        for m in old:
            node = old_server_node(inv, dc, m)
            try:
                host = connect_to(node)
                try:
                    control(host, "stop", timeout)
                finally:
                    host.close()
            except HostError as exc:
                reporter.line(
                    m.name,
                    "retire",
                    "skip",
                    f"not in the inventory any more and not reachable at {node.host} ({exc});"
                    " autopilot removes it once it is gone",
                )
                continue
            reporter.line(
                m.name, "retire", "ok", "stopped; autopilot removes it from raft once it is gone"
            )
            stopped.append(m.name)
            _removed_from_raft(
                inv, dc, hosts, reporter, timeout, node, min(promote_timeout, REMOVAL_WAIT)
            )
        # an old leader stopped: what follows (a rolling restart, verify) needs the new one
        while (lead := _inventory_leader(inv, dc, hosts, timeout)) is None:
            if time.monotonic() >= deadline + promote_timeout:
                reporter.line(dc, "retire", "failed", "no leader among the inventory's servers")
                break
            time.sleep(0.5)
        if lead is not None:
            reporter.line(dc, "leader", "ok", lead)
    return stopped


def _inventory_leader(
    inv: Inventory, dc: str, hosts: dict[str, Host], timeout: float
) -> str | None:
    """The name of `dc`'s leader if it is a server of the inventory (autopilot's word)."""
    try:
        leader = autopilot_health(inv, dc, hosts, timeout).leader
    except HostError:
        return None
    names = {s.name for s in inv.servers(dc)}
    return leader.name if leader is not None and leader.name in names else None


def _removed_from_raft(
    inv: Inventory,
    dc: str,
    hosts: dict[str, Host],
    reporter: Reporter,
    timeout: float,
    old: Node,
    deadline_s: float,
) -> None:
    """Wait for autopilot to drop the stopped server from raft. Autopilot removes a failed or
    left server at once, but one gossip has already forgotten only after a grace period
    (minutes): past `deadline_s`, the old server is removed as Consul's guide does it by hand
    (`operator raft remove-peer -address`), and `up` says so."""
    addr = old.server_addr
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            health = autopilot_health(inv, dc, hosts, timeout)
        except HostError:
            health = None
        if health is not None and health.server(old) is None:
            return
        time.sleep(1.0)
    first = inv.servers(dc)[0]
    res = senate(
        hosts[first.name],
        f"operator raft remove-peer -http-addr={first.api_url} -address={addr}",
        timeout,
        check=False,
        auth="operator",
    )
    status = "ok" if res.exit_code == 0 else "failed"
    why = res.stdout.strip() or res.stderr.strip()
    reporter.line(old.name, "remove-peer", status, f"{addr}: autopilot had not removed it; {why}")
