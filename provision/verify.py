"""Compares what the cluster says about itself with the inventory.

It reads `senate members`, `senate members -wan` and `senate operator raft list-peers` as an
operator would (the same columns Consul prints), and autopilot's health
(/v1/operator/autopilot/health, Consul's JSON); `compare` — a pure function — lists every
mismatch: a node missing, not alive, of the wrong type or datacenter, a datacenter without
exactly one leader, raft peers that are not exactly the servers, a datacenter autopilot calls
unhealthy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provision.hosts import Host, HostError
from provision.inventory import Inventory, Node
from provision.remote import http, senate


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    address: str
    status: str
    type: str
    datacenter: str


@dataclass(frozen=True, slots=True)
class Peer:
    node: str
    address: str
    state: str


@dataclass(frozen=True, slots=True)
class ServerHealth:
    """One entry of autopilot's Servers (Consul's ServerHealth)."""

    name: str
    address: str
    serf_status: str
    leader: bool
    voter: bool
    healthy: bool
    last_index: int
    last_contact: str

    def why_unhealthy(self) -> str:
        """Autopilot's health rule in words, for a server it calls unhealthy."""
        if self.serf_status != "alive":
            return f"serf status {self.serf_status}"
        return f"last contact {self.last_contact}, last index {self.last_index}"


@dataclass(frozen=True, slots=True)
class AutopilotHealth:
    """A datacenter's health as its leader's autopilot tells it (any server forwards)."""

    source: str  # the server that answered
    healthy: bool
    failure_tolerance: int
    servers: tuple[ServerHealth, ...]

    def server(self, node: Node) -> ServerHealth | None:
        """`node`'s entry: by its name, else by its raft address (the name of a server whose
        gossip member autopilot no longer sees)."""
        return next((s for s in self.servers if s.name == node.name), None) or next(
            (s for s in self.servers if s.address == node.server_addr), None
        )

    @property
    def leader(self) -> ServerHealth | None:
        return next((s for s in self.servers if s.leader), None)


def parse_autopilot_health(source: str, body: str) -> AutopilotHealth:
    """The JSON of /v1/operator/autopilot/health; ValueError naming what is wrong with it."""
    try:
        d = json.loads(body)
        servers = tuple(
            ServerHealth(
                str(s["Name"]),
                str(s["Address"]),
                str(s["SerfStatus"]),
                bool(s["Leader"]),
                bool(s["Voter"]),
                bool(s["Healthy"]),
                int(s["LastIndex"]),
                str(s["LastContact"]),
            )
            for s in d["Servers"] or []
        )
        return AutopilotHealth(source, bool(d["Healthy"]), int(d["FailureTolerance"]), servers)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"unreadable autopilot health ({exc!r}): {body[:200]}") from None


def autopilot_health(
    inv: Inventory, dc: str, hosts: Mapping[str, Host], timeout: float
) -> AutopilotHealth:
    """Autopilot's health, asked of the servers of `dc` in order until one answers (200 or
    429: both carry the JSON). HostError naming each server's failure when none does."""
    errors: list[str] = []
    for node in inv.servers(dc):
        host = hosts.get(node.name)
        if host is None:
            continue
        try:
            status, body = http(host, "/v1/operator/autopilot/health", timeout)
        except HostError as exc:
            errors.append(f"{node.name}: {exc}")
            continue
        if status not in (200, 429):
            errors.append(f"{node.name}: autopilot health: HTTP {status}: {body.strip()[:200]}")
            continue
        try:
            return parse_autopilot_health(node.name, body)
        except ValueError as exc:
            errors.append(f"{node.name}: {exc}")
    raise HostError(dc, f"{dc}: no server answered autopilot health ({'; '.join(errors)})")


