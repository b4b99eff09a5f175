"""`provision`: stand senate datacenters up from a YAML inventory.

Exit status: 0 success; 1 the run failed or verify found mismatches; 2 bad usage or an invalid
inventory.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

#: The `provision` extra: the controller needs it, an agent host does not.
CONTROLLER_PACKAGES = ("fabric", "invoke", "paramiko", "jinja2", "yaml", "pydantic", "rich")

try:
    from rich.console import Console

    from provision.artifact import ArtifactError, build_artifact, list_artifacts, resolve_release
    from provision.hosts import HostError
    from provision.inventory import Inventory, InventoryError, load_inventory
    from provision.report import Reporter
except ModuleNotFoundError as _exc:  # senate installed without the `provision` extra
    if (_exc.name or "").split(".")[0] not in CONTROLLER_PACKAGES:
        raise
    sys.stderr.write(
        f"provision: its dependencies are not installed (no module named {_exc.name!r});"
        " install the controller extra: pip install 'senate[provision]'\n"
    )
    raise SystemExit(2) from None

EPILOG = """examples:
  provision up inventories/local.yml          stand up 3 servers + 2 clients on 127.0.0.x
  provision plan --offline inventories/prod.yml
  provision verify inventories/local.yml
  provision upgrade --version 0.7.3 inventories/prod.yml
  provision down --purge inventories/local.yml
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="provision",
        description="Stand senate datacenters up over SSH (or on this machine) from a YAML inventory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=description)
        sp.add_argument("inventory", metavar="INVENTORY", help="the inventory YAML file")
        return sp

    sp = add(
        "plan",
        "show what `up` would do to each host",
        "Per host: install or upgrade (A -> B), files that change (with the config diff), "
        "start / restart / nothing, and joins. Contacts the hosts unless --offline.",
    )
    sp.add_argument(
        "--offline", action="store_true", help="do not contact hosts; assume they are fresh"
    )
    sp.add_argument(
        "--source", type=Path, help="project tree to build the artifact from (default: this one)"
    )

    sp = add(
        "up",
        "install, configure, start, join and verify every node",
        "Preflight every host, build the artifact once, install it, render configs, start the "
        "servers with bootstrap_expect, join them, wait for a leader, join datacenters over "
        "WAN, start the clients, verify. A second run on a converged datacenter changes nothing.",
    )
    sp.add_argument(
        "--source", type=Path, help="project tree to build the artifact from (default: this one)"
    )
    sp.add_argument(
        "--version", dest="release", help="deploy an already built release instead of building"
    )
    sp.add_argument("--no-verify", action="store_true", help="skip the final verify")

    sp = add(
        "verify",
        "compare members, WAN members and raft peers with the inventory",
        "Runs `senate members`, `members -wan` and `operator raft list-peers` on the servers; "
        "prints a table and exits 1 listing every mismatch.",
    )
    sp.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="retry for up to SECONDS while the cluster converges",
    )

    sp = add(
        "upgrade",
        "rolling upgrade, one node at a time, with a health gate after each",
        "Servers first (followers, then the leader after a leadership transfer), then clients "
        "--serial at a time. Each node must be alive, raft must have every peer and the node's "
        "commit index must catch up before the next. A failed gate stops the upgrade.",
    )
    sp.add_argument(
        "--version",
        dest="release",
        help="release to upgrade to (a built release or version; default: build this tree)",
    )
    sp.add_argument("--source", type=Path, help="project tree to build the new release from")
    sp.add_argument("--serial", type=int, default=1, help="clients restarted at a time (default 1)")
    sp.add_argument(
        "--rollback",
        action="store_true",
        help="when a node fails its health gate, point it back at its previous release",
    )
    sp.add_argument(
        "--gate-timeout",
        type=float,
        default=90.0,
        metavar="SECONDS",
        help="how long a node may take to pass its health gate (default 90)",
    )

    add(
        "status",
        "a table of every node: release, up, member status, role, leader",
        "Probes every host and asks the servers who leads.",
    )

    sp = add(
        "down",
        "graceful leave and stop of every node",
        "Clients leave gracefully, then every agent stops. --purge also removes data and "
        "install directories.",
    )
    sp.add_argument("--purge", action="store_true", help="also remove data and install directories")

    sp = add(
        "prometheus",
        "a Prometheus scrape config for the inventory's agents",
        "Static targets of every node's HTTP API (or --consul-sd: consul_sd_configs asking the "
        "servers), scraping /v1/agent/metrics?format=prometheus, with the inventory's TLS and "
        "ACL material. Writes YAML to stdout or --output.",
    )
    sp.add_argument("--consul-sd", action="store_true", help="discover the servers via Consul SD")
    sp.add_argument("--output", "-o", type=Path, help="write the config here instead of stdout")

    sp = sub.add_parser(
        "artifact",
        help="build or list artifacts (wheel + wheelhouse)",
        description="Build this project's wheel and a wheelhouse of its dependencies "
        "once, so hosts install without a package index.",
    )
    sp.add_argument("action", choices=["build", "list"])
    sp.add_argument("--source", type=Path, help="project tree to build from (default: this one)")
    return p


