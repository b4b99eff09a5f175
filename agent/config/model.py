"""The agent's configuration as one frozen `AgentConfig` (ConfigError, the error a user's config
causes, lives in agent/errors.py so that the parts config validates with can raise it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.dns.config import DNSConfig
from agent.metrics.config import TelemetryConfig
from agent.tlsutil import HTTPSConfig, RPCTLSConfig
from agent.version import PROTOCOL_DEFAULT


@dataclass(frozen=True, slots=True)
class Ports:
    dns: int = 8600
    http: int = 8500
    #: the HTTP API over TLS (off: -1); needs cert_file and key_file
    https: int = -1
    rpc: int = 8400
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300


@dataclass(frozen=True, slots=True)
class Addresses:
    http: str = ""
    https: str = ""
    dns: str = ""
    rpc: str = ""


@dataclass(frozen=True, slots=True)
class ACLConfig:
    """Consul 1.x's `acl` block (and the legacy keys it replaced): off unless enabled."""

    enabled: bool = False
    #: the datacenter whose servers hold the tokens, policies and roles (`primary_datacenter`,
    #: legacy `acl_datacenter`); "" means this agent's own datacenter
    primary_datacenter: str = ""
    default_policy: str = "allow"
    down_policy: str = "extend-cache"
    enable_key_list_policy: bool = False
    #: tokens set through /v1/agent/token/<kind> survive a restart (<data_dir>/acl-tokens.json)
    enable_token_persistence: bool = False
    token_ttl: float = 30.0
    policy_ttl: float = 30.0
    role_ttl: float = 30.0
    token_initial_management: str = ""
    token_agent_recovery: str = ""
    token_agent: str = ""
    token_default: str = ""
    token_config_file_service_registration: str = ""

    @property
    def identity_ttl(self) -> float:
        """How long a resolved token is cached away from the primary's state: a token is
        resolved with its policies and roles in one answer, so the shortest of token_ttl,
        policy_ttl and role_ttl bounds how stale any of them can be."""
        return min(self.token_ttl, self.policy_ttl, self.role_ttl)


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
    dns_config: DNSConfig = field(default_factory=DNSConfig)
    leave_on_terminate: bool | None = None  # None: Consul's default for the agent's role
    skip_leave_on_interrupt: bool | None = None
    rejoin_after_leave: bool = False
    services: tuple[dict[str, Any], ...] = ()
    checks: tuple[dict[str, Any], ...] = ()
    #: `watches` of the config files: each runs in the agent as `senate watch` would
    watches: tuple[dict[str, Any], ...] = ()
    raft_multiplier: int = 0  # 0: unset, which Consul 0.7 treats as 1 (5 for production)
    #: 3: raft names servers by node ID (Consul 1.x); 2: by address, as senate did before,
    #: for a rolling upgrade of a datacenter whose servers still run protocol 2
    raft_protocol: int = 3
    reconnect_timeout: float = 72 * 3600.0
    reconnect_timeout_wan: float = 72 * 3600.0
    dev: bool = False
    pid_file: str = ""
    protocol: int = PROTOCOL_DEFAULT
    node_meta: tuple[tuple[str, str], ...] = ()
    disable_update_check: bool = False
    #: run script checks (`args` / `script`); off by default as in Consul >= 0.9.4
    enable_script_checks: bool = False
    #: run script checks only when they come from config files (Consul >= 1.3.0)
    enable_local_script_checks: bool = False
    # Consul's check_update_interval: a check's output alone reaches the servers this often
    # (status changes at once); 0 syncs every output change at once.
    check_update_interval: float = 300.0
    #: ignore `senate exec` requests: off unless enabled, as in Consul >= 0.8 (0.7 ran them)
    disable_remote_exec: bool = True
    #: the log lines also to this file (or <dir>/consul.log), rotated by size and age
    log_file: str = ""
    log_rotate_bytes: int = 0
    log_rotate_duration: float = 24 * 3600.0
    #: rotated files kept: 0 every one, -1 none
    log_rotate_max_files: int = 0
    #: -log-json: hclog's JSON lines (@level, @message, @module, @timestamp)
    log_json: bool = False
    enable_syslog: bool = False
    #: syslog facility of -syslog (Consul's default LOCAL0)
    syslog_facility: str = "LOCAL0"
    https_tls: HTTPSConfig = field(default_factory=HTTPSConfig)
    acl: ACLConfig = field(default_factory=ACLConfig)
    #: the `telemetry` block: metrics sinks, prefix and filters
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    #: the `autopilot` block as set (Consul's field names; durations in seconds): what the
    #: leader starts with until an operator sets the configuration through the API
    autopilot: tuple[tuple[str, Any], ...] = ()
    #: a server that replicates and never votes (`read_replica`, `non_voting_server`)
    read_replica: bool = False
    internal_rpc_tls: RPCTLSConfig = field(default_factory=RPCTLSConfig)
    #: headers added to every HTTP API response (http_config.response_headers)
    http_response_headers: tuple[tuple[str, str], ...] = ()
    #: connections one client address may hold open to the server port (limits.)
    rpc_max_conns_per_client: int = 100
    #: ... and to the HTTP API (limits.http_max_conns_per_client), as Consul's default
    http_max_conns_per_client: int = 200
    #: origins whose pages may call the API from a browser (http_config.allowed_origins)
    http_allowed_origins: tuple[str, ...] = ()
    #: the files that were read, for `reload`
    config_files: tuple[str, ...] = ()
    #: warnings to print under the banner (deprecated flags, keys without effect, skipped files)
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
    def https_addr(self) -> str:
        return self.addresses.https or self.client_addr

    @property
    def dns_addr(self) -> str:
        return self.addresses.dns or self.client_addr

    @property
    def rpc_addr(self) -> str:
        return self.addresses.rpc or self.client_addr

    @property
    def primary_datacenter(self) -> str:
        return self.acl.primary_datacenter or self.datacenter

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
