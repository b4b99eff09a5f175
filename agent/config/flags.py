"""`senate agent`'s command-line flags, with Go's flag package semantics: -flag, --flag,
-flag=value, -flag value; a boolean flag takes `-flag`, `-flag=true|false|1|0|t|f`."""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import ConfigError


class FlagError(ConfigError):
    """A command-line flag is unknown or has a bad value."""


class HelpRequested(Exception):
    """-h / -help / --help was given."""


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    kind: str  # "bool" | "str" | "int" | "list"
    help: str
    #: the config key the flag sets, for flags that are one key (None: handled in load)
    key: str | None = None


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
    _Flag("disable-host-node-id", "bool", "Don't use the host's node ID.", "disable_host_node_id"),
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
    _Flag("ui", "bool", "Enables the built-in static web UI server.", "ui"),
    _Flag("ui-dir", "str", "Path to directory containing the web UI resources.", "ui_dir"),
    _Flag(
        "disable-remote-exec",
        "bool",
        "Disables support for remote execution (on unless -disable-remote-exec=false).",
        "disable_remote_exec",
    ),
    _Flag("hcl", "list", "HCL configuration fragment, read after the config files."),
    _Flag("config-format", "str", "Config files' format (json or hcl), whatever their extension."),
    _Flag("alt-domain", "str", "Alternate domain to use for DNS interface.", "alt_domain"),
    _Flag("grpc-port", "int", "Sets the gRPC API port to listen on.", "ports.grpc"),
    _Flag("https-port", "int", "Sets the HTTPS API port to listen on.", "ports.https"),
    _Flag("serf-lan-port", "int", "Sets the Serf LAN port to listen on.", "ports.serf_lan"),
    _Flag("serf-wan-port", "int", "Sets the Serf WAN port to listen on.", "ports.serf_wan"),
    _Flag("server-port", "int", "Sets the server port to listen on.", "ports.server"),
    _Flag("serf-lan-bind", "str", "Address to bind Serf LAN listeners to.", "serf_lan"),
    _Flag("serf-wan-bind", "str", "Address to bind Serf WAN listeners to.", "serf_wan"),
    _Flag("log-file", "str", "Path to the file the logs get written to.", "log_file"),
    _Flag("log-json", "bool", "Output logs in JSON format.", "log_json"),
    _Flag("log-rotate-bytes", "int", "Maximum number of bytes of a log file.", "log_rotate_bytes"),
    _Flag(
        "log-rotate-duration", "str", "Time after which a log file rotates.", "log_rotate_duration"
    ),
    _Flag(
        "log-rotate-max-files", "int", "Maximum number of log files kept.", "log_rotate_max_files"
    ),
    _Flag(
        "primary-gateway",
        "list",
        "Address of a mesh gateway in the primary datacenter.",
        "primary_gateways",
    ),
    _Flag("raft-protocol", "int", "Sets the Raft protocol version.", "raft_protocol"),
    _Flag("segment", "str", "(Enterprise-only) Sets the network segment to join.", "segment"),
    _Flag(
        "non-voting-server",
        "bool",
        "(Enterprise-only) This flag is used to make the server not participate in the Raft quorum.",
        "read_replica",
    ),
    _Flag(
        "read-replica",
        "bool",
        "(Enterprise-only) The server does not vote in the Raft quorum.",
        "read_replica",
    ),
    _Flag(
        "enable-local-script-checks",
        "bool",
        "Enables health check scripts from configuration file.",
        "enable_local_script_checks",
    ),
    _Flag(
        "default-query-time",
        "str",
        "The default blocking time of a query with ?index.",
        "default_query_time",
    ),
    _Flag(
        "max-query-time",
        "str",
        "The maximum blocking time of a query with ?index.",
        "max_query_time",
    ),
    _Flag(
        "disable-keyring-file",
        "bool",
        "Disables the backing up of the keyring to a file.",
        "disable_keyring_file",
    ),
    _Flag("ui-content-path", "str", "Sets the external UI path to a string.", "ui_content_path"),
    _Flag(
        "auto-reload-config",
        "bool",
        "Watches config files for changes and reloads them.",
        "auto_reload_config",
    ),
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
    for f in sorted(_FLAGS, key=lambda f: f.name):
        arg = "" if f.kind == "bool" else "=<value>"
        lines.append(f"  -{f.name}{arg}")
        lines.append(f"     {f.help}")
        lines.append("")
    return "\n".join(lines)


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
