"""The agent's configuration: Consul's flags and JSON config files/dirs -> one frozen AgentConfig.

Precedence is Consul's: defaults, then config files in the order given (a directory's `*.json`
files in lexical order), then command-line flags. Lists of addresses, services and checks
accumulate across files; scalars are overridden. Every error a user can cause is a
`ConfigError` whose message names the file (or flag), the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.durations import DurationError, json_seconds, parse_seconds
from agent.logfmt import LEVEL_BY_NAME
from agent.version import PROTOCOL_DEFAULT, PROTOCOL_MAX, PROTOCOL_MIN

if TYPE_CHECKING:
    from agent.dns.config import DNSConfig


class ConfigError(Exception):
    """A configuration a user wrote is invalid; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Ports:
    dns: int = 8600
    http: int = 8500
    https: int = -1
    rpc: int = 8400
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300


@dataclass(frozen=True, slots=True)
class Addresses:
    http: str = ""
    dns: str = ""
    rpc: str = ""


def _default_dns_config() -> DNSConfig:
    from agent.dns.config import DNSConfig  # agent.dns.config imports this module

    return DNSConfig()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    datacenter: str = "dc1"
    data_dir: str = ""
    node_name: str = ""
    node_id: str = ""
    server: bool = False
    bootstrap: bool = False
    bootstrap_expect: int = 0
    bind_addr: str = "0.0.0.0"
    advertise_addr: str = ""
    advertise_addr_wan: str = ""
    client_addr: str = "127.0.0.1"
    ports: Ports = field(default_factory=Ports)
    addresses: Addresses = field(default_factory=Addresses)
    start_join: tuple[str, ...] = ()
    start_join_wan: tuple[str, ...] = ()
    retry_join: tuple[str, ...] = ()
    retry_join_wan: tuple[str, ...] = ()
    retry_interval: float = 30.0
    retry_interval_wan: float = 30.0
    retry_max: int = 0
    retry_max_wan: int = 0
    encrypt: str = ""
    log_level: str = "INFO"
    domain: str = "consul."
    recursors: tuple[str, ...] = ()
    #: answer other datacenters' DNS names with their nodes' WAN addresses
    translate_wan_addrs: bool = False
    #: everything DNS is configured with, validated at load: domain and recursors (as above,
    #: parsed), translate_wan_addrs and the `dns_config` block (agent/dns/config.py)
    dns_config: DNSConfig = field(default_factory=_default_dns_config)
    leave_on_terminate: bool | None = None  # None: Consul's default for the agent's role
    skip_leave_on_interrupt: bool | None = None
    rejoin_after_leave: bool = False
    services: tuple[dict[str, Any], ...] = ()
    checks: tuple[dict[str, Any], ...] = ()
    raft_multiplier: int = 0  # 0: unset, which Consul 0.7 treats as 1 (5 for production)
    reconnect_timeout: float = 72 * 3600.0
    reconnect_timeout_wan: float = 72 * 3600.0
    dev: bool = False
    pid_file: str = ""
    protocol: int = PROTOCOL_DEFAULT
    node_meta: tuple[tuple[str, str], ...] = ()
    disable_update_check: bool = False
    #: run script checks (`args` / `script`); off by default as in Consul >= 0.9.4
    enable_script_checks: bool = False
    # Consul's check_update_interval: a check's output alone reaches the servers this often
    # (status changes at once); 0 syncs every output change at once.
    check_update_interval: float = 300.0
    #: ignore `senate exec` requests (Consul 0.7's default: they run)
    disable_remote_exec: bool = False
    enable_syslog: bool = False
    ui: bool = False
    ui_dir: str = ""
    #: Consul keys that are accepted and kept but do not change behaviour here.
    passthrough: tuple[tuple[str, str], ...] = ()
    #: the files that were read, for `reload`
    config_files: tuple[str, ...] = ()
    #: warnings to print under the banner (e.g. the deprecated -dc flag)
    warnings: tuple[str, ...] = ()

    # ---- derived values -------------------------------------------------------------
    @property
    def advertise(self) -> str:
        return self.advertise_addr or self.bind_addr

    @property
    def advertise_wan(self) -> str:
        return self.advertise_addr_wan or self.advertise

    @property
    def http_addr(self) -> str:
        return self.addresses.http or self.client_addr

    @property
    def dns_addr(self) -> str:
        return self.addresses.dns or self.client_addr

    @property
    def rpc_addr(self) -> str:
        return self.addresses.rpc or self.client_addr

    @property
    def leave_on_term(self) -> bool:
        if self.leave_on_terminate is not None:
            return self.leave_on_terminate
        return not self.server

    @property
    def skip_leave_on_int(self) -> bool:
        if self.skip_leave_on_interrupt is not None:
            return self.skip_leave_on_interrupt
        return self.server

    @property
    def effective_raft_multiplier(self) -> int:
        return self.raft_multiplier or 1


