"""`provision upgrade`: move every node to another release, one node at a time.

The order comes from `rolling.plan_rolling` (servers first, followers before the leader, the
leader after a leadership transfer, then clients `serial` at a time). The new release is
unpacked on every host first, in parallel, while everything still runs the old one; then each
step switches `current`, restarts, and must pass the health gate before the next step. A
failed gate stops the upgrade and names the node and why; with `rollback` that node is pointed
back at its previous release and restarted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from provision import remote
from provision.artifact import Artifact
from provision.hosts import Host, HostError
from provision.inventory import Inventory
from provision.report import Reporter
from provision.rolling import PlanRefused
from provision.up import (
    AGENT_START_TIMEOUT,
    GATE_TIMEOUT,
    GateFailed,
    ProvisionFailed,
    Session,
    preflight,
    rolling_restart,
)


@dataclass
class UpgradeResult:
    release: str
    upgraded: list[str]  # in the order they were restarted
    unchanged: list[str]


def upgrade(
    inv: Inventory,
    reporter: Reporter,
    artifact: Artifact,
    serial: int = 1,
    rollback: bool = False,
    on_step: Callable[[str], None] | None = None,
    gate_timeout: float = GATE_TIMEOUT,
) -> UpgradeResult:
    s = Session.open(inv, reporter)
    try:
        states = preflight(s)
        stopped = [n for n, st in states.items() if not st.running]
        if stopped:
            raise ProvisionFailed(
                "upgrade needs every agent running; not running: "
                + ", ".join(stopped)
                + " (run `provision up` first)"
            )
        pending_nodes = [n for n in inv.nodes if states[n.name].current != artifact.release]
        unchanged = [n.name for n in inv.nodes if n not in pending_nodes]
        if not pending_nodes:
            reporter.info(f"every node already runs {artifact.release}; nothing to do")
            return UpgradeResult(artifact.release, [], unchanged)
        need = [n for n in pending_nodes if artifact.release not in states[n.name].releases]
        if need:
            s.each(
                need,
                "unpack",
                lambda h: remote.install_release(
                    h, artifact, s.timeout, states[h.node.name].executable
                ),
                lambda _: artifact.release,
            )

        def switch(host: Host) -> None:
            reporter.line(
                host.node.name,
                "switch",
                "ok",
                f"{states[host.node.name].current} -> {artifact.release}",
            )
            remote.switch_release(host, artifact.release, s.timeout)

        try:
            done = rolling_restart(
                s, {n.name: switch for n in pending_nodes}, serial, on_step, gate_timeout
            )
        except PlanRefused as exc:
            raise ProvisionFailed("upgrade refused: " + "; ".join(exc.reasons)) from None
        except GateFailed as exc:
            if rollback:
                _rollback(s, exc.node, states[exc.node].current)
            raise
        return UpgradeResult(artifact.release, done, unchanged)
    finally:
        s.close()


def _rollback(s: Session, node: str, previous: str | None) -> None:
    host = s.hosts[node]
    if previous is None:
        s.reporter.line(node, "rollback", "failed", "no previous release recorded")
        return
    try:
        s.reporter.line(node, "rollback", "...", f"back to {previous}")
        remote.start_agent(
            host,
            "restart",
            AGENT_START_TIMEOUT,
            s.timeout,
            [remote.switch_cmd(host.node, previous)],
        )
        s.reporter.line(node, "rollback", "ok", f"runs {previous} again")
    except HostError as exc:
        s.reporter.line(node, "rollback", "failed", str(exc))
