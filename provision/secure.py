"""A locked-down datacenter: the TLS material and ACL tokens an inventory asks for with
`defaults: {tls: generate, acl: bootstrap}`, kept beside the inventory, and what they add to
each node's agent config and files.

Beside `<dir>/<stem>.yml` (every secret mode 0600, made once and then only read, so that the
rendered files stay the same and a second `up` changes nothing):

    <stem>.tls/ca.pem, ca-key.pem       the CA (`senate tls ca create`'s kind; 5 years)
    <stem>.tls/<node>.pem, -key.pem     each node's certificate (server.<dc>.<domain> or
                                        client.<dc>.<domain>, its addresses; 1 year, made again
                                        when it no longer fits the node or has < 30 days left)
    <stem>.tls/cli.pem, cli-key.pem     a certificate for the operator's CLI (HTTPS requires one)
    <stem>.agent-tokens                 per node: its agent token (AccessorID, SecretID) and its
                                        agent recovery token, pre-generated UUIDs
    <stem>.acl-token                    the management token: made by `up` when it bootstraps the
                                        ACLs (`provision.acl`), then used by verify/upgrade/status

The nodes get `<install_dir>/tls/{ca.pem,agent.pem,agent-key.pem}` and, in their config, HTTPS on
`ports.https` (8501) with the `tls` block of Consul's deployment guide (verify_incoming,
verify_outgoing, internal_rpc.verify_server_hostname), and `acl` with default deny, their agent
token and their agent recovery token (which lets provision join, leave and ask an agent about
itself before the ACLs are bootstrapped or while no server answers).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provision.inventory import Node

TLS_GENERATE = "generate"
ACL_BOOTSTRAP = "bootstrap"
HTTPS_DEFAULT_PORT = 8501
CA_DAYS = 1825  # Consul's default for `tls ca create`
CERT_DAYS = 365  # and for `tls cert create`
RENEW_DAYS = 30  # a certificate closer than this to its end is made again by the next `up`
AGENT_POLICY = "senate-agent"
# What an agent needs beyond its node identity (node "<name>" write, service_prefix "" read):
# remote exec's job and results under _rexec/ (when disable_remote_exec is false).
AGENT_POLICY_RULES = 'key_prefix "_rexec" {\n  policy = "write"\n}\n'


def tls_dir(inventory: Path) -> Path:
    """`tls: generate` keeps its CA and certificates here: `<stem>.tls/` beside the inventory."""
    return inventory.with_name(f"{inventory.stem}.tls")


def acl_token_path(inventory: Path) -> Path:
    """`acl: bootstrap` keeps the management token here: `<stem>.acl-token`."""
    return inventory.with_name(f"{inventory.stem}.acl-token")


def agent_tokens_path(inventory: Path) -> Path:
    """The nodes' agent and agent recovery tokens: `<stem>.agent-tokens` (JSON)."""
    return inventory.with_name(f"{inventory.stem}.agent-tokens")