# ------------------------------------------------------------------------------------------
# JSON config files
# ------------------------------------------------------------------------------------------


def _expect_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {json.dumps(v)}")
    return v


def _expect_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected a boolean (true or false), got {json.dumps(v)}")
    return v


def _expect_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected an integer, got {json.dumps(v)}")
    return v


def _expect_port(v: Any) -> int:
    n = _expect_int(v)
    if n < -1 or n > 65535:
        raise ValueError(f"expected a port number (0-65535, or -1 to disable), got {n}")
    return n


def _expect_str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of strings, got {json.dumps(v)}")
    return tuple(v)


def parse_duration(text: str) -> float:
    """A config or flag duration ("30s", "1m30s", "500ms") -> seconds; never negative."""
    try:
        seconds = parse_seconds(text)
    except DurationError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f'expected a duration such as "30s" or "1m", got {json.dumps(text)}')
    return seconds


def _expect_duration(v: Any) -> float:
    """A duration string (never negative) or a number of nanoseconds, as Consul accepts."""
    try:
        return json_seconds(v, parse_duration)
    except TypeError:
        if isinstance(v, bool):
            raise ValueError(f"expected a duration, got {json.dumps(v)}") from None
        raise ValueError(f"expected a string, got {json.dumps(v)}") from None


def _expect_log_level(v: Any) -> str:
    s = _expect_str(v)
    if s.lower() not in LEVEL_BY_NAME:
        raise ValueError(f"expected one of trace, debug, info, warn, err, got {json.dumps(v)}")
    return s.upper()


def _expect_ip(v: Any) -> str:
    s = _expect_str(v)
    try:
        ipaddress.ip_address(s)
    except ValueError:
        raise ValueError(f"expected an IP address, got {json.dumps(v)}") from None
    return s


def _expect_client_addr(v: Any) -> str:
    s = _expect_str(v)
    for part in s.split():
        try:
            ipaddress.ip_address(part)
        except ValueError:
            raise ValueError(f"expected an IP address, got {json.dumps(v)}") from None
    return s


def _expect_node_id(v: Any) -> str:
    s = _expect_str(v)
    try:
        uuid.UUID(s)
    except ValueError:
        raise ValueError(f"expected a UUID such as {uuid.uuid4()}, got {json.dumps(v)}") from None
    return s.lower()


def _expect_protocol(v: Any) -> int:
    n = _expect_int(v)
    if not PROTOCOL_MIN <= n <= PROTOCOL_MAX:
        raise ValueError(
            f"expected a protocol version between {PROTOCOL_MIN} and {PROTOCOL_MAX}, got {n}"
        )
    return n


def _expect_nonneg(v: Any) -> int:
    n = _expect_int(v)
    if n < 0:
        raise ValueError(f"expected a non-negative integer, got {n}")
    return n


def _expect_datacenter(v: Any) -> str:
    s = _expect_str(v)
    if not re.fullmatch(r"[a-zA-Z0-9_-]+", s):
        raise ValueError(
            f"expected a datacenter name of letters, digits, '-' and '_', got {json.dumps(v)}"
        )
    return s.lower()