def autopilot_problems(inv: Inventory, dc: str, health: AutopilotHealth) -> list[str]:
    """What autopilot's answer says is wrong with `dc`'s servers, naming each server."""
    problems: list[str] = []
    for s in inv.servers(dc):
        sh = health.server(s)
        if sh is None:
            problems.append(f"{dc}: server {s.name} is not among autopilot's servers")
        elif not sh.healthy:
            problems.append(f"{dc}: server {s.name} is unhealthy ({sh.why_unhealthy()})")
    known = {health.server(s) for s in inv.servers(dc)}
    for sh in health.servers:
        if sh not in known and not sh.healthy:
            problems.append(
                f"{dc}: server {sh.name} ({sh.address}) is unhealthy and not in the inventory"
                f" ({sh.why_unhealthy()})"
            )
    if not health.healthy and not problems:
        problems.append(f"{dc}: autopilot says the datacenter is unhealthy")
    return problems


@dataclass(slots=True)
class DCView:
    """What one server of a datacenter reported (empty lists when nothing answered)."""

    datacenter: str
    source: str | None  # the node that answered
    members: list[Member] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    wan: list[Member] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    autopilot: AutopilotHealth | None = None  # asked only by `observe(..., autopilot=True)`
    autopilot_error: str | None = None


def parse_table(text: str) -> list[dict[str, str]]:
    """Parse a columnised table (Consul's `columnize`): header names give column offsets.
    Columns are two spaces apart at least, so a name may hold one ("Commit Index")."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]
    names = [
        header[a : starts[k + 1] if k + 1 < len(starts) else len(header)].strip()
        for k, a in enumerate(starts)
    ]
    rows = []
    for ln in lines[1:]:
        row: dict[str, str] = {}
        for k, name in enumerate(names):
            end = starts[k + 1] if k + 1 < len(starts) else len(ln)
            row[name] = ln[starts[k] : end].strip()
        rows.append(row)
    return rows


def parse_members(text: str) -> list[Member]:
    return [
        Member(
            r.get("Node", ""),
            r.get("Address", ""),
            r.get("Status", ""),
            r.get("Type", ""),
            r.get("DC", ""),
        )
        for r in parse_table(text)
    ]


def parse_peers(text: str) -> list[Peer]:
    return [
        Peer(r.get("Node", ""), r.get("Address", ""), r.get("State", "")) for r in parse_table(text)
    ]


def compare(inv: Inventory, views: Sequence[DCView]) -> list[str]:
    """Every way the cluster differs from the inventory, one line each (empty: all good)."""
    problems: list[str] = []
    by_dc = {v.datacenter: v for v in views}
    all_servers = inv.servers()
    for dc in inv.datacenters:
        view = by_dc.get(dc)
        if view is None or view.source is None:
            errs = "; ".join(view.errors) if view else "not checked"
            problems.append(f"{dc}: no server answered ({errs})")
            continue
        members = {m.name: m for m in view.members}
        for node in inv.nodes:
            if node.datacenter != dc:
                continue
            m = members.get(node.name)
            if m is None:
                problems.append(f"{dc}: {node.name} is not a member")
                continue
            if m.status != "alive":
                problems.append(f"{dc}: {node.name} is {m.status}, want alive")
            if m.type != node.role:
                problems.append(f"{dc}: {node.name} is a {m.type}, want {node.role}")
            if m.datacenter and m.datacenter != dc:
                problems.append(f"{dc}: {node.name} is in datacenter {m.datacenter}, want {dc}")
        names = {n.name for n in inv.nodes if n.datacenter == dc}
        for m in view.members:
            if m.name not in names and m.status == "alive":
                problems.append(
                    f"{dc}: {m.name} ({m.address}) is a member but not in the inventory"
                )
        leaders = [p for p in view.peers if p.state == "leader"]
        if not leaders:
            problems.append(f"{dc}: no raft leader")
        elif len(leaders) > 1:
            problems.append(
                f"{dc}: {len(leaders)} raft leaders ({', '.join(p.node for p in leaders)})"
            )
        want = {s.server_addr: s.name for s in inv.servers(dc)}
        have = {p.address for p in view.peers}
        for addr, name in want.items():
            if addr not in have:
                problems.append(f"{dc}: server {name} ({addr}) is not a raft peer")
        for addr in sorted(have - set(want)):
            problems.append(f"{dc}: raft peer {addr} is not a server in the inventory")
        if view.autopilot_error is not None:
            problems.append(view.autopilot_error)
        elif view.autopilot is not None:
            problems += autopilot_problems(inv, dc, view.autopilot)
        if len(inv.datacenters) > 1:
            wan = {m.name: m for m in view.wan}
            for s in all_servers:
                wname = f"{s.name}.{s.datacenter}"
                wm = wan.get(wname)
                if wm is None:
                    problems.append(f"{dc}: {wname} is not a WAN member")
                elif wm.status != "alive":
                    problems.append(f"{dc}: WAN member {wname} is {wm.status}, want alive")
    return problems


def observe_dc(
    inv: Inventory, dc: str, hosts: dict[str, Host], timeout: float, autopilot: bool = False
) -> DCView:
    """Ask the servers of `dc`, in order, until one answers all three commands; with
    `autopilot`, autopilot's health too."""
    view = DCView(dc, None)
    for node in inv.servers(dc):
        host = hosts.get(node.name)
        if host is None:
            continue
        rpc = f"-rpc-addr={node.rpc_addr}"
        try:
            members = senate(host, f"members {rpc}", timeout)
            # raft peers are the servers' to tell: the management token (with ACLs on)
            peers_cmd = f"list-peers -http-addr={node.api_url}"
            peers = senate(host, f"operator raft {peers_cmd}", timeout, False, "operator")
            if peers.exit_code != 0 and "Permission denied" not in peers.stderr:
                peers = senate(host, f"operator raft -{peers_cmd}", timeout, auth="operator")
            elif peers.exit_code != 0:
                raise HostError(node.name, f"operator raft list-peers: {peers.stderr.strip()}")
            wan = senate(host, f"members -wan {rpc}", timeout) if len(inv.datacenters) > 1 else None
        except HostError as exc:
            view.errors.append(f"{node.name}: {exc}")
            continue
        view.source = node.name
        view.members = parse_members(members.stdout)
        view.peers = parse_peers(peers.stdout)
        view.wan = parse_members(wan.stdout) if wan is not None else []
        if autopilot:
            try:
                view.autopilot = autopilot_health(inv, dc, hosts, timeout)
            except HostError as exc:
                view.autopilot_error = str(exc)
        return view
    return view


