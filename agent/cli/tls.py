"""`senate tls ca create` and `senate tls cert create`: Consul 1.x's builtin helpers for a TLS
setup (command/tls/ca/create/tls_ca_create.go, command/tls/cert/create/tls_cert_create.go), which
write a CA and agent/CLI certificates signed by it into the current directory. The certificates
themselves are made in agent/cli/tls_generate.py as Consul's tlsutil/generate.go makes them."""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from collections.abc import Callable

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.cli.common import Parser, err, out, run_guarded
from agent.cli.tls_generate import (
    IPAddress,
    TLSGenError,
    generate_ca,
    generate_cert,
    parse_ip,
    parse_signer,
    verify,
)

TLS_HELP = """Usage: senate tls <subcommand> <subcommand> [options]

  This command has subcommands for interacting with Senate TLS.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a CA

    $ senate tls ca create

  Create a server certificate

    $ senate tls cert create -server

  Create a client certificate

    $ senate tls cert create -client

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    ca      Helpers for CAs
    cert    Helpers for certificates
"""

CA_HELP = """Usage: senate tls ca <subcommand> [options]

  This command has subcommands for interacting with Certificate Authorities.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a CA

    $ senate tls ca create
    ==> Saved consul-agent-ca.pem
    ==> Saved consul-agent-ca-key.pem

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    create    Create a new consul CA
"""

CERT_HELP = """Usage: senate tls cert <subcommand> [options]

  This command has subcommands for interacting with certificates

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a certificate

    $ senate tls cert create -server
    ==> Saved dc1-server-consul-0.pem
    ==> Saved dc1-server-consul-0-key.pem

  Create a certificate with your own CA:

    $ senate tls cert create -server -ca my-ca.pem -key my-ca-key.pem
    ==> Saved dc1-server-consul-0.pem
    ==> Saved dc1-server-consul-0-key.pem

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    create    Create a new certificate
"""

SERVER_WARNING = """==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys."""

#: how many numbered file names `cert create` tries (Consul's `max`)
MAX_CERT_INDEX = 10000

_GO_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|0[0-7_]*|[1-9][0-9_]*)")


def parse_go_int(text: str) -> int | str:
    """strconv.ParseInt(text, 0, 64), as flag.IntVar reads a value: the number, or the reason
    it is refused ("parse error", "value out of range")."""
    if not _GO_INT.fullmatch(text):
        return "parse error"
    sign, digits = (text[0], text[1:]) if text[0] in "+-" else ("", text)
    if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXoObB":
        digits = "0o" + digits[1:]  # Go's leading-zero octal
    try:
        value = int(sign + digits, 0)
    except ValueError:
        return "parse error"
    if not -(1 << 63) <= value < 1 << 63:
        return "value out of range"
    return value


def _int_flag(p: Parser, name: str, default: int, help: str) -> None:
    """A Go int flag; a bad value is refused as `invalid value "x" for flag -name: ...`."""

    def convert(text: str) -> int:
        value = parse_go_int(text)
        if isinstance(value, str):
            raise argparse.ArgumentTypeError(f'invalid value "{text}" for flag -{name}: {value}')
        return value

    p.flag(name, type=convert, default=default, help=help)


def _os_error(path: str, exc: OSError) -> str:
    """A Go *PathError for a failed os.ReadFile / os.OpenFile."""
    op = "read" if isinstance(exc, IsADirectoryError) else "open"
    return f"{op} {path}: {(exc.strerror or str(exc)).lower()}"


