"""The inventory: a YAML file naming datacenters, their servers and clients, and how to reach them.

`load_inventory(path)` parses and validates it (pydantic, unknown keys rejected, every error
named by its YAML path) and resolves defaults, datacenter settings and per-host overrides into
one frozen `Inventory` of `Node`s that the rest of provision works from.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from provision import secure

# Agent settings provision derives itself from the inventory; setting them by hand would
# contradict the layout (a server that is not in `servers`, a data dir outside the host's).
RESERVED_AGENT_KEYS = {
    "datacenter": "the datacenter is the key under `datacenters`",
    "node_name": "set `name` on the host instead",
    "server": "list the host under `servers` or `clients` instead",
    "bootstrap": "provision bootstraps with bootstrap_expect",
    "bootstrap_expect": "provision sets it to the number of servers in the datacenter",
    "bind_addr": "set `host` (or `bind_addr`) on the host instead",
    "data_dir": "set `data_dir` on the host, the datacenter or the defaults instead",
    "retry_join": "provision joins every node to its datacenter's servers",
    "retry_join_wan": "provision joins the servers of every datacenter over WAN",
    "start_join": "provision joins every node to its datacenter's servers",
    "start_join_wan": "provision joins the servers of every datacenter over WAN",
}

# Consul 0.7 agent configuration keys an inventory may set (see Consul's agent/config.go),
# and the telemetry and log-file keys of Consul 1.x (`provision prometheus` scrapes telemetry).
AGENT_KEYS = frozenset(
    {
        "acl_datacenter",
        "acl_default_policy",
        "acl_down_policy",
        "acl_master_token",
        "acl_token",
        "acl_ttl",
        "addresses",
        "advertise_addr",
        "advertise_addr_wan",
        "advertise_addrs",
        "check_update_interval",
        "client_addr",
        "disable_remote_exec",
        "disable_update_check",
        "dns_config",
        "domain",
        "enable_debug",
        "enable_syslog",
        "encrypt",
        "encrypt_verify_incoming",
        "encrypt_verify_outgoing",
        "leave_on_terminate",
        "log_file",
        "log_json",
        "log_level",
        "log_rotate_bytes",
        "log_rotate_duration",
        "log_rotate_max_files",
        "node_meta",
        "performance",
        "ports",
        "raft_protocol",
        "reconnect_timeout",
        "reconnect_timeout_wan",
        "recursors",
        "rejoin_after_leave",
        "retry_interval",
        "retry_interval_wan",
        "retry_max",
        "retry_max_wan",
        "session_ttl_min",
        "skip_leave_on_interrupt",
        "statsd_addr",
        "statsite_addr",
        "syslog_facility",
        "telemetry",
        "translate_wan_addrs",
        "ui",
        "ui_dir",
    }
)

DEFAULT_PORTS = {
    "server": 8300,
    "serf_lan": 8301,
    "serf_wan": 8302,
    "rpc": 8400,
    "http": 8500,
    "https": secure.HTTPS_DEFAULT_PORT,
}
DNS_DEFAULT_PORT = 8600

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_DC_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
ENCRYPT_GENERATE = "generate"

# Agent settings `acl: bootstrap` makes provision set (the legacy acl_* keys would fight it).
ACL_AGENT_KEYS = (
    "acl_datacenter",
    "acl_default_policy",
    "acl_down_policy",
    "acl_master_token",
    "acl_token",
    "acl_ttl",
)
INVENTORY_WIDE = (
    "is set for the whole inventory, under `defaults`: one CA and one ACL system (tokens "
    "resolved by the primary datacenter) serve every datacenter of a federation"
)


class InventoryError(Exception):
    """An inventory that cannot be used; `errors` holds one `path: message` line per problem."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = list(errors)
        super().__init__(f"{source}: invalid inventory\n" + "\n".join(f"  {e}" for e in errors))