def write_secret(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` to `path` atomically, created with `mode` (never wider for a moment)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# Host-side layout


def host_tls_files(node: Node) -> tuple[str, str, str]:
    """(CA, certificate, key) as the node's agent reads them."""
    d = f"{node.install_dir}/tls"
    return f"{d}/ca.pem", f"{d}/agent.pem", f"{d}/agent-key.pem"


def api_env(node: Node) -> dict[str, str]:
    """The environment the senate CLI (and provision's host-side programs) need to speak HTTPS
    to the node's own agent with the node's certificate; empty without TLS."""
    if not node.tls:
        return {}
    ca, cert, key = host_tls_files(node)
    return {"CONSUL_CACERT": ca, "CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key}


# ---------------------------------------------------------------------------------------------
# ACL tokens


@dataclass(frozen=True, slots=True)
class AgentTokens:
    accessor: str  # the agent token's AccessorID
    secret: str = field(repr=False)  # its SecretID: acl.tokens.agent
    recovery: str = field(repr=False)  # acl.tokens.agent_recovery

    @classmethod
    def new(cls) -> AgentTokens:
        return cls(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))


def _load_agent_tokens(path: Path) -> dict[str, AgentTokens]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {
            name: AgentTokens(str(t["AccessorID"]), str(t["SecretID"]), str(t["Recovery"]))
            for name, t in raw.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable agent tokens ({exc})") from None


def agent_tokens(path: Path, names: Sequence[str], create: bool) -> dict[str, AgentTokens]:
    """Each node's tokens, made once for a node the file does not know yet (and kept, with
    those of nodes no longer in the inventory, so that a node that comes back gets its own)."""
    known = _load_agent_tokens(path)
    missing = [n for n in names if n not in known]
    if missing:
        for n in missing:
            known[n] = AgentTokens.new()
        if create:
            data = {
                n: {"AccessorID": t.accessor, "SecretID": t.secret, "Recovery": t.recovery}
                for n, t in sorted(known.items())
            }
            write_secret(path, json.dumps(data, indent=2) + "\n")
    return {n: known[n] for n in names}


def agent_token_spec(node: Node, tokens: AgentTokens) -> dict[str, Any]:
    """The agent token of `node` as `PUT /v1/acl/token` takes it."""
    return {
        "AccessorID": tokens.accessor,
        "SecretID": tokens.secret,
        "Description": f"agent token of {node.name} ({node.datacenter}), made by provision",
        "NodeIdentities": [{"NodeName": node.name, "Datacenter": node.datacenter}],
        "Policies": [{"Name": AGENT_POLICY}],
    }


def agent_policy_spec() -> dict[str, str]:
    return {
        "Name": AGENT_POLICY,
        "Description": "what a senate agent needs beyond its node identity (provision)",
        "Rules": AGENT_POLICY_RULES,
    }


# ---------------------------------------------------------------------------------------------
# TLS material


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: str
    key: str = field(repr=False)


def _domain(node: Node) -> str:
    return str(node.agent.get("domain") or "consul").strip(".")


def cert_names(node: Node) -> tuple[str, list[str], list[str]]:
    """(common name, DNS names, IP addresses) of the node's certificate: as `senate tls cert
    create -server|-client -dc DC -node NAME` names it, with the addresses the node is reached
    on (127.0.0.1, bind, advertise and a specific client_addr)."""
    dc, domain = node.datacenter, _domain(node)
    if node.is_server:
        cn = f"server.{dc}.{domain}"
        dns = [f"{node.name}.server.{dc}.{domain}", cn, "localhost"]
    else:
        cn = f"client.{dc}.{domain}"
        dns = [cn, "localhost"]
    ips: list[str] = []
    for addr in (node.bind_addr, node.advertise, node.client_addr, "127.0.0.1"):
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            continue
        if not ip.is_unspecified and str(ip) not in ips:
            ips.append(str(ip))
    return cn, dns, ips


def _fits(pair: CertPair, ca_pem: str, cn: str, dns: list[str], ips: list[str]) -> bool:
    """The certificate is the CA's, names exactly `cn`/`dns`/`ips` and has time left."""
    from cryptography import x509

    from agent.cli.tls_generate import TLSGenError, parse_cert, verify

    try:
        cert = parse_cert(pair.cert)
        verify(ca_pem, pair.cert, cn)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (TLSGenError, x509.ExtensionNotFound, ValueError):
        return False
    have_dns = sorted(str(n) for n in san.get_values_for_type(x509.DNSName))
    have_ips = sorted(str(i) for i in san.get_values_for_type(x509.IPAddress))
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return (
        have_dns == sorted(dns)
        and have_ips == sorted(ips)
        and left > datetime.timedelta(days=RENEW_DAYS)
    )


def _read_pair(cert: Path, key: Path) -> CertPair | None:
    if cert.exists() and key.exists():
        return CertPair(cert.read_text(), key.read_text())
    return None


def _save_pair(pair: CertPair, cert: Path, key: Path) -> None:
    write_secret(key, pair.key, 0o600)
    write_secret(cert, pair.cert, 0o644)


def _issue(ca: CertPair, cn: str, dns: list[str], ips: list[str], usage: str) -> CertPair:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from agent.cli.tls_generate import generate_cert, parse_ip, parse_signer, verify

    eku = (
        [] if usage == "cli" else [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    cert, key = generate_cert(
        signer=parse_signer(ca.key),
        ca=ca.cert,
        name=cn,
        days=CERT_DAYS,
        dns_names=dns,
        ip_addresses=[parse_ip(i) for i in ips],
        ext_key_usage=eku,
    )
    verify(ca.cert, cert, cn)
    return CertPair(cert, key)


def _ca(directory: Path, create: bool) -> CertPair:
    from agent.cli.tls_generate import generate_ca

    found = _read_pair(directory / "ca.pem", directory / "ca-key.pem")
    if found is not None:
        return found
    cert, key = generate_ca(name=f"Senate Agent CA {uuid.uuid4().hex[:12]}", days=CA_DAYS)
    pair = CertPair(cert, key)
    if create:
        directory.mkdir(mode=0o700, exist_ok=True)
        _save_pair(pair, directory / "ca.pem", directory / "ca-key.pem")
    return pair


def tls_material(
    inventory: Path, nodes: Sequence[Node], create: bool
) -> tuple[str, dict[str, CertPair]]:
    """The CA certificate and each node's certificate and key, made where missing or no longer
    fitting (and written beside the inventory when `create`)."""
    directory = tls_dir(inventory)
    ca = _ca(directory, create)
    out: dict[str, CertPair] = {}
    for node in nodes:
        cn, dns, ips = cert_names(node)
        cert_file, key_file = directory / f"{node.name}.pem", directory / f"{node.name}-key.pem"
        pair = _read_pair(cert_file, key_file)
        if pair is None or not _fits(pair, ca.cert, cn, dns, ips):
            pair = _issue(ca, cn, dns, ips, "agent")
            if create:
                _save_pair(pair, cert_file, key_file)
        out[node.name] = pair
    cli_cert, cli_key = directory / "cli.pem", directory / "cli-key.pem"
    if create and _read_pair(cli_cert, cli_key) is None:
        dc = nodes[0].datacenter if nodes else "dc1"
        domain = _domain(nodes[0]) if nodes else "consul"
        _save_pair(
            _issue(ca, f"cli.{dc}.{domain}", [f"cli.{dc}.{domain}", "localhost"], [], "cli"),
            cli_cert,
            cli_key,
        )
    return ca.cert, out


# ---------------------------------------------------------------------------------------------
# What an inventory's security adds to each node


@dataclass(frozen=True, slots=True)
class Secrets:
    """The generated material of one inventory (empty mappings for what it does not ask)."""

    primary_datacenter: str
    ca: str = ""
    certs: Mapping[str, CertPair] = field(default_factory=dict)
    tokens: Mapping[str, AgentTokens] = field(default_factory=dict)


def prepare(
    inventory: Path, nodes: Sequence[Node], tls: bool, acl: bool, create: bool
) -> Secrets | None:
    if not (tls or acl):
        return None
    primary = nodes[0].datacenter if nodes else ""
    ca, certs = tls_material(inventory, nodes, create) if tls else ("", {})
    tokens = (
        agent_tokens(agent_tokens_path(inventory), [n.name for n in nodes], create) if acl else {}
    )
    return Secrets(primary, ca, certs, tokens)


def agent_settings(secrets: Secrets | None, node: Node) -> dict[str, Any]:
    """The agent config keys TLS and ACLs add for `node` (merged over the user's settings)."""
    if secrets is None:
        return {}
    out: dict[str, Any] = {}
    if node.tls:
        ca, cert, key = host_tls_files(node)
        ports = dict(node.agent.get("ports") or {})
        ports.setdefault("https", HTTPS_DEFAULT_PORT)
        out["ports"] = ports
        out["tls"] = {
            "defaults": {
                "ca_file": ca,
                "cert_file": cert,
                "key_file": key,
                "verify_incoming": True,
                "verify_outgoing": True,
            },
            "internal_rpc": {"verify_server_hostname": True},
        }
    tokens = secrets.tokens.get(node.name)
    if node.acl and tokens is not None:
        out["primary_datacenter"] = secrets.primary_datacenter
        out["acl"] = {
            "enabled": True,
            "default_policy": "deny",
            "down_policy": "extend-cache",
            "enable_token_persistence": True,
            "tokens": {"agent": tokens.secret, "agent_recovery": tokens.recovery},
        }
    return out


def node_files(secrets: Secrets | None, node: Node) -> list[tuple[str, str, int]]:
    """(path on the host, content, mode) of the node's TLS files."""
    if secrets is None or not node.tls or node.name not in secrets.certs:
        return []
    ca, cert, key = host_tls_files(node)
    pair = secrets.certs[node.name]
    return [(ca, secrets.ca, 0o644), (cert, pair.cert, 0o644), (key, pair.key, 0o600)]


def operator_hints(inventory: Path, nodes: Sequence[Node]) -> list[str]:
    """How an operator on this machine reaches the datacenter: the files and the environment
    the senate CLI (and Consul's tools) take them from."""
    if not nodes or not (nodes[0].tls or nodes[0].acl):
        return []
    first = nodes[0]
    env: list[str] = []
    lines: list[str] = []
    if first.acl:
        token = acl_token_path(inventory)
        lines.append(f"ACLs on (default deny): the management token is in {token}")
        env.append(f"CONSUL_HTTP_TOKEN_FILE={token}")
    if first.tls:
        d = tls_dir(inventory)
        lines.append(
            f"TLS on: HTTPS on :{first.port('https')} wants a client certificate; the CA and "
            f"one for the CLI are in {d}/"
        )
        env += [
            f"CONSUL_HTTP_ADDR={first.api_url}",
            f"CONSUL_CACERT={d}/ca.pem",
            f"CONSUL_CLIENT_CERT={d}/cli.pem",
            f"CONSUL_CLIENT_KEY={d}/cli-key.pem",
        ]
    else:
        env.append(f"CONSUL_HTTP_ADDR={first.http_addr}")
    if first.connection == "local":
        lines.append("the senate CLI reaches it with:")
        lines += [f"  export {e}" for e in env] + ["  senate members"]
    return lines