def file_does_not_exist(path: str) -> bool:
    """command/tls.FileDoesNotExist: os.Stat fails with "not exist" (a dangling link too)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def write_atomic(path: str, contents: str, file_mode: int, dir_mode: int = 0o755) -> None:
    """lib/file.WriteAtomicWithPerms: a temporary file beside `path` created with `file_mode`
    (less the umask), written, synced, then renamed over `path`."""
    temp = f"{path}-{uuid.uuid4()}.tmp"
    parent = os.path.dirname(path)
    try:
        if parent:
            os.makedirs(parent, dir_mode, exist_ok=True)
    except OSError as exc:
        raise TLSGenError(f"mkdir {parent}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, file_mode)
    except OSError as exc:
        raise TLSGenError(_os_error(temp, exc)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(contents.encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(temp, path)
    except OSError as exc:
        raise TLSGenError(f"rename {temp} {path}: {(exc.strerror or str(exc)).lower()}") from None
    finally:
        if os.path.lexists(temp):
            os.remove(temp)


def ca_create_parser() -> Parser:
    p = Parser(
        "tls ca create",
        "senate tls ca create [options]",
        "Create a new consul CA:\n\n"
        "  $ senate tls ca create\n"
        "  ==> Saved consul-agent-ca.pem\n"
        "  ==> Saved consul-agent-ca-key.pem",
    )
    p.flag(
        "additional-name-constraint",
        action="append",
        default=None,
        metavar="value",
        help="Add name constraints for the CA. Results in rejecting certificates for other DNS "
        "than specified. Can be used multiple times. Only used in combination with "
        "-name-constraint.",
    )
    p.flag(
        "cluster-id",
        default="",
        metavar="string",
        help="ID of the Consul cluster. Sets the CA's URI with the SPIFFEID composed of the "
        "cluster ID and domain (specified by -domain or 'consul' by default).",
    )
    p.flag(
        "common-name",
        default="",
        metavar="string",
        help="Common Name of CA. Defaults to Consul Agent CA.",
    )
    _int_flag(
        p,
        "days",
        1825,
        "Number of days the CA is valid for. Defaults to 1825 days (approximately 5 years).",
    )
    p.flag(
        "domain",
        default="consul",
        help="The DNS domain of the Consul cluster that agents are configured with. Defaults "
        "to consul. Only used when -name-constraint is set. Additional domains can be passed "
        "with -additional-name-constraint.",
    )
    p.flag(
        "name-constraint",
        action="store_true",
        help="Enables X.509 name constraints for the CA. If used, the CA only signs "
        "certificates for localhost and the domains specified by -domain and "
        "-additional-name-constraint. If the HTTPS API is reached by another DNS name, add it "
        "with -additional-name-constraint. Defaults to false.",
    )
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)  # Consul ignores them
    return p


def _ca_create(args: argparse.Namespace) -> int:
    cert_file = f"{args.domain}-agent-ca.pem"
    key_file = f"{args.domain}-agent-ca-key.pem"
    for path in (cert_file, key_file):
        if not file_does_not_exist(path):
            err(f"{path} already exists.")
            return 1
    constraints: list[str] = []
    if args.name_constraint:
        constraints = [*(args.additional_name_constraint or []), args.domain, "localhost"]
    try:
        ca, key = generate_ca(
            name=args.common_name,
            days=args.days,
            domain=args.domain,
            permitted_dns_domains=constraints,
            cluster_id=args.cluster_id,
        )
        write_atomic(cert_file, ca, 0o666)
        out(f"==> Saved {cert_file}")
        write_atomic(key_file, key, 0o600)
        out(f"==> Saved {key_file}")
    except TLSGenError as exc:
        err(str(exc))
        return 1
    return 0


def cert_create_parser() -> Parser:
    p = Parser(
        "tls cert create",
        "senate tls cert create [options]",
        "Create a new certificate\n\n"
        "  $ senate tls cert create -server\n"
        "  " + SERVER_WARNING.replace("\n", "\n  ") + "\n"
        "  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n"
        "  ==> Saved dc1-server-consul-0.pem\n"
        "  ==> Saved dc1-server-consul-0-key.pem\n"
        "  $ senate tls cert create -client\n"
        "  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n"
        "  ==> Saved dc1-client-consul-0.pem\n"
        "  ==> Saved dc1-client-consul-0-key.pem",
    )
    p.flag(
        "additional-dnsname",
        action="append",
        default=None,
        metavar="string",
        help="Provide an additional dnsname for Subject Alternative Names. localhost is always "
        "included. This flag may be provided multiple times.",
    )
    p.flag(
        "additional-ipaddress",
        action="append",
        default=None,
        metavar="string",
        help="Provide an additional ipaddress for Subject Alternative Names. 127.0.0.1 is "
        "always included. This flag may be provided multiple times.",
    )
    p.flag(
        "ca",
        default="#DOMAIN#-agent-ca.pem",
        help="Provide path to the ca. Defaults to #DOMAIN#-agent-ca.pem.",
    )
    p.flag("cli", action="store_true", help="Generate cli certificate.")
    p.flag("client", action="store_true", help="Generate client certificate.")
    _int_flag(
        p,
        "days",
        365,
        "Provide number of days the certificate is valid for from now on. Defaults to 1 year.",
    )
    p.flag(
        "dc",
        default="dc1",
        help="Provide the datacenter. Matters only for -server certificates. Defaults to dc1.",
    )
    p.flag(
        "domain",
        default="consul",
        help="Provide the domain. Matters only for -server certificates.",
    )
    p.flag(
        "key",
        default="#DOMAIN#-agent-ca-key.pem",
        help="Provide path to the key. Defaults to #DOMAIN#-agent-ca-key.pem.",
    )
    p.flag(
        "node",
        default="",
        metavar="string",
        help="When generating a server cert and this is set an additional dns name is included "
        "of the form <node>.server.<datacenter>.<domain>.",
    )
    p.flag("server", action="store_true", help="Generate server certificate.")
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)  # Consul ignores them
    return p


def _read(path: str, what: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        err(f"Error reading {what}: {_os_error(path, exc)}")
        return None


def _cert_create(args: argparse.Namespace) -> int:
    if not args.ca:
        err("Please provide the ca")
        return 1
    if not args.key:
        err("Please provide the key")
        return 1
    if [args.server, args.client, args.cli].count(True) != 1:
        err("Please provide either -server, -client, or -cli")
        return 1
    if args.node and not args.server:
        err("-node requires -server")
        return 1

    dns_names = [d.strip() for d in args.additional_dnsname or [] if d]
    ips: list[IPAddress | None] = [
        parse_ip(i.strip()) for i in args.additional_ipaddress or [] if i
    ]
    ext_key_usage: list[x509.ObjectIdentifier] = []
    localhost = parse_ip("127.0.0.1")
    if args.server:
        name = f"server.{args.dc}.{args.domain}"
        if args.node:
            dns_names.append(f"{args.node}.server.{args.dc}.{args.domain}")
        dns_names += [name, "localhost"]
        ips.append(localhost)
        ext_key_usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        prefix = f"{args.dc}-server-{args.domain}"
    elif args.client:
        name = f"client.{args.dc}.{args.domain}"
        dns_names += [name, "localhost"]
        ips.append(localhost)
        ext_key_usage = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        prefix = f"{args.dc}-client-{args.domain}"
    else:  # Consul's cli certificate: these two names only, no extended key usage
        name = f"cli.{args.dc}.{args.domain}"
        dns_names = [name, "localhost"]
        prefix = f"{args.dc}-cli-{args.domain}"

    for i in range(MAX_CERT_INDEX + 1):
        cert_file, key_file = f"{prefix}-{i}.pem", f"{prefix}-{i}-key.pem"
        if file_does_not_exist(cert_file) and file_does_not_exist(key_file):
            break
    else:
        err("Could not find a filename that doesn't already exist")
        return 1

    ca_file = args.ca.replace("#DOMAIN#", args.domain, 1)
    ca_key_file = args.key.replace("#DOMAIN#", args.domain, 1)
    ca = _read(ca_file, "CA")
    if ca is None:
        return 1
    ca_key = _read(ca_key_file, "CA key")
    if ca_key is None:
        return 1

    if args.server:
        out(SERVER_WARNING)
    out(f"==> Using {ca_file} and {ca_key_file}")
    try:
        signer = parse_signer(ca_key)
        cert, key = generate_cert(
            signer=signer,
            ca=ca,
            name=name,
            days=args.days,
            dns_names=dns_names,
            ip_addresses=ips,
            ext_key_usage=ext_key_usage,
        )
        verify(ca, cert, name)
        write_atomic(cert_file, cert, 0o666)
        out(f"==> Saved {cert_file}")
        write_atomic(key_file, key, 0o600)
        out(f"==> Saved {key_file}")
    except TLSGenError as exc:
        err(str(exc))
        return 1
    return 0


Runner = Callable[[list[str]], int]


def _group(argv: list[str], name: str, help_text: str, subcommands: dict[str, Runner]) -> int:
    """A command that only has subcommands: help without one (exit 1, or 0 when asked for)."""
    if not argv or argv[0] in ("-h", "-help", "--help"):
        sys.stderr.write(help_text)
        return 0 if argv else 1
    sub = subcommands.get(argv[0])
    if sub is None:
        err(f"senate {name}: unknown subcommand {argv[0]!r}")
        sys.stderr.write(help_text)
        return 1
    return sub(argv[1:])


def run_ca(argv: list[str]) -> int:
    return _group(
        argv,
        "tls ca",
        CA_HELP,
        {"create": lambda a: run_guarded(ca_create_parser(), a, _ca_create)},
    )


def run_cert(argv: list[str]) -> int:
    create: Runner = lambda a: run_guarded(cert_create_parser(), a, _cert_create)  # noqa: E731
    return _group(argv, "tls cert", CERT_HELP, {"create": create})


def run(argv: list[str]) -> int:
    return _group(argv, "tls", TLS_HELP, {"ca": run_ca, "cert": run_cert})
