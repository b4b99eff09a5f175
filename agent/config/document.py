"""One parsed config document (a JSON or HCL file, or an `-hcl` fragment) merged into the
accumulator that becomes an AgentConfig.

Every key is first found in Consul's key tree (schema.py); a key Consul does not know is a
ConfigError naming the source, the key and the nearest valid key. A key senate acts on goes
to its handler below; any other known key is recorded in `acc["ignored"]` (key -> source) and
becomes one warning saying it has no effect. Merging is Consul's: a scalar is overridden by a
later source, lists (joins, recursors, services, checks, watches) accumulate, blocks merge
key by key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from agent.config import convert as c
from agent.config.acl_keys import ACL_HANDLERS
from agent.config.schema import FREE, LEAF, SCHEMA, Tree, lookup, nearest
from agent.config.telemetry_keys import TELEMETRY_HANDLERS
from agent.config.tls_keys import TLS_HANDLERS
from agent.errors import ConfigError
from agent.watches import WatchError, parse_watch

Acc = dict[str, Any]
Handler = Callable[[Any, Acc], None]


def _field(name: str, conv: c.Conv) -> Handler:
    def handle(value: Any, acc: Acc) -> None:
        acc[name] = conv(value)

    return handle


def _append(name: str, conv: c.Conv) -> Handler:
    def handle(value: Any, acc: Acc) -> None:
        acc[name] = tuple(acc.get(name, ())) + tuple(conv(value))

    return handle


def _in_block(block: str, name: str, conv: c.Conv) -> Handler:
    def handle(value: Any, acc: Acc) -> None:
        acc.setdefault(block, {})[name] = conv(value)

    return handle


def _definitions(name: str, conv: c.Conv) -> Handler:
    """`service`/`services`, `check`/`checks`: one object or a list (HCL's repeated blocks)."""

    def handle(value: Any, acc: Acc) -> None:
        items = value if isinstance(value, list) else [value]
        acc[name] = tuple(acc.get(name, ())) + tuple(conv(v) for v in items)

    return handle


def _string_map(value: Any) -> dict[str, str]:
    items = value if isinstance(value, list) else [value]
    out: dict[str, str] = {}
    for m in items:
        for k, v in c.expect_obj(m).items():
            if not isinstance(v, str):
                raise ValueError(f"{k}: expected a string, got {json.dumps(v)}")
            out[str(k)] = v
    return out


def _node_meta(value: Any, acc: Acc) -> None:
    meta = dict(acc.get("node_meta", ()))
    meta.update(_string_map(value))
    acc["node_meta"] = tuple(sorted(meta.items()))


def _response_headers(value: Any, acc: Acc) -> None:
    headers = dict(acc.get("http_response_headers", ()))
    headers.update(_string_map(value))
    acc["http_response_headers"] = tuple(headers.items())


def _watches(value: Any, acc: Acc) -> None:
    items = value if isinstance(value, list) else [value]
    for w in items:
        try:
            parse_watch(w)
        except WatchError as exc:
            raise ValueError(f"Failed to parse watch ({json.dumps(w)}): {exc}") from None
    acc["watches"] = tuple(acc.get("watches", ())) + tuple(items)


def _raft_multiplier(value: Any) -> int:
    n = c.expect_int(value)
    if not 1 <= n <= 10:
        raise ValueError(f"expected an integer between 1 and 10, got {n}")
    return n


SYSLOG_FACILITIES = (
    "KERN",
    "USER",
    "MAIL",
    "DAEMON",
    "AUTH",
    "SYSLOG",
    "LPR",
    "NEWS",
    "UUCP",
    "CRON",
    "AUTHPRIV",
    "FTP",
    "LOCAL0",
    "LOCAL1",
    "LOCAL2",
    "LOCAL3",
    "LOCAL4",
    "LOCAL5",
    "LOCAL6",
    "LOCAL7",
)


def _max_files(value: object) -> int:
    n = c.expect_int(value)
    if n < -1:
        raise ValueError(f"expected -1 (keep none), 0 (keep all) or a count, got {n}")
    return n


def _facility(value: str) -> str:
    if value.upper() not in SYSLOG_FACILITIES:
        raise ValueError(f"expected a syslog facility such as LOCAL0, got {json.dumps(value)}")
    return value.upper()


def _dns(name: str) -> Handler:
    def handle(value: Any, acc: Acc) -> None:
        acc.setdefault("dns_config", {})[name] = value  # agent/dns/config.py validates

    return handle


def _dns_soa(name: str) -> Handler:
    def handle(value: Any, acc: Acc) -> None:
        acc.setdefault("dns_config", {}).setdefault("soa", {})[name] = value

    return handle


#: dotted key -> what senate does with it; every other key of the schema has no effect here
HANDLERS: dict[str, Handler] = {
    "datacenter": _field("datacenter", c.expect_datacenter),
    "data_dir": _field("data_dir", c.expect_str),
    "node_name": _field("node_name", c.expect_str),
    "node_id": _field("node_id", c.expect_node_id),
    "server": _field("server", c.expect_bool),
    "bootstrap": _field("bootstrap", c.expect_bool),
    "bootstrap_expect": _field("bootstrap_expect", c.expect_nonneg),
    "bind_addr": _field("bind_addr", c.expect_ip),
    "advertise_addr": _field("advertise_addr", c.expect_ip),
    "advertise_addr_wan": _field("advertise_addr_wan", c.expect_ip),
    "client_addr": _field("client_addr", c.expect_client_addr),
    "retry_interval": _field("retry_interval", c.expect_duration),
    "retry_interval_wan": _field("retry_interval_wan", c.expect_duration),
    "retry_max": _field("retry_max", c.expect_nonneg),
    "retry_max_wan": _field("retry_max_wan", c.expect_nonneg),
    "encrypt": _field("encrypt", c.expect_encrypt),
    "log_level": _field("log_level", c.expect_log_level),
    "domain": _field("domain", c.expect_str),
    "alt_domain": _field("alt_domain", c.expect_str),
    "leave_on_terminate": _field("leave_on_terminate", c.expect_bool),
    "skip_leave_on_interrupt": _field("skip_leave_on_interrupt", c.expect_bool),
    "rejoin_after_leave": _field("rejoin_after_leave", c.expect_bool),
    "reconnect_timeout": _field("reconnect_timeout", c.expect_duration),
    "reconnect_timeout_wan": _field("reconnect_timeout_wan", c.expect_duration),
    "pid_file": _field("pid_file", c.expect_str),
    "protocol": _field("protocol", c.expect_protocol),
    # senate never calls home: the setting holds whatever its value
    "disable_update_check": _field("disable_update_check", c.expect_bool),
    "enable_script_checks": _field("enable_script_checks", c.expect_bool),
    "enable_local_script_checks": _field("enable_local_script_checks", c.expect_bool),
    "check_update_interval": _field("check_update_interval", c.expect_duration),
    "disable_remote_exec": _field("disable_remote_exec", c.expect_bool),
    "enable_syslog": _field("enable_syslog", c.expect_bool),
    "log_file": _field("log_file", c.expect_str),
    "log_json": _field("log_json", c.expect_bool),
    "log_rotate_bytes": _field("log_rotate_bytes", c.expect_nonneg),
    "log_rotate_duration": _field("log_rotate_duration", c.expect_duration),
    "log_rotate_max_files": _field("log_rotate_max_files", _max_files),
    "syslog_facility": _field("syslog_facility", lambda v: _facility(c.expect_str(v))),
    "start_join": _append("start_join", c.expect_str_list),
    "start_join_wan": _append("start_join_wan", c.expect_str_list),
    "retry_join": _append("retry_join", c.expect_str_list),
    "retry_join_wan": _append("retry_join_wan", c.expect_str_list),
    "recursors": _append("recursors", c.expect_str_list),
    "recursor": _append("recursors", c.expect_str_list),
    "translate_wan_addrs": _field("translate_wan_addrs", lambda v: v),
    "service": _definitions("services", c.expect_service),
    "services": _definitions("services", c.expect_service),
    "check": _definitions("checks", c.expect_check),
    "checks": _definitions("checks", c.expect_check),
    "node_meta": _node_meta,
    "watches": _watches,
    "http_config.response_headers": _response_headers,
    "http_config.allowed_origins": _field("http_allowed_origins", c.expect_str_list),
    "limits.rpc_max_conns_per_client": _field("rpc_max_conns_per_client", c.expect_nonneg),
    "limits.http_max_conns_per_client": _field("http_max_conns_per_client", c.expect_nonneg),
    "http_api_response_headers": _response_headers,
    "performance.raft_multiplier": _field("raft_multiplier", _raft_multiplier),
    "raft_protocol": _field("raft_protocol", c.expect_raft_protocol),
    **ACL_HANDLERS,
    **{
        f"autopilot.{key}": _in_block("autopilot", field, conv)
        for key, field, conv in (
            ("cleanup_dead_servers", "CleanupDeadServers", c.expect_bool),
            ("last_contact_threshold", "LastContactThreshold", c.expect_duration),
            ("max_trailing_logs", "MaxTrailingLogs", c.expect_nonneg),
            ("min_quorum", "MinQuorum", c.expect_nonneg),
            ("server_stabilization_time", "ServerStabilizationTime", c.expect_duration),
        )
    },
    "read_replica": _field("read_replica", c.expect_bool),
    "non_voting_server": _field("read_replica", c.expect_bool),
    **{
        f"ports.{p}": _in_block("ports", p, c.expect_port)
        for p in ("dns", "http", "https", "rpc", "serf_lan", "serf_wan", "server")
    },
    **{
        f"addresses.{a}": _in_block("addresses", a, c.expect_client_addr)
        for a in ("dns", "http", "https", "rpc")
    },
    **TLS_HANDLERS,
    **TELEMETRY_HANDLERS,
    **{
        f"dns_config.{k}": _dns(k)
        for k in (
            "node_ttl",
            "service_ttl",
            "allow_stale",
            "max_stale",
            "only_passing",
            "enable_truncate",
            "udp_answer_limit",
            "recursor_timeout",
            "a_record_limit",
            "recursor_strategy",
            "use_cache",
            "cache_max_age",
            "enable_additional_node_meta_txt",
        )
    },
    **{f"dns_config.soa.{k}": _dns_soa(k) for k in ("refresh", "retry", "expire", "min_ttl")},
}


def _walk(value: Any, tree: Tree, prefix: str, source: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every leaf or free-form value of a block, keys canonical."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, dict):
            where = f"key '{prefix[:-1]}'" if prefix else "the top level"
            raise ConfigError(
                f"Error decoding '{source}': {where}: expected an object, got {json.dumps(item)}"
            )
        for key, sub in item.items():
            found = lookup(tree, str(key))
            if found is None:
                hint = nearest(tree, str(key))
                tail = f" (did you mean '{prefix}{hint}'?)" if hint else ""
                raise ConfigError(
                    f"Error decoding '{source}': invalid config key {prefix}{key}{tail}"
                )
            name, node = found
            path = prefix + name
            if isinstance(node, dict) and path not in HANDLERS:
                yield from _walk(sub, node, path + ".", source)
            else:
                assert node in (LEAF, FREE) or path in HANDLERS
                yield path, sub


def apply_document(doc: Any, source: str, acc: Acc) -> None:
    """Merge one parsed document into `acc`; ConfigError names source, key and problem."""
    if not isinstance(doc, dict):
        raise ConfigError(f"Error decoding '{source}': expected an object at the top level")
    for path, value in _walk(doc, SCHEMA, "", source):
        handler = HANDLERS.get(path)
        if handler is None:
            acc.setdefault("ignored", {}).setdefault(path, source)
            continue
        try:
            handler(value, acc)
        except ValueError as exc:
            raise ConfigError(f"Error decoding '{source}': key '{path}': {exc}") from None