def _expect_encrypt(v: Any) -> str:
    import base64
    import binascii

    s = _expect_str(v)
    try:
        key = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected a base64-encoded key (see `senate keygen`)") from None
    if len(key) not in (16, 24, 32):
        raise ValueError(f"expected a key of 16, 24 or 32 bytes, got {len(key)} bytes")
    return s


def _expect_obj(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {json.dumps(v)}")
    return v


def _expect_service(v: Any) -> dict[str, Any]:
    from agent.local.registry import validate_config_service

    svc = _expect_obj(v)
    if not isinstance(svc.get("name"), str) or not svc["name"]:
        raise ValueError('expected a service object with a "name" string')
    if "port" in svc:
        _expect_port(svc["port"])
    if "tags" in svc:
        _expect_str_list(svc["tags"])
    validate_config_service(svc)  # its checks: type, durations, status
    return svc


def _expect_check(v: Any) -> dict[str, Any]:
    from agent.local.registry import validate_config_check

    chk = _expect_obj(v)
    if not isinstance(chk.get("name"), str) or not chk["name"]:
        raise ValueError('expected a check object with a "name" string')
    validate_config_check(chk)
    return chk


Conv = Callable[[Any], Any]

#: JSON key -> (AgentConfig field, converter)
_SCALARS: dict[str, tuple[str, Conv]] = {
    "datacenter": ("datacenter", _expect_datacenter),
    "data_dir": ("data_dir", _expect_str),
    "node_name": ("node_name", _expect_str),
    "node_id": ("node_id", _expect_node_id),
    "server": ("server", _expect_bool),
    "bootstrap": ("bootstrap", _expect_bool),
    "bootstrap_expect": ("bootstrap_expect", _expect_nonneg),
    "bind_addr": ("bind_addr", _expect_ip),
    "advertise_addr": ("advertise_addr", _expect_ip),
    "advertise_addr_wan": ("advertise_addr_wan", _expect_ip),
    "client_addr": ("client_addr", _expect_client_addr),
    "retry_interval": ("retry_interval", _expect_duration),
    "retry_interval_wan": ("retry_interval_wan", _expect_duration),
    "retry_max": ("retry_max", _expect_nonneg),
    "retry_max_wan": ("retry_max_wan", _expect_nonneg),
    "encrypt": ("encrypt", _expect_encrypt),
    "log_level": ("log_level", _expect_log_level),
    "domain": ("domain", _expect_str),
    "leave_on_terminate": ("leave_on_terminate", _expect_bool),
    "skip_leave_on_interrupt": ("skip_leave_on_interrupt", _expect_bool),
    "rejoin_after_leave": ("rejoin_after_leave", _expect_bool),
    "reconnect_timeout": ("reconnect_timeout", _expect_duration),
    "reconnect_timeout_wan": ("reconnect_timeout_wan", _expect_duration),
    "pid_file": ("pid_file", _expect_str),
    "protocol": ("protocol", _expect_protocol),
    "disable_update_check": ("disable_update_check", _expect_bool),
    "enable_script_checks": ("enable_script_checks", _expect_bool),
    "check_update_interval": ("check_update_interval", _expect_duration),
    "disable_remote_exec": ("disable_remote_exec", _expect_bool),
    "enable_syslog": ("enable_syslog", _expect_bool),
    "ui": ("ui", _expect_bool),
    "ui_dir": ("ui_dir", _expect_str),
}
_LISTS: dict[str, tuple[str, Conv]] = {
    "start_join": ("start_join", _expect_str_list),
    "start_join_wan": ("start_join_wan", _expect_str_list),
    "retry_join": ("retry_join", _expect_str_list),
    "retry_join_wan": ("retry_join_wan", _expect_str_list),
    "recursors": ("recursors", _expect_str_list),
}
_PORT_KEYS = {f.name for f in dataclasses.fields(Ports)}
_ADDRESS_KEYS = {f.name for f in dataclasses.fields(Addresses)}
#: Kept as given until finish() validates them with domain and recursors (agent/dns/config.py).
_DNS_KEYS = ("dns_config", "translate_wan_addrs")
#: Consul keys accepted for compatibility but not acted upon (yet).
_PASSTHROUGH = {
    "acl_datacenter",
    "acl_default_policy",
    "acl_down_policy",
    "acl_master_token",
    "acl_token",
    "acl_ttl",
    "acl_agent_token",
    "acl_agent_master_token",
    "acl_enforce_version_8",
    "atlas_infrastructure",
    "atlas_token",
    "atlas_join",
    "atlas_endpoint",
    "ca_file",
    "cert_file",
    "key_file",
    "verify_incoming",
    "verify_outgoing",
    "verify_server_hostname",
    "http_api_response_headers",
    "telemetry",
    "statsd_addr",
    "statsite_addr",
    "statsite_prefix",
    "dogstatsd_addr",
    "syslog_facility",
    "disable_host_node_id",
    "enable_debug",
    "session_ttl_min",
    "unix_sockets",
    "watches",
    "disable_coordinates",
    "serf_lan_bind",
    "serf_wan_bind",
    "raft_protocol",
    "autopilot",
    "leave_on_interrupt",
    "encrypt_verify_incoming",
    "encrypt_verify_outgoing",
    "tls_min_version",
    "ca_path",
    "disable_anonymous_signature",
}


def _apply_json(obj: Any, source: str, acc: dict[str, Any]) -> None:
    """Merge one parsed config document into `acc` (field name -> value)."""
    if not isinstance(obj, dict):
        raise ConfigError(f"Error decoding '{source}': expected a JSON object at the top level")

    def bad(key: str, exc: Exception) -> ConfigError:
        return ConfigError(f"Error decoding '{source}': key '{key}': {exc}")

    for key, value in obj.items():
        try:
            if key in _SCALARS:
                name, conv = _SCALARS[key]
                acc[name] = conv(value)
            elif key in _LISTS:
                name, conv = _LISTS[key]
                acc[name] = tuple(acc.get(name, ())) + conv(value)
            elif key == "ports":
                ports = dict(acc.get("ports", {}))
                for pk, pv in _expect_obj(value).items():
                    if pk not in _PORT_KEYS:
                        raise bad(
                            f"ports.{pk}",
                            ValueError(
                                f"unknown key; expected one of {', '.join(sorted(_PORT_KEYS))}"
                            ),
                        )
                    try:
                        ports[pk] = _expect_port(pv)
                    except ValueError as exc:
                        raise bad(f"ports.{pk}", exc) from None
                acc["ports"] = ports
            elif key == "addresses":
                addrs = dict(acc.get("addresses", {}))
                for ak, av in _expect_obj(value).items():
                    if ak not in _ADDRESS_KEYS:
                        raise bad(
                            f"addresses.{ak}",
                            ValueError(
                                f"unknown key; expected one of {', '.join(sorted(_ADDRESS_KEYS))}"
                            ),
                        )
                    try:
                        addrs[ak] = _expect_client_addr(av)
                    except ValueError as exc:
                        raise bad(f"addresses.{ak}", exc) from None
                acc["addresses"] = addrs
            elif key == "performance":
                for pk, pv in _expect_obj(value).items():
                    if pk != "raft_multiplier":
                        raise bad(
                            f"performance.{pk}", ValueError("unknown key; expected raft_multiplier")
                        )
                    try:
                        n = _expect_int(pv)
                        if not 1 <= n <= 10:
                            raise ValueError(f"expected an integer between 1 and 10, got {n}")
                    except ValueError as exc:
                        raise bad("performance.raft_multiplier", exc) from None
                    acc["raft_multiplier"] = n
            elif key in ("service", "services"):
                items = value if key == "services" else [value]
                if not isinstance(items, list):
                    raise ValueError("expected a list of service objects")
                acc["services"] = tuple(acc.get("services", ())) + tuple(
                    _expect_service(s) for s in items
                )
            elif key in ("check", "checks"):
                items = value if key == "checks" else [value]
                if not isinstance(items, list):
                    raise ValueError("expected a list of check objects")
                acc["checks"] = tuple(acc.get("checks", ())) + tuple(
                    _expect_check(c) for c in items
                )
            elif key == "node_meta":
                meta = _expect_obj(value)
                for mk, mv in meta.items():
                    if not isinstance(mv, str):
                        raise bad(
                            f"node_meta.{mk}",
                            ValueError(f"expected a string, got {json.dumps(mv)}"),
                        )
                acc["node_meta"] = tuple(sorted(meta.items()))
            elif key in _DNS_KEYS:
                acc[key] = value  # the last file's, as for a scalar
            elif key in _PASSTHROUGH:
                acc.setdefault("passthrough", {})[key] = json.dumps(value)
            else:
                raise ConfigError(f"Error decoding '{source}': invalid config key {key}")
        except ValueError as exc:
            raise bad(key, exc) from None


def _read_json_file(path: Path, acc: dict[str, Any]) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Error reading '{path}': {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Error decoding '{path}': not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"Error decoding '{path}': invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    _apply_json(obj, str(path), acc)
    acc.setdefault("config_files", [])
    acc["config_files"] = [*acc["config_files"], str(path)]


def read_config_path(path: str | Path, acc: dict[str, Any], *, is_dir: bool | None = None) -> None:
    """Read a config file, or every *.json file of a directory in lexical order."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"Error reading '{p}': no such file or directory")
    if p.is_dir():
        if is_dir is False:
            raise ConfigError(f"Error reading '{p}': is a directory, expected a file")
        for child in sorted(p.iterdir()):
            if child.is_file() and child.suffix == ".json":
                _read_json_file(child, acc)
    else:
        if is_dir is True:
            raise ConfigError(f"Error reading '{p}': is not a directory")
        _read_json_file(p, acc)


# ------------------------------------------------------------------------------------------
# Command-line flags (Go's flag package semantics: -flag, --flag, -flag=value, -flag value)
# ------------------------------------------------------------------------------------------


class FlagError(ConfigError):
    """A command-line flag is unknown or has a bad value."""


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    kind: str  # "bool" | "str" | "list"
    help: str


_FLAGS: tuple[_Flag, ...] = (
    _Flag("advertise", "str", "Sets the advertise address to use."),
    _Flag(
        "advertise-wan", "str", "Sets address to advertise on WAN instead of -advertise address."
    ),
    _Flag("bind", "str", "Sets the bind address for cluster communication."),
    _Flag("bootstrap", "bool", "Sets server to bootstrap mode."),
    _Flag("bootstrap-expect", "str", "Sets server to expect bootstrap mode."),
    _Flag("client", "str", "Sets the address to bind for client access (HTTP, DNS, RPC)."),
    _Flag("config-dir", "list", "Path to a directory to read configuration files from."),
    _Flag("config-file", "list", "Path to a JSON file to read configuration from."),
    _Flag("data-dir", "str", "Path to a data directory to store agent state."),
    _Flag("datacenter", "str", "Datacenter of the agent."),
    _Flag("dc", "str", "Datacenter of the agent (deprecated: use datacenter instead)."),
    _Flag("dev", "bool", "Starts the agent in development mode."),
    _Flag("disable-host-node-id", "bool", "Don't use the host's node ID."),
    _Flag("dns-port", "str", "DNS port to use."),
    _Flag("domain", "str", "Domain to use for DNS interface."),
    _Flag("enable-script-checks", "bool", "Enables health check scripts."),
    _Flag("encrypt", "str", "Provides the gossip encryption key."),
    _Flag("http-port", "str", "Sets the HTTP API port to listen on."),
    _Flag("join", "list", "Address of an agent to join at start time."),
    _Flag("join-wan", "list", "Address of an agent to join -wan at start time."),
    _Flag("log-level", "str", "Log level of the agent."),
    _Flag("node", "str", "Name of this node. Must be unique in the cluster."),
    _Flag("node-id", "str", "A unique ID for this node across space and time."),
    _Flag("node-meta", "list", "An arbitrary metadata key/value pair for this node (key:value)."),
    _Flag("pid-file", "str", "Path to file to store agent PID."),
    _Flag("protocol", "str", "Sets the protocol version."),
    _Flag("raft-multiplier", "str", "Scales Raft's timing (performance.raft_multiplier)."),
    _Flag("recursor", "list", "Address of an upstream DNS server."),
    _Flag("rejoin", "bool", "Ignores a previous leave and attempts to rejoin the cluster."),
    _Flag("retry-interval", "str", "Time to wait between join attempts."),
    _Flag("retry-interval-wan", "str", "Time to wait between join -wan attempts."),
    _Flag("retry-join", "list", "Address of an agent to join at start time with retries enabled."),
    _Flag("retry-join-wan", "list", "Address of an agent to join -wan with retries enabled."),
    _Flag("retry-max", "str", "Maximum number of join attempts. Defaults to 0 (retry forever)."),
    _Flag("retry-max-wan", "str", "Maximum number of join -wan attempts (0: forever)."),
    _Flag("server", "bool", "Switches agent to server mode."),
    _Flag("syslog", "bool", "Enables logging to syslog."),
    _Flag("ui", "bool", "Enables the built-in static web UI server."),
    _Flag("ui-dir", "str", "Path to directory containing the web UI resources."),
)
FLAGS_BY_NAME = {f.name: f for f in _FLAGS}


def flags_help() -> str:
    lines = [
        "Usage: senate agent [options]",
        "",
        "  Starts the Senate agent and runs until an interrupt is received.",
        "",
        "Options:",
        "",
    ]
    for f in _FLAGS:
        arg = "" if f.kind == "bool" else "=<value>"
        lines.append(f"  -{f.name}{arg}")
        lines.append(f"     {f.help}")
        lines.append("")
    return "\n".join(lines)


class HelpRequested(Exception):
    """-h / -help / --help was given."""


def parse_flags(argv: list[str]) -> list[tuple[str, str]]:
    """Parse argv into (flag, value) pairs in order; bool flags get "true"/"false"."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            if i < len(argv):
                raise FlagError(f"unexpected argument: {argv[i]}")
            break
        if not arg.startswith("-") or arg == "-":
            raise FlagError(f"unexpected argument: {arg}")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, eq, value = body.partition("=")
        if name in ("h", "help"):
            raise HelpRequested
        flag = FLAGS_BY_NAME.get(name)
        if flag is None:
            raise FlagError(f"flag provided but not defined: -{name}")
        if flag.kind == "bool":
            if eq:
                if value.lower() not in ("true", "false", "1", "0", "t", "f"):
                    raise FlagError(
                        f'invalid boolean value "{value}" for -{name}: expected true or false'
                    )
                value = "true" if value.lower() in ("true", "1", "t") else "false"
            else:
                value = "true"
        elif not eq:
            if i >= len(argv):
                raise FlagError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        out.append((name, value))
    return out


def _flag_value(name: str, value: str, conv: Conv) -> Any:
    try:
        return conv(value)
    except ValueError as exc:
        raise FlagError(f"invalid value {json.dumps(value)} for flag -{name}: {exc}") from None


def _int_from_text(v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise ValueError("expected an integer") from None


def _ip_host(v: str) -> str:
    return _expect_ip(v)


def default_node_name() -> str:
    return socket.gethostname().split(".")[0] or "senate"


def load(argv: list[str]) -> AgentConfig:
    """Build the AgentConfig for `senate agent <argv>`; raises ConfigError / HelpRequested."""
    pairs = parse_flags(argv)
    acc: dict[str, Any] = {}
    warnings: list[str] = []
    dev = any(n == "dev" and v == "true" for n, v in pairs)
    if dev:
        acc.update(
            server=True,
            bootstrap=True,
            bind_addr="127.0.0.1",
            dev=True,
            log_level="DEBUG",
            disable_update_check=True,
        )
    # Config files first (in flag order), then the other flags on top.
    for name, value in pairs:
        if name == "config-file":
            read_config_path(value, acc, is_dir=False)
        elif name == "config-dir":
            read_config_path(value, acc, is_dir=True)
    flag_acc: dict[str, Any] = {}
    flag_lists: dict[str, list[str]] = {}
    ports: dict[str, int] = dict(acc.get("ports", {}))
    meta: dict[str, str] = dict(acc.get("node_meta", ()))
    for name, value in pairs:
        if name in ("config-file", "config-dir"):
            continue
        if name == "dc":
            warnings.append("WARNING: the 'dc' flag has been deprecated. Use 'datacenter' instead")
            flag_acc["datacenter"] = _flag_value(name, value, _expect_datacenter)
        elif name == "datacenter":
            flag_acc["datacenter"] = _flag_value(name, value, _expect_datacenter)
        elif name in ("server", "bootstrap", "dev"):
            flag_acc[name] = value == "true"
        elif name == "rejoin":
            flag_acc["rejoin_after_leave"] = value == "true"
        elif name == "syslog":
            flag_acc["enable_syslog"] = value == "true"
        elif name == "ui":
            flag_acc["ui"] = value == "true"
        elif name == "enable-script-checks":
            flag_acc["enable_script_checks"] = value == "true"
        elif name == "disable-host-node-id":
            pass
        elif name == "bootstrap-expect":
            flag_acc["bootstrap_expect"] = _flag_value(
                name, value, lambda v: _expect_nonneg(_int_from_text(v))
            )
        elif name == "bind":
            flag_acc["bind_addr"] = _flag_value(name, value, _ip_host)
        elif name == "advertise":
            flag_acc["advertise_addr"] = _flag_value(name, value, _ip_host)
        elif name == "advertise-wan":
            flag_acc["advertise_addr_wan"] = _flag_value(name, value, _ip_host)
        elif name == "client":
            flag_acc["client_addr"] = _flag_value(name, value, _expect_client_addr)
        elif name == "data-dir":
            flag_acc["data_dir"] = value
        elif name == "node":
            flag_acc["node_name"] = value
        elif name == "node-id":
            flag_acc["node_id"] = _flag_value(name, value, _expect_node_id)
        elif name == "encrypt":
            flag_acc["encrypt"] = _flag_value(name, value, _expect_encrypt)
        elif name == "domain":
            flag_acc["domain"] = value
        elif name == "log-level":
            flag_acc["log_level"] = _flag_value(name, value, _expect_log_level)
        elif name == "pid-file":
            flag_acc["pid_file"] = value
        elif name == "protocol":
            flag_acc["protocol"] = _flag_value(
                name, value, lambda v: _expect_protocol(_int_from_text(v))
            )
        elif name == "raft-multiplier":
            flag_acc["raft_multiplier"] = _flag_value(
                name,
                value,
                lambda v: (
                    _expect_int(_int_from_text(v)) if 1 <= _int_from_text(v) <= 10 else _range_err()
                ),
            )
        elif name in ("retry-interval", "retry-interval-wan"):
            flag_acc[name.replace("-", "_")] = _flag_value(name, value, parse_duration)
        elif name in ("retry-max", "retry-max-wan"):
            flag_acc[name.replace("-", "_")] = _flag_value(
                name, value, lambda v: _expect_nonneg(_int_from_text(v))
            )
        elif name in ("http-port", "dns-port"):
            ports[name.split("-")[0]] = _flag_value(
                name, value, lambda v: _expect_port(_int_from_text(v))
            )
        elif name == "node-meta":
            k, sep, v = value.partition(":")
            if not sep or not k:
                raise FlagError(f'invalid value "{value}" for flag -node-meta: expected key:value')
            meta[k] = v
        elif name in ("join", "join-wan", "retry-join", "retry-join-wan", "recursor"):
            flag_lists.setdefault(name, []).append(value)
    list_fields = {
        "join": "start_join",
        "join-wan": "start_join_wan",
        "retry-join": "retry_join",
        "retry-join-wan": "retry_join_wan",
        "recursor": "recursors",
    }
    for flag_name, values in flag_lists.items():
        fname = list_fields[flag_name]
        acc[fname] = tuple(acc.get(fname, ())) + tuple(values)
    acc.update(flag_acc)
    if ports:
        acc["ports"] = ports
    if meta:
        acc["node_meta"] = tuple(sorted(meta.items()))
    cfg = finish(dict(acc, warnings=tuple(warnings)))
    if not re.fullmatch(r"[a-zA-Z0-9-]{1,63}", cfg.node_name):
        warnings.append(
            f'WARNING: Node name "{cfg.node_name}" will not be discoverable via DNS due to '
            "invalid characters. Valid characters include all alpha-numerics and dashes."
        )
        cfg = dataclasses.replace(cfg, warnings=tuple(warnings))
    return cfg


def _range_err() -> int:
    raise ValueError("expected an integer between 1 and 10")


def finish(acc: dict[str, Any], *, require_data_dir: bool = True) -> AgentConfig:
    """Turn accumulated values into an AgentConfig and check cross-field rules, then the
    DNS settings: a DNSConfigError (a ConfigError) names the DNS key at fault."""
    from agent.dns.config import build_dns_config

    values = dict(acc)
    dns_block = values.pop("dns_config", None)
    translate = values.pop("translate_wan_addrs", False)
    values["ports"] = Ports(**values.get("ports", {}))
    values["addresses"] = Addresses(**values.get("addresses", {}))
    if "passthrough" in values:
        values["passthrough"] = tuple(sorted(values["passthrough"].items()))
    if "config_files" in values:
        values["config_files"] = tuple(values["config_files"])
    if not values.get("node_name"):
        values["node_name"] = default_node_name()
    cfg = AgentConfig(**values)
    validate(cfg, require_data_dir=require_data_dir)
    dns = build_dns_config(
        domain=cfg.domain,
        recursors=cfg.recursors,
        dns_config=dns_block,
        translate_wan_addrs=translate,
    )
    return dataclasses.replace(cfg, translate_wan_addrs=dns.translate_wan_addrs, dns_config=dns)


def validate(cfg: AgentConfig, *, require_data_dir: bool = True) -> None:
    if require_data_dir and not cfg.dev and not cfg.data_dir:
        raise ConfigError("Must specify data directory using -data-dir")
    for name in ("reconnect_timeout", "reconnect_timeout_wan"):
        if getattr(cfg, name) < 8 * 3600:
            raise ConfigError(f"{name} must be >= 8h, got {getattr(cfg, name):g}s")
    if cfg.bootstrap and cfg.bootstrap_expect:
        raise ConfigError(
            "Bootstrap mode and bootstrap_expect / -bootstrap-expect are mutually exclusive"
        )
    if (cfg.bootstrap or cfg.bootstrap_expect) and not cfg.server:
        raise ConfigError("Bootstrap mode requires server mode (-server)")
    if cfg.bind_addr in ("0.0.0.0", "::") and not cfg.advertise_addr:
        # Consul picks the one private IP; we need something routable for gossip.
        pass
    if cfg.data_dir:
        p = Path(cfg.data_dir)
        if p.exists() and not p.is_dir():
            raise ConfigError(f"Error starting agent: data-dir '{cfg.data_dir}' is not a directory")


def resolve_advertise(cfg: AgentConfig) -> str:
    """The address other agents reach us on: advertise, bind, or the host's first address."""
    addr = cfg.advertise
    if addr not in ("0.0.0.0", "::", ""):
        return addr
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            found: str = s.getsockname()[0]
            return found
    except OSError:
        return "127.0.0.1"


def load_files(paths: list[str]) -> AgentConfig:
    """For `senate validate`: read files/dirs only, with the same checks as the agent."""
    acc: dict[str, Any] = {}
    for p in paths:
        read_config_path(p, acc)
    return finish(acc, require_data_dir=False)
