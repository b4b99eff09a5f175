"""`load`: flags and config sources -> one validated AgentConfig, in Consul's precedence:
defaults (and -dev's), config files and directories in the order given, `-hcl` fragments,
then the other command-line flags. Keys without effect here, and files a directory held that
were not read, become warnings printed under the banner."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from pathlib import Path
from typing import Any

from agent.config import convert as c
from agent.config.acl_keys import acl_values
from agent.config.document import apply_document
from agent.config.flags import FLAGS_BY_NAME, FlagError, parse_flags
from agent.config.model import (
    ACLConfig,
    Addresses,
    AgentConfig,
    HTTPSConfig,
    Ports,
    RPCTLSConfig,
)
from agent.config.sources import FORMATS, read_config_path, read_fragment
from agent.config.telemetry_keys import telemetry_config
from agent.config.tls_keys import tls_values, tls_warnings
from agent.dns.config import build_dns_config
from agent.durations import config_seconds
from agent.errors import ConfigError

FLAG_SOURCE = "command-line flags"


def _flag_value(name: str, value: str, conv: c.Conv) -> Any:
    try:
        return conv(value)
    except ValueError as exc:
        raise FlagError(f"invalid value {json.dumps(value)} for flag -{name}: {exc}") from None


def _int_from_text(v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise ValueError("expected an integer") from None


def _range_err() -> int:
    raise ValueError("expected an integer between 1 and 10")


def default_node_name() -> str:
    return socket.gethostname().split(".")[0] or "senate"


def _key_flags_document(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The flags that each set one config key, as a document (`ports.grpc` -> nested)."""
    doc: dict[str, Any] = {}
    for name, value in pairs:
        flag = FLAGS_BY_NAME[name]
        if flag.key is None:
            continue
        typed: Any = value
        if flag.kind == "bool":
            typed = value == "true"
        elif flag.kind == "int":
            typed = _flag_value(name, value, _int_from_text)
        *blocks, leaf = flag.key.split(".")
        node = doc
        for b in blocks:
            node = node.setdefault(b, {})
        if flag.kind == "list":
            node.setdefault(leaf, []).append(value)
        else:
            node[leaf] = typed
    return doc


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
    config_format = ""
    for name, value in pairs:
        if name == "config-format":
            if value not in FORMATS:
                raise FlagError(
                    f"-config-format must be one of {', '.join(FORMATS)}, got {value!r}"
                )
            config_format = value
    # Config files and directories first (in flag order), then -hcl, then the other flags.
    for name, value in pairs:
        if name == "config-file":
            read_config_path(value, acc, is_dir=False, config_format=config_format)
        elif name == "config-dir":
            read_config_path(value, acc, is_dir=True, config_format=config_format)
    for n, text in enumerate((v for name, v in pairs if name == "hcl"), start=1):
        read_fragment(text, n, acc)
    apply_document(_key_flags_document(pairs), FLAG_SOURCE, acc)
    flag_acc: dict[str, Any] = {}
    flag_lists: dict[str, list[str]] = {}
    ports: dict[str, int] = dict(acc.get("ports", {}))
    meta: dict[str, str] = dict(acc.get("node_meta", ()))
    for name, value in pairs:
        if name in ("config-file", "config-dir", "config-format", "hcl") or FLAGS_BY_NAME[name].key:
            continue
        if name == "dc":
            warnings.append("WARNING: the 'dc' flag has been deprecated. Use 'datacenter' instead")
            flag_acc["datacenter"] = _flag_value(name, value, c.expect_datacenter)
        elif name == "datacenter":
            flag_acc["datacenter"] = _flag_value(name, value, c.expect_datacenter)
        elif name in ("server", "bootstrap", "dev"):
            flag_acc[name] = value == "true"
        elif name == "rejoin":
            flag_acc["rejoin_after_leave"] = value == "true"
        elif name == "syslog":
            flag_acc["enable_syslog"] = value == "true"
        elif name == "enable-script-checks":
            flag_acc["enable_script_checks"] = value == "true"
        elif name == "bootstrap-expect":
            flag_acc["bootstrap_expect"] = _flag_value(
                name, value, lambda v: c.expect_nonneg(_int_from_text(v))
            )
        elif name == "bind":
            flag_acc["bind_addr"] = _flag_value(name, value, c.expect_ip)
        elif name == "advertise":
            flag_acc["advertise_addr"] = _flag_value(name, value, c.expect_ip)
        elif name == "advertise-wan":
            flag_acc["advertise_addr_wan"] = _flag_value(name, value, c.expect_ip)
        elif name == "client":
            flag_acc["client_addr"] = _flag_value(name, value, c.expect_client_addr)
        elif name == "data-dir":
            flag_acc["data_dir"] = value
        elif name == "node":
            flag_acc["node_name"] = value
        elif name == "node-id":
            flag_acc["node_id"] = _flag_value(name, value, c.expect_node_id)
        elif name == "encrypt":
            flag_acc["encrypt"] = _flag_value(name, value, c.expect_encrypt)
        elif name == "domain":
            flag_acc["domain"] = value
        elif name == "log-level":
            flag_acc["log_level"] = _flag_value(name, value, c.expect_log_level)
        elif name == "pid-file":
            flag_acc["pid_file"] = value
        elif name == "protocol":
            flag_acc["protocol"] = _flag_value(
                name, value, lambda v: c.expect_protocol(_int_from_text(v))
            )
        elif name == "raft-multiplier":
            flag_acc["raft_multiplier"] = _flag_value(
                name,
                value,
                lambda v: (
                    c.expect_int(_int_from_text(v))
                    if 1 <= _int_from_text(v) <= 10
                    else _range_err()
                ),
            )
        elif name in ("retry-interval", "retry-interval-wan"):
            flag_acc[name.replace("-", "_")] = _flag_value(name, value, config_seconds)
        elif name in ("retry-max", "retry-max-wan"):
            flag_acc[name.replace("-", "_")] = _flag_value(
                name, value, lambda v: c.expect_nonneg(_int_from_text(v))
            )
        elif name in ("http-port", "dns-port"):
            ports[name.split("-")[0]] = _flag_value(
                name, value, lambda v: c.expect_port(_int_from_text(v))
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
    warnings += _ignored_warnings(acc)
    cfg = finish(dict(acc, warnings=tuple(warnings)))
    if not re.fullmatch(r"[a-zA-Z0-9-]{1,63}", cfg.node_name):
        warnings.append(
            f'WARNING: Node name "{cfg.node_name}" will not be discoverable via DNS due to '
            "invalid characters. Valid characters include all alpha-numerics and dashes."
        )
        cfg = dataclasses.replace(cfg, warnings=tuple(warnings))
    return cfg


def _ignored_warnings(acc: dict[str, Any]) -> list[str]:
    out = []
    out += tls_warnings(acc)
    for key, source in sorted(acc.pop("ignored", {}).items()):
        out.append(
            f"WARNING: config key '{key}' (from {source}) is not implemented by senate "
            "and has no effect"
        )
    for path in acc.pop("skipped", []):
        out.append(
            f"WARNING: skipping file {path}, extension must be .hcl or .json, "
            "or config format must be set"
        )
    return out


def finish(acc: dict[str, Any], *, require_data_dir: bool = True) -> AgentConfig:
    """Turn accumulated values into an AgentConfig and check cross-field rules, then the
    DNS settings: a DNSConfigError (a ConfigError) names the DNS key at fault."""
    values = dict(acc)
    dns_block = values.pop("dns_config", None)
    translate = values.pop("translate_wan_addrs", False)
    alt_domain = values.pop("alt_domain", "")
    values["ports"] = Ports(**values.get("ports", {}))
    values["acl"] = ACLConfig(**acl_values(values))
    values["telemetry"] = telemetry_config(values)
    values["autopilot"] = tuple(sorted((values.get("autopilot") or {}).items()))
    https, internal_rpc = tls_values(values)
    values.pop("tls", None)
    values["https_tls"] = HTTPSConfig(**https)
    values["internal_rpc_tls"] = RPCTLSConfig(**internal_rpc)
    values["addresses"] = Addresses(**values.get("addresses", {}))
    if "config_files" in values:
        values["config_files"] = tuple(values["config_files"])
    if not values.get("node_name"):
        values["node_name"] = default_node_name()
    cfg = AgentConfig(**values)
    validate(cfg, require_data_dir=require_data_dir)
    dns = build_dns_config(
        domain=cfg.domain,
        alt_domain=alt_domain,
        recursors=cfg.recursors,
        dns_config=dns_block,
        translate_wan_addrs=translate,
    )
    return dataclasses.replace(cfg, translate_wan_addrs=dns.translate_wan_addrs, dns_config=dns)


def _validate_tls(cfg: AgentConfig) -> None:
    """HTTPS on needs a certificate to serve; then Consul's checks of each protocol's TLS
    settings: the files load, verify_incoming has a CA and a certificate, verify_outgoing a CA."""
    if cfg.ports.https > 0 and not (cfg.https_tls.cert_file and cfg.https_tls.key_file):
        raise ConfigError("HTTPS (ports.https) requires cert_file and key_file")
    if cfg.https_tls != HTTPSConfig() or cfg.internal_rpc_tls != RPCTLSConfig():
        from agent.tlsutil import check_protocol  # ssl is only needed with TLS configured

        check_protocol(cfg.internal_rpc_tls)
        check_protocol(cfg.https_tls)


def validate(cfg: AgentConfig, *, require_data_dir: bool = True) -> None:
    if require_data_dir and not cfg.dev and not cfg.data_dir:
        raise ConfigError("Must specify data directory using -data-dir")
    for name in ("reconnect_timeout", "reconnect_timeout_wan"):
        if getattr(cfg, name) < 8 * 3600:
            raise ConfigError(f"{name} must be >= 8h, got {getattr(cfg, name):g}s")
    _validate_tls(cfg)
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
    warnings = _ignored_warnings(acc)
    return finish(dict(acc, warnings=tuple(warnings)), require_data_dir=False)