def _load(path: str, console: Console) -> Inventory:
    inv = load_inventory(path)
    return inv


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Wide tables when piped (CI logs); the terminal's width otherwise.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)
    if args.command is None:
        _parser().print_help()
        return 2
    reporter = Reporter(console)
    try:
        return _dispatch(args, console, reporter)
    except InventoryError as exc:
        err.print(f"[bold red]error:[/] {exc.source}: invalid inventory", markup=True)
        for e in exc.errors:
            err.print(f"  {e}", markup=False)
        return 2
    except ArtifactError as exc:
        err.print(f"error: artifact: {exc}", markup=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130


def _prometheus(args: argparse.Namespace, console: Console, reporter: Reporter) -> int:
    """`provision prometheus`: the scrape config on stdout (warnings on stderr) or a file."""
    import yaml

    from provision import prometheus

    inv = load_inventory(args.inventory, create_secrets=False)
    text = yaml.safe_dump(prometheus.scrape_config(inv, consul_sd=args.consul_sd), sort_keys=False)
    for w in prometheus.warnings(inv):
        sys.stderr.write(f"warning: {w}\n")  # stdout may be the config itself
    if args.output is not None:
        args.output.write_text(text)
        reporter.info(f"wrote {args.output}")
    else:
        console.print(text, markup=False, highlight=False, end="")
    return 0


def _dispatch(args: argparse.Namespace, console: Console, reporter: Reporter) -> int:
    from provision import up as upmod
    from provision.upgrade import upgrade

    if args.command == "artifact":
        if args.action == "list":
            for r in list_artifacts():
                console.print(r, markup=False)
            return 0
        art = build_artifact(args.source)
        console.print(f"{art.release}  {art.tarball}", markup=False)
        return 0

    if args.command == "prometheus":
        return _prometheus(args, console, reporter)
    inv = _load(args.inventory, console)
    try:
        if args.command == "plan":
            for w in inv.warnings:
                reporter.warn(w)
            from provision.artifact import release_name
            from provision.render import project_root

            release = release_name((args.source or project_root()).resolve())
            if args.offline:
                s = upmod.Session(inv, reporter)
                states = None
            else:
                s = upmod.Session.open(inv, reporter)
                try:
                    states = upmod.preflight(s)
                finally:
                    s.close()
            rendered = upmod.render_all(s, states, None)
            plans = upmod.make_plans(inv, states, rendered, release)
            upmod.print_plan(reporter, plans, diffs=not args.offline)
            return 0
        if args.command == "up":
            artifact = resolve_release(args.release) if args.release else None
            res = upmod.up(
                inv, reporter, source=args.source, artifact=artifact, verify=not args.no_verify
            )
            if res.problems:
                return 1
            changed = res.changed
            reporter.info(
                f"up: {len(res.started)} started, {len(res.restarted)} restarted, "
                f"{len(changed)} changed" + ("" if changed else " (nothing to do)")
            )
            from provision.secure import operator_hints

            for line in operator_hints(inv.path, inv.nodes):
                reporter.info(line)
            return 0
        if args.command == "verify":
            problems = upmod.verify_only(inv, reporter, args.wait)
            return 1 if problems else 0
        if args.command == "status":
            upmod.status(inv, reporter)
            return 0
        if args.command == "down":
            upmod.down(inv, reporter, purge=args.purge)
            return 0
        if args.command == "upgrade":
            if args.serial < 1:
                reporter.info("error: --serial must be at least 1")
                return 2
            artifact = (
                resolve_release(args.release) if args.release else build_artifact(args.source)
            )
            ures = upgrade(
                inv, reporter, artifact, args.serial, args.rollback, gate_timeout=args.gate_timeout
            )
            reporter.info(
                f"upgrade to {ures.release}: " + (" -> ".join(ures.upgraded) or "nothing to do")
            )
            return 0
    except upmod.ProvisionFailed as exc:
        reporter.info("")
        if exc.errors:
            reporter.errors(exc.errors)
        reporter.info(f"FAILED: {exc}")
        return 1
    except HostError as exc:
        reporter.errors({exc.host: exc})
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
