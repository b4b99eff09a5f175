"""What `up` would do to each host, computed before anything changes (`provision plan`).

`plan_node` is a pure function of the node, what was observed on its host (or nothing, with
`--offline`), the rendered files and the release to run: whether to install or upgrade, which
files change (with a diff of the agent config), whether to start, restart or leave the agent,
and which nodes it will be joined to.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum

from provision.inventory import Inventory, Node
from provision.remote import HostState
from provision.render import Rendered, RenderedFile


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


# Config keys whose values are secrets: a diff shows that they change, not what they are.
_SECRET_LINE = re.compile(
    r'^(\s*"(?:encrypt|agent|agent_recovery|initial_management|default|replication|'
    r'acl_master_token|acl_token|acl_agent_token|acl_agent_master_token)": )"[^"]*"'
)


def redact(line: str) -> str:
    """A line of the rendered JSON config with a secret's value hidden."""
    return _SECRET_LINE.sub(r'\1"<secret>"', line)


def _tls_changed(state: HostState | None, f: RenderedFile) -> bool:
    """The host's copy differs (the probe reports digests of TLS files, not their content)."""
    return state is None or state.digest(f.path) != f.digest


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
    files = tuple(
        f.path
        for f in rendered.files
        if (old.get(f.path) != f.content if f not in rendered.tls else _tls_changed(state, f))
    )
    old_config = (state.config if state else None) or ""
    config_diff = ""
    if old_config != rendered.config.content:
        config_diff = "".join(
            difflib.unified_diff(
                [redact(ln) for ln in old_config.splitlines(keepends=True)],
                [redact(ln) for ln in rendered.config.content.splitlines(keepends=True)],
                fromfile=f"{node.name}:{rendered.config.path} (on host)",
                tofile=f"{node.name}:{rendered.config.path} (rendered)",
            )
        )
    running = state.running if state else False
    restart_files = {rendered.config.path} | ({rendered.unit.path} if rendered.unit else set())
    restart_files |= {f.path for f in rendered.tls}  # the agent reads them when it starts
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