def wan_problems(inv: Inventory, hosts: Mapping[str, Host], timeout: float) -> list[str]:
    """What `members -wan` on a server of each datacenter lacks, as `compare` words it. Asks
    each agent about itself only: no leader or management token needed (a datacenter that
    resolves tokens through the primary's servers cannot before it has joined them)."""
    problems: list[str] = []
    for dc in inv.datacenters:
        errors: list[str] = []
        for node in inv.servers(dc):
            host = hosts.get(node.name)
            if host is None:
                continue
            try:
                res = senate(host, f"members -wan -rpc-addr={node.rpc_addr}", timeout)
            except HostError as exc:
                errors.append(f"{node.name}: {exc}")
                continue
            wan = {m.name: m for m in parse_members(res.stdout)}
            for s in inv.servers():
                wm = wan.get(f"{s.name}.{s.datacenter}")
                if wm is None:
                    problems.append(f"{dc}: {s.name}.{s.datacenter} is not a WAN member")
                elif wm.status != "alive":
                    problems.append(
                        f"{dc}: WAN member {s.name}.{s.datacenter} is {wm.status}, want alive"
                    )
            break
        else:
            problems.append(f"{dc}: no server answered ({'; '.join(errors)})")
    return problems


def observe(
    inv: Inventory, hosts: dict[str, Host], timeout: float, autopilot: bool = False
) -> list[DCView]:
    from provision.hosts import run_parallel

    dcs = inv.datacenters
    # one server per datacenter stands in for the datacenter; datacenters in parallel
    outcomes = run_parallel(
        [inv.servers(dc)[0] for dc in dcs],
        lambda n: observe_dc(inv, n.datacenter, hosts, timeout, autopilot),
        inv.parallel,
    )
    return [
        o.value if o.value is not None else DCView(o.node.datacenter, None, errors=[str(o.error)])
        for o in outcomes
    ]
