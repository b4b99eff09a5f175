"""Renders what each node runs from `templates/`: the agent's JSON config, the service unit.

The agent config is a pure function of the inventory and the node: settings from the inventory
(defaults < datacenter < host) plus what provision derives from the layout — datacenter,
node_name, server, bootstrap_expect (= the datacenter's number of servers), bind_addr, data_dir,
retry_join to the datacenter's servers and, for servers, retry_join_wan to every other
datacenter's servers; with `tls: generate` / `acl: bootstrap`, HTTPS, the `tls` and `acl` blocks
and the node's certificate files (provision.secure).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from provision import secure
from provision.inventory import Inventory, Node

STOP_TIMEOUT = 15  # seconds the launcher waits after SIGTERM before SIGKILL


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def templates_dir() -> Path:
    return project_root() / "templates"


@dataclass(frozen=True, slots=True)
class RenderedFile:
    path: str  # absolute path on the host
    content: str
    mode: int

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Rendered:
    """Everything a node runs from, and the service flavour it was rendered for."""

    config: RenderedFile
    control: RenderedFile  # <install_dir>/bin/senatectl
    unit: RenderedFile | None  # /etc/systemd/system/senate.service, when systemd runs the agent
    tls: tuple[RenderedFile, ...] = ()  # <install_dir>/tls/: CA, certificate, key

    @property
    def files(self) -> list[RenderedFile]:
        return [f for f in (self.config, self.control, self.unit, *self.tls) if f is not None]


def agent_config(inv: Inventory, node: Node) -> dict[str, Any]:
    servers = inv.servers(node.datacenter)
    cfg: dict[str, Any] = {"log_level": "INFO", "disable_update_check": True}
    cfg.update(node.agent)
    cfg.update(secure.agent_settings(inv.secrets, node))
    cfg["datacenter"] = node.datacenter
    cfg["node_name"] = node.name
    cfg["server"] = node.is_server
    cfg["bind_addr"] = node.bind_addr
    cfg["data_dir"] = node.data_dir
    if node.is_server:
        cfg["bootstrap_expect"] = len(servers)
        cfg["retry_join"] = [s.serf_lan_addr for s in servers if s.name != node.name]
        wan = [
            f"{s.advertise}:{s.port('serf_wan')}"
            for s in inv.servers()
            if s.datacenter != node.datacenter
        ]
        if wan:
            cfg["retry_join_wan"] = wan
    else:
        cfg["retry_join"] = [s.serf_lan_addr for s in servers]
    return dict(sorted(cfg.items()))


def _env(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["to_json"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    env.filters["shq"] = shlex.quote
    return env


def render_node(
    inv: Inventory, node: Node, service: str, template_dir: Path | None = None
) -> Rendered:
    """Render one node's files. `service` is "systemd" or "launcher" (resolved from "auto")."""
    env = _env(template_dir or templates_dir())
    ctx: dict[str, Any] = {
        "node": node,
        "install_dir": node.install_dir,
        "service": service,
        "stop_timeout": STOP_TIMEOUT,
        "agent": agent_config(inv, node),
    }
    config = RenderedFile(
        f"{node.install_dir}/etc/senate.json", env.get_template("senate.json.j2").render(ctx), 0o640
    )
    control = RenderedFile(
        f"{node.install_dir}/bin/senatectl", env.get_template("senatectl.sh.j2").render(ctx), 0o755
    )
    unit = None
    if service == "systemd":
        unit = RenderedFile(
            "/etc/systemd/system/senate.service",
            env.get_template("senate.service.j2").render(ctx),
            0o644,
        )
    tls = tuple(RenderedFile(p, c, m) for p, c, m in secure.node_files(inv.secrets, node))
    return Rendered(config=config, control=control, unit=unit, tls=tls)
