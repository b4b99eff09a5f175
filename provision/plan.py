"""What `up` would do to each host, computed before anything changes (`provision plan`).

`plan_node` is a pure function of the node, what was observed on its host (or nothing, with
`--offline`), the rendered files and the release to run: whether to install or upgrade, which
files change (with a diff of the agent config), whether to start, restart or leave the agent,
and which nodes it will be joined to.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import Enum

from provision.inventory import Inventory, Node
from provision.remote import HostState
from provision.render import Rendered


class Action(Enum):
    START = "start"
    RESTART = "restart"
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class NodePlan:
    node: Node
    install: str | None  # "install R", "upgrade A -> B", or None when R is already current
    release: str
    files: tuple[str, ...]  # paths whose content changes
    config_diff: str
    action: Action
    joins: tuple[str, ...]  # addresses it will be joined to (LAN, then WAN as "wan:addr")
    observed: bool  # False with --offline: assumed to be a fresh host

    @property
    def changes(self) -> bool:
        return bool(self.install or self.files or self.action is not Action.NOTHING)

    def summary(self) -> str:
        parts = []
        if self.install:
            parts.append(self.install)
        if self.files:
            parts.append("write " + ", ".join(p.rsplit("/", 1)[-1] for p in self.files))
        parts.append(self.action.value)
        if self.joins:
            parts.append("join " + ", ".join(self.joins))
        return "; ".join(parts)


def plan_node(
    inv: Inventory,
    node: Node,
    state: HostState | None,
    rendered: Rendered,
    release: str,
) -> NodePlan:
    current = state.current if state else None
    installed = state.releases if state else ()
    install: str | None = None
    if current != release:
        install = f"install {release}" if current is None else f"upgrade {current} -> {release}"
        if release in installed:
            install += " (already unpacked)"
    old = {
        rendered.config.path: state.config if state else None,
        rendered.control.path: state.control if state else None,
    }
    if rendered.unit is not None:
        old[rendered.unit.path] = state.unit if state else None
    files = tuple(f.path for f in rendered.files if old.get(f.path) != f.content)
    old_config = (state.config if state else None) or ""
    config_diff = ""
    if old_config != rendered.config.content:
        config_diff = "".join(
            difflib.unified_diff(
                old_config.splitlines(keepends=True),
                rendered.config.content.splitlines(keepends=True),
                fromfile=f"{node.name}:{rendered.config.path} (on host)",
                tofile=f"{node.name}:{rendered.config.path} (rendered)",
            )
        )
    running = state.running if state else False
    restart_files = {rendered.config.path} | ({rendered.unit.path} if rendered.unit else set())
    if not running:
        action = Action.START
    elif current != release or restart_files & set(files):
        action = Action.RESTART
    else:
        action = Action.NOTHING
    joins: tuple[str, ...] = ()
    if action is Action.START:
        joins = tuple(s.serf_lan_addr for s in inv.servers(node.datacenter) if s.name != node.name)
        if node.is_server:
            joins += tuple(
                f"wan:{s.advertise}:{s.port('serf_wan')}"
                for s in inv.servers()
                if s.datacenter != node.datacenter
            )
    return NodePlan(
        node=node,
        install=install,
        release=release,
        files=files,
        config_diff=config_diff,
        action=action,
        joins=joins,
        observed=state is not None,
    )
