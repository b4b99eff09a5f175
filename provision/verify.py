"""Compares what the cluster says about itself with the inventory.

It reads `senate members`, `senate members -wan`, `senate operator raft list-peers` and
`senate info` as an operator would (the same columns Consul prints), and `compare` — a pure
function — lists every mismatch: a node missing, not alive, of the wrong type or datacenter, a
datacenter without exactly one leader, raft peers that are not exactly the servers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provision.hosts import Host, HostError
from provision.inventory import Inventory
from provision.remote import senate


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


@dataclass(slots=True)
class DCView:
    """What one server of a datacenter reported (empty lists when nothing answered)."""

    datacenter: str
    source: str | None  # the node that answered
    members: list[Member] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    wan: list[Member] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


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


def parse_info(text: str) -> dict[str, dict[str, str]]:
    """`senate info`: `section:` lines, then indented `key = value` lines."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for ln in text.splitlines():
        if not ln.strip():
            continue
        if not ln[0].isspace() and ln.rstrip().endswith(":"):
            section = ln.strip()[:-1]
            out[section] = {}
        elif "=" in ln:
            k, _, v = ln.partition("=")
            out.setdefault(section, {})[k.strip()] = v.strip().strip("'")
    return out


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


def observe_dc(inv: Inventory, dc: str, hosts: dict[str, Host], timeout: float) -> DCView:
    """Ask the servers of `dc`, in order, until one answers all three commands."""
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


def observe(inv: Inventory, hosts: dict[str, Host], timeout: float) -> list[DCView]:
    from provision.hosts import run_parallel

    dcs = inv.datacenters
    # one server per datacenter stands in for the datacenter; datacenters in parallel
    outcomes = run_parallel(
        [inv.servers(dc)[0] for dc in dcs],
        lambda n: observe_dc(inv, n.datacenter, hosts, timeout),
        inv.parallel,
    )
    return [
        o.value if o.value is not None else DCView(o.node.datacenter, None, errors=[str(o.error)])
        for o in outcomes
    ]