# ---------------------------------------------------------------------------------------------
# The YAML schema (pydantic). Every model forbids unknown keys.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SSHSpec(_Strict):
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    jump_host: str | None = None  # "user@host:port", any part but host optional
    connect_timeout: float | None = None

    @field_validator("port")
    @classmethod
    def _port(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 65535:
            raise ValueError(f"port {v} out of range 1-65535")
        return v


class HostSpec(_Strict):
    host: str
    name: str | None = None
    bind_addr: str | None = None
    connection: Literal["ssh", "local"] | None = None
    ssh: SSHSpec | None = None
    install_dir: str | None = None
    data_dir: str | None = None
    service: Literal["auto", "systemd", "launcher"] | None = None
    agent: dict[str, Any] = {}


class DatacenterSpec(_Strict):
    servers: list[HostSpec]
    clients: list[HostSpec] = []
    ssh: SSHSpec | None = None
    install_dir: str | None = None
    data_dir: str | None = None
    agent: dict[str, Any] = {}
    tls: Any = None  # refused with a reason (INVENTORY_WIDE): only `defaults` may set them
    acl: Any = None


class DefaultsSpec(_Strict):
    connection: Literal["ssh", "local"] = "ssh"
    ssh: SSHSpec = SSHSpec()
    install_dir: str = "/opt/senate"
    data_dir: str = "/var/lib/senate"
    service: Literal["auto", "systemd", "launcher"] = "auto"
    python: str = "python3"
    parallel: int = 10
    step_timeout: float = 180.0
    agent: dict[str, Any] = {}
    tls: Literal["generate"] | None = None  # a CA beside the inventory, HTTPS and verify_*
    acl: Literal["bootstrap"] | None = None  # ACLs on, default deny, bootstrapped by `up`

    @field_validator("parallel")
    @classmethod
    def _parallel(cls, v: int) -> int:
        if not 1 <= v <= 256:
            raise ValueError(f"parallel must be 1-256, got {v}")
        return v


class InventorySpec(_Strict):
    defaults: DefaultsSpec = DefaultsSpec()
    datacenters: dict[str, DatacenterSpec]


# ---------------------------------------------------------------------------------------------
# The resolved inventory.


@dataclass(frozen=True, slots=True)
class SSHSettings:
    user: str = "root"
    port: int = 22
    key_file: str | None = None
    jump_host: str | None = None
    connect_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    datacenter: str
    role: Literal["server", "client"]
    host: str  # where provision reaches it (SSH address, or the loopback address for local)
    bind_addr: str
    connection: Literal["ssh", "local"]
    ssh: SSHSettings
    install_dir: str
    data_dir: str
    service: Literal["auto", "systemd", "launcher"]
    python: str
    agent: dict[str, Any] = field(hash=False, compare=False)  # merged user agent settings
    path: str = ""  # YAML path, for messages: datacenters.dc1.servers[0]
    tls: bool = False  # HTTPS with the node's certificate (`tls: generate`)
    acl: bool = False  # ACLs on (`acl: bootstrap`)
    acl_token_file: str | None = None  # the management token, on the controller
    # the agent recovery token: provision's token for what it asks the agent about itself
    recovery_token: str = field(default="", repr=False, hash=False, compare=False)

    @property
    def is_server(self) -> bool:
        return self.role == "server"

    @property
    def client_addr(self) -> str:
        addr = self.agent.get("client_addr", "127.0.0.1")
        return str(addr)

    def port(self, name: str) -> int:
        ports = self.agent.get("ports") or {}
        return int(ports.get(name, DEFAULT_PORTS.get(name, DNS_DEFAULT_PORT)))

    @property
    def reach_addr(self) -> str:
        """Address the node's own CLI/HTTP listen on, as seen from the node itself."""
        ca = self.client_addr
        return "127.0.0.1" if ca in ("0.0.0.0", "::") else ca

    @property
    def rpc_addr(self) -> str:
        return f"{self.reach_addr}:{self.port('rpc')}"

    @property
    def http_addr(self) -> str:
        return f"{self.reach_addr}:{self.port('http')}"

    @property
    def api_url(self) -> str:
        """The node's own HTTP API as provision reaches it on the node: HTTPS with TLS on."""
        if self.tls:
            return f"https://{self.reach_addr}:{self.port('https')}"
        return f"http://{self.http_addr}"

    @property
    def advertise(self) -> str:
        return str(self.agent.get("advertise_addr", self.bind_addr))

    @property
    def serf_lan_addr(self) -> str:
        return f"{self.advertise}:{self.port('serf_lan')}"

    @property
    def server_addr(self) -> str:
        """The server RPC address, as raft peers and `list-peers` name a server."""
        return f"{self.advertise}:{self.port('server')}"


@dataclass(frozen=True, slots=True)
class Inventory:
    path: Path
    nodes: tuple[Node, ...]
    warnings: tuple[str, ...]
    parallel: int
    step_timeout: float
    secrets: secure.Secrets | None = field(default=None, repr=False, hash=False, compare=False)

    @property
    def datacenters(self) -> list[str]:
        seen: list[str] = []
        for n in self.nodes:
            if n.datacenter not in seen:
                seen.append(n.datacenter)
        return seen

    def servers(self, dc: str | None = None) -> list[Node]:
        return [n for n in self.nodes if n.is_server and (dc is None or n.datacenter == dc)]

    def clients(self, dc: str | None = None) -> list[Node]:
        return [n for n in self.nodes if not n.is_server and (dc is None or n.datacenter == dc)]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Loading.


def _fmt_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def _model_for(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """Which schema model the parent of `loc` is, to list the keys it accepts."""
    parts = [p for p in loc[:-1] if not isinstance(p, int)]
    if not parts:
        return InventorySpec
    if parts == ["defaults"]:
        return DefaultsSpec
    if parts[-1] == "ssh":
        return SSHSpec
    if len(parts) == 2 and parts[0] == "datacenters":
        return DatacenterSpec
    if len(parts) == 3 and parts[0] == "datacenters" and parts[2] in ("servers", "clients"):
        return HostSpec
    return None


def _pydantic_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = err["loc"]
        path = _fmt_loc(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            model = _model_for(loc)
            allowed = f" (expected one of: {_allowed_keys(model)})" if model else ""
            out.append(f"{path}: unknown key{allowed}")
        elif kind == "missing":
            out.append(f"{path}: required key missing")
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            out.append(f"{path}: must be one of {expected}, got {err['input']!r}")
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            out.append(f"{path}: {msg}")
        else:
            out.append(f"{path}: {err['msg'].lower()}, got {err['input']!r}")
    return out


def _check_addr(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", value):
        return None
    return f"not an IP address or host name: {value!r}"


def gossip_key_path(inventory_path: Path) -> Path:
    """Where `encrypt: generate` keeps its key: beside the inventory, `<stem>.gossip-key`."""
    return inventory_path.with_name(f"{inventory_path.stem}.gossip-key")


def _gossip_key(inventory_path: Path, create: bool) -> str:
    key_file = gossip_key_path(inventory_path)
    if key_file.exists():
        return key_file.read_text().strip()
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    if create:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    return key


def parse_inventory(text: str, source: str = "<inventory>") -> InventorySpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InventoryError(source, [f"{source}{where}: YAML syntax error: {problem}"]) from None
    if not isinstance(raw, dict):
        raise InventoryError(source, ["(top level): expected a mapping with `datacenters`"])
    try:
        return InventorySpec.model_validate(raw)
    except ValidationError as exc:
        raise InventoryError(source, _pydantic_errors(exc)) from None


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = _merge(out[k], v)
            else:
                out[k] = v
    return out


def _ssh(*layers: SSHSpec | None) -> SSHSettings:
    values: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            values.update(layer.model_dump(exclude_none=True))
    return SSHSettings(**values)


def resolve(spec: InventorySpec, path: Path, create_secrets: bool = True) -> Inventory:
    """Resolve defaults and overrides into nodes, checking what the schema cannot."""
    errors: list[str] = []
    warnings: list[str] = []
    nodes: list[Node] = []
    seen_addr: dict[tuple[str, str], str] = {}
    seen_name: dict[str, str] = {}
    d = spec.defaults
    key: str | None = None
    tls, acl = d.tls is not None, d.acl is not None
    token_file = str(secure.acl_token_path(path)) if acl else None
    if not spec.datacenters:
        errors.append("datacenters: at least one datacenter is required")
    for dc_name, dc in spec.datacenters.items():
        dc_path = f"datacenters.{dc_name}"
        for what in ("tls", "acl"):
            if getattr(dc, what) is not None:
                errors.append(f"{dc_path}.{what}: {what} {INVENTORY_WIDE}")
        if not _DC_RE.match(dc_name):
            errors.append(
                f"{dc_path}: invalid datacenter name (lower-case letters, digits, - and _)"
            )
        if not dc.servers:
            errors.append(f"{dc_path}.servers: a datacenter needs at least one server")
        n_servers = len(dc.servers)
        if n_servers and n_servers % 2 == 0:
            warnings.append(
                f"{dc_path}.servers: {n_servers} servers is an even number: the quorum is "
                f"{n_servers // 2 + 1}, so it tolerates {(n_servers - 1) // 2} failure(s), "
                f"no more than {n_servers - 1} servers would, while adding a node that can fail"
            )
        if n_servers > 7:
            warnings.append(
                f"{dc_path}.servers: {n_servers} servers is more than 7: every write waits for "
                f"a quorum of {n_servers // 2 + 1}, which slows writes and gains little; "
                "3 or 5 servers are recommended"
            )
        for role, hosts in (("server", dc.servers), ("client", dc.clients)):
            for i, h in enumerate(hosts):
                hpath = f"{dc_path}.{role}s[{i}]"
                host_ok = (err := _check_addr(h.host)) is None
                if not host_ok:
                    errors.append(f"{hpath}.host: {err}")
                if h.bind_addr is not None and (err := _check_addr(h.bind_addr)) is not None:
                    errors.append(f"{hpath}.bind_addr: {err}")
                name = h.name or h.host.replace(".", "-")
                if (h.name or host_ok) and not _NAME_RE.match(name):
                    errors.append(f"{hpath}.name: invalid node name {name!r}")
                connection = h.connection or d.connection
                bind = h.bind_addr or h.host
                addr_key = (connection, bind)
                if addr_key in seen_addr:
                    field_name = "bind_addr" if h.bind_addr else "host"
                    errors.append(
                        f"{hpath}.{field_name}: duplicate address {bind}, "
                        f"also at {seen_addr[addr_key]}"
                    )
                else:
                    seen_addr[addr_key] = hpath
                if name in seen_name:
                    errors.append(
                        f"{hpath}.name: duplicate node name {name}, also at {seen_name[name]}"
                    )
                else:
                    seen_name[name] = hpath
                agent = _merge(d.agent, dc.agent, h.agent)
                for layer_path, layer in (
                    ("defaults.agent", d.agent),
                    (f"{dc_path}.agent", dc.agent),
                    (f"{hpath}.agent", h.agent),
                ):
                    for k in layer:
                        if acl and k in ACL_AGENT_KEYS:
                            msg = f"{layer_path}.{k}: set by provision (`acl: bootstrap`)"
                            if msg not in errors:
                                errors.append(msg)
                        elif k in RESERVED_AGENT_KEYS:
                            msg = f"{layer_path}.{k}: set by provision ({RESERVED_AGENT_KEYS[k]})"
                            if msg not in errors:
                                errors.append(msg)
                        elif k not in AGENT_KEYS:
                            msg = f"{layer_path}.{k}: unknown agent setting"
                            if msg not in errors:
                                errors.append(msg)
                if agent.get("encrypt") == ENCRYPT_GENERATE:
                    if key is None:
                        key = _gossip_key(path, create_secrets)
                    agent["encrypt"] = key
                if connection == "local":
                    try:
                        if not ipaddress.ip_address(bind).is_loopback:
                            errors.append(
                                f"{hpath}.host: a local node needs a loopback address "
                                f"(127.0.0.x), got {bind}"
                            )
                    except ValueError:
                        errors.append(f"{hpath}.host: a local node needs a 127.0.0.x address")
                install_dir = h.install_dir or dc.install_dir or d.install_dir
                data_dir = h.data_dir or dc.data_dir or d.data_dir
                install_dir = _expand(install_dir, name, dc_name, path)
                data_dir = _expand(data_dir, name, dc_name, path)
                if connection == "local" and "client_addr" not in agent:
                    # Every local node gets its own HTTP/DNS/RPC address: they share one host.
                    agent["client_addr"] = bind
                nodes.append(
                    Node(
                        name=name,
                        datacenter=dc_name,
                        role="server" if role == "server" else "client",
                        host=h.host,
                        bind_addr=bind,
                        connection=connection,
                        ssh=_ssh(d.ssh, dc.ssh, h.ssh),
                        install_dir=install_dir,
                        data_dir=data_dir,
                        service="launcher" if connection == "local" else (h.service or d.service),
                        python=d.python,
                        agent=agent,
                        path=hpath,
                        tls=tls,
                        acl=acl,
                        acl_token_file=token_file,
                    )
                )
    if errors:
        raise InventoryError(str(path), errors)
    try:
        secrets = secure.prepare(path, nodes, tls=tls, acl=acl, create=create_secrets)
    except (OSError, ValueError) as exc:
        raise InventoryError(
            str(path), [f"defaults: cannot prepare TLS/ACL secrets: {exc}"]
        ) from None
    if secrets is not None:
        nodes = [
            replace(n, recovery_token=secrets.tokens[n.name].recovery) if acl else n for n in nodes
        ]
    return Inventory(
        path=path,
        nodes=tuple(nodes),
        warnings=tuple(warnings),
        parallel=d.parallel,
        step_timeout=d.step_timeout,
        secrets=secrets,
    )


def _expand(template: str, name: str, dc: str, inv_path: Path) -> str:
    """Paths may use {name} and {dc}; a relative path is relative to the inventory's directory."""
    value = template.replace("{name}", name).replace("{dc}", dc)
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        p = (inv_path.parent / p).resolve()
    return str(p)


def load_inventory(path: str | Path, create_secrets: bool = True) -> Inventory:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InventoryError(str(p), [f"cannot read inventory: {exc.strerror}"]) from None
    spec = parse_inventory(text, str(p))
    return resolve(spec, p.absolute(), create_secrets=create_secrets)
