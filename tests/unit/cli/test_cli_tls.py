"""`senate tls ca create` / `senate tls cert create` as Consul 1.x's command/tls does it: the files
in the current directory, the certificates (checked with the `cryptography` package, and in a
real TLS handshake), the numbering, and the messages."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from agent.cli import dispatch, usage

pytestmark = pytest.mark.timeout(60)

SERVER_WARNING = """==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.
"""
USING = "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n"
LOCALHOST = ipaddress.ip_address("127.0.0.1")
E = TypeVar("E", bound=x509.ExtensionType)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(["tls", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def load(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def lifetime_days(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - cert.not_valid_before_utc) / datetime.timedelta(days=1)


def make_ca(capsys: pytest.CaptureFixture[str], *flags: str) -> x509.Certificate:
    rc, out, err = run(capsys, "ca", "create", *flags)
    assert (rc, err) == (0, ""), err
    domain = next((f.split("=", 1)[1] for f in flags if f.startswith("-domain=")), "consul")
    assert out == f"==> Saved {domain}-agent-ca.pem\n==> Saved {domain}-agent-ca-key.pem\n"
    return load(f"{domain}-agent-ca.pem")


def test_ca_create_defaults(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    ca = make_ca(capsys)
    assert sorted(p.name for p in in_tmp.iterdir()) == [
        "consul-agent-ca-key.pem",
        "consul-agent-ca.pem",
    ]
    assert mode("consul-agent-ca-key.pem") == 0o600
    assert mode("consul-agent-ca.pem") & 0o600 == 0o600
    key_pem = Path("consul-agent-ca-key.pem").read_bytes()
    assert key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == ca.public_key()

    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)  # self-signed
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == f"Consul Agent CA {ca.serial_number}"
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "HashiCorp Inc."
    )
    assert 0 < ca.serial_number < 1 << 128
    basic = ext(ca, x509.BasicConstraints)
    assert basic.critical and basic.value == x509.BasicConstraints(ca=True, path_length=None)
    usage_ = ext(ca, x509.KeyUsage)
    assert usage_.critical
    assert usage_.value.key_cert_sign and usage_.value.crl_sign
    assert usage_.value.digital_signature and not usage_.value.key_encipherment
    ski = ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert len(ski) == 32
    assert ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ski
    with pytest.raises(x509.ExtensionNotFound):
        ext(ca, x509.NameConstraints)
    assert abs(lifetime_days(ca) - 1825) <= 1 / 24
    now = datetime.datetime.now(datetime.UTC)
    assert abs(ca.not_valid_before_utc - now) < datetime.timedelta(minutes=1)


def test_ca_create_options(capsys: pytest.CaptureFixture[str]) -> None:
    ca = make_ca(
        capsys,
        "-days=365",
        "-name-constraint=true",
        "-domain=foo",
        "-additional-name-constraint=bar",
        "-additional-name-constraint",
        "baz.example",
        "-common-name=My CA",
        "-cluster-id=uuid",
    )
    assert mode("foo-agent-ca-key.pem") == 0o600
    assert abs(lifetime_days(ca) - 365) <= 1 / 24
    constraints = ext(ca, x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [
        x509.DNSName("bar"),
        x509.DNSName("baz.example"),
        x509.DNSName("foo"),
        x509.DNSName("localhost"),
    ]
    assert constraints.value.excluded_subtrees is None
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "My CA"
    uris = ext(ca, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == ["spiffe://uuid.foo"]


def test_ca_create_refuses_to_overwrite(capsys: pytest.CaptureFixture[str]) -> None:
    make_ca(capsys)
    before = Path("consul-agent-ca.pem").read_bytes(), Path("consul-agent-ca-key.pem").read_bytes()
    assert run(capsys, "ca", "create") == (1, "", "consul-agent-ca.pem already exists.\n")
    assert before == (
        Path("consul-agent-ca.pem").read_bytes(),
        Path("consul-agent-ca-key.pem").read_bytes(),
    )
    Path("consul-agent-ca.pem").unlink()
    assert run(capsys, "ca", "create") == (1, "", "consul-agent-ca-key.pem already exists.\n")
    assert not Path("consul-agent-ca.pem").exists()


CASES = {
    "server": (
        ["-server"],
        "dc1-server-consul-0",
        "server.dc1.consul",
        ["server.dc1.consul", "localhost"],
        [LOCALHOST],
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    ),
    "client": (
        ["-client"],
        "dc1-client-consul-0",
        "client.dc1.consul",
        ["client.dc1.consul", "localhost"],
        [LOCALHOST],
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
    ),
    "cli": (
        ["-cli"],
        "dc1-cli-consul-0",
        "cli.dc1.consul",
        ["cli.dc1.consul", "localhost"],
        [],
        None,  # Consul's cli certificate has no extended key usage at all
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_cert_create(capsys: pytest.CaptureFixture[str], in_tmp: Path, kind: str) -> None:
    flags, stem, cn, dns, ips, eku = CASES[kind]
    ca = make_ca(capsys)
    rc, out, err = run(capsys, "cert", "create", *flags)
    assert (rc, err) == (0, "")
    warning = SERVER_WARNING if kind == "server" else ""
    assert out == f"{warning}{USING}==> Saved {stem}.pem\n==> Saved {stem}-key.pem\n"
    assert mode(f"{stem}-key.pem") == 0o600
    assert sorted(p.name for p in in_tmp.iterdir() if p.name.startswith("dc1-")) == [
        f"{stem}-key.pem",
        f"{stem}.pem",
    ]

    cert = load(f"{stem}.pem")
    key = serialization.load_pem_private_key(Path(f"{stem}-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == cert.public_key()
    assert Path(f"{stem}-key.pem").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")

    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    assert 0 < cert.serial_number < 1 << 128 and cert.serial_number != ca.serial_number
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == dns
    assert san.get_values_for_type(x509.IPAddress) == ips
    usage_ = ext(cert, x509.KeyUsage)
    assert usage_.critical
    assert usage_.value.digital_signature and usage_.value.key_encipherment
    assert not usage_.value.key_cert_sign and not usage_.value.crl_sign
    if eku is None:
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, x509.ExtendedKeyUsage)
    else:
        assert list(ext(cert, x509.ExtendedKeyUsage).value) == eku
    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    ca_ski = ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert abs(lifetime_days(cert) - 365) <= 1 / 24

    # and a verifier that builds the chain itself agrees
    store = Store([ca])
    PolicyBuilder().store(store).build_server_verifier(x509.DNSName(cn)).verify(cert, [])
    PolicyBuilder().store(store).build_client_verifier().verify(cert, [])


def test_cert_create_options(capsys: pytest.CaptureFixture[str]) -> None:
    make_ca(capsys, "-domain=nomad")
    flags = [
        "-dc=dc2",
        "-domain=nomad",
        "-days=30",
        "-node=mysrv",
        "-additional-dnsname=extra.example",
        "-additional-dnsname= spaced.example ",
        "-additional-ipaddress=10.0.0.1",
        "-additional-ipaddress=::1",
    ]
    rc, out, err = run(capsys, "cert", "create", "-server", *flags)
    assert (rc, err) == (0, "")
    assert "==> Using nomad-agent-ca.pem and nomad-agent-ca-key.pem\n" in out
    cert = load("dc2-server-nomad-0.pem")
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "extra.example",
        "spaced.example",
        "mysrv.server.dc2.nomad",
        "server.dc2.nomad",
        "localhost",
    ]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_address("::1"),
        LOCALHOST,
    ]
    assert abs(lifetime_days(cert) - 30) <= 1 / 24
    # as in Consul, a cli certificate keeps only its two names (the extra addresses stay)
    assert run(capsys, "cert", "create", "-cli", *flags[:2], *flags[4:])[0] == 0
    cli = ext(load("dc2-cli-nomad-0.pem"), x509.SubjectAlternativeName).value
    assert cli.get_values_for_type(x509.DNSName) == ["cli.dc2.nomad", "localhost"]
    assert cli.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_cert_numbering(capsys: pytest.CaptureFixture[str]) -> None:
    make_ca(capsys)
    for n in range(2):
        rc, out, _ = run(capsys, "cert", "create", "-server")
        assert rc == 0
        assert out.endswith(
            f"==> Saved dc1-server-consul-{n}.pem\n==> Saved dc1-server-consul-{n}-key.pem\n"
        )
    assert load("dc1-server-consul-0.pem").serial_number != (
        load("dc1-server-consul-1.pem").serial_number
    )
    # a number is free only when neither of its two files exists
    Path("dc1-client-consul-0-key.pem").write_text("taken")
    assert run(capsys, "cert", "create", "-client")[1].endswith(
        "==> Saved dc1-client-consul-1.pem\n==> Saved dc1-client-consul-1-key.pem\n"
    )
    assert Path("dc1-client-consul-0-key.pem").read_text() == "taken"
    assert not Path("dc1-client-consul-0.pem").exists()


def test_cert_create_missing_ca(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    assert run(capsys, "cert", "create", "-server") == (
        1,
        "",
        "Error reading CA: open consul-agent-ca.pem: no such file or directory\n",
    )
    make_ca(capsys)
    Path("consul-agent-ca-key.pem").unlink()
    assert run(capsys, "cert", "create", "-cli") == (
        1,
        "",
        "Error reading CA key: open consul-agent-ca-key.pem: no such file or directory\n",
    )
    assert run(capsys, "cert", "create", "-cli", "-ca=elsewhere.pem") == (
        1,
        "",
        "Error reading CA: open elsewhere.pem: no such file or directory\n",
    )
    assert not [p for p in in_tmp.iterdir() if p.name.startswith("dc1-")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Please provide either -server, -client, or -cli"),
        (["-ca", "", "-key", ""], "Please provide the ca"),
        (["-ca", "foo.pem", "-key", ""], "Please provide the key"),
        (["-server", "-client", "-cli"], "Please provide either -server, -client, or -cli"),
        (["-server", "-client"], "Please provide either -server, -client, or -cli"),
        (["-server", "-cli"], "Please provide either -server, -client, or -cli"),
        (["-client", "-cli"], "Please provide either -server, -client, or -cli"),
        (["-client", "-node", "foo"], "-node requires -server"),
        (["-cli", "-node", "foo"], "-node requires -server"),
    ],
)
def test_cert_create_invalid_args(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(capsys, "cert", "create", *args) == (1, "", message + "\n")


def test_cert_create_flag_errors(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "cert", "create", "-server", "-days=abc")
    assert (rc, out) == (1, "")
    assert err.startswith('invalid value "abc" for flag -days: parse error\n')
    rc, _, err = run(capsys, "ca", "create", "-nope")
    assert rc == 1 and err.startswith("flag provided but not defined: -nope\n")


def test_name_constraints_enforced(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    ca = make_ca(capsys, "-name-constraint")
    assert run(capsys, "cert", "create", "-server", "-node=n1")[0] == 0
    cert = load("dc1-server-consul-0.pem")
    PolicyBuilder().store(Store([ca])).build_server_verifier(
        x509.DNSName("n1.server.dc1.consul")
    ).verify(cert, [])

    rc, out, err = run(capsys, "cert", "create", "-server", "-additional-dnsname=evil.example")
    assert rc == 1 and out == SERVER_WARNING + USING
    assert err == (
        "x509: certificate signed by unknown authority (possibly because of "
        '"x509: a root or intermediate certificate is not authorized to sign for this name: '
        'DNS name \\"evil.example\\" is not permitted by any constraint" while trying to '
        f'verify candidate authority certificate "Consul Agent CA {ca.serial_number}")\n'
    )
    assert not Path("dc1-server-consul-1.pem").exists()


def test_cert_create_key_not_the_cas(capsys: pytest.CaptureFixture[str]) -> None:
    make_ca(capsys)
    make_ca(capsys, "-domain=other")
    rc, out, err = run(capsys, "cert", "create", "-cli", "-key=other-agent-ca-key.pem")
    assert (rc, out) == (1, "==> Using consul-agent-ca.pem and other-agent-ca-key.pem\n")
    assert err == (
        "failed to create certificate: x509: provided PrivateKey doesn't match parent's PublicKey\n"
    )


def test_tls_help_and_registration(capsys: pytest.CaptureFixture[str]) -> None:
    assert "    tls " in usage()
    rc, out, err = run(capsys)
    assert rc == 1 and out == "" and "Usage: senate tls <subcommand>" in err
    rc, _, err = run(capsys, "ca")
    assert rc == 1 and "create    Create a new consul CA" in err
    rc, _, err = run(capsys, "cert", "-h")
    assert rc == 0 and "create    Create a new certificate" in err
    rc, out, _ = run(capsys, "cert", "create", "-h")
    assert rc == 0 and "-additional-ipaddress=<string>" in out and "-days=365" in out
    rc, _, err = run(capsys, "bogus")
    assert rc == 1 and "unknown subcommand 'bogus'" in err


def _handshake(ca: str, server: tuple[str, str], client: tuple[str, str]) -> str:
    """A TLS handshake on 127.0.0.1, both sides requiring and verifying the other's
    certificate; returns the common name the server saw."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(ca)
    server_ctx.load_cert_chain(*server)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert client_ctx.verify_mode == ssl.CERT_REQUIRED and client_ctx.check_hostname
    client_ctx.load_verify_locations(ca)
    client_ctx.load_cert_chain(*client)

    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(10)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert() or {}
                    for rdn in peer.get("subject", ()):
                        for name, value in rdn:
                            if name == "commonName":
                                seen["cn"] = value
                    tls.sendall(b"ok")
            except Exception as exc:  # reported to the test below
                seen["error"] = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname="server.dc1.consul") as tls,
            ):
                assert tls.recv(2) == b"ok"
                assert tls.getpeercert() is not None
        finally:
            thread.join(timeout=10)
        assert not thread.is_alive()
    assert "error" not in seen, seen.get("error")
    return str(seen["cn"])


@pytest.mark.parametrize("kind", ["cli", "client"])
def test_tls_handshake_with_generated_certs(capsys: pytest.CaptureFixture[str], kind: str) -> None:
    make_ca(capsys, "-name-constraint")
    assert run(capsys, "cert", "create", "-server")[0] == 0
    assert run(capsys, "cert", "create", f"-{kind}")[0] == 0
    cn = _handshake(
        "consul-agent-ca.pem",
        ("dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem"),
        (f"dc1-{kind}-consul-0.pem", f"dc1-{kind}-consul-0-key.pem"),
    )
    assert cn == f"{kind}.dc1.consul"


def test_tls_handshake_refuses_another_ca(capsys: pytest.CaptureFixture[str]) -> None:
    make_ca(capsys)
    make_ca(capsys, "-domain=other")
    assert run(capsys, "cert", "create", "-server")[0] == 0
    assert run(capsys, "cert", "create", "-cli", "-domain=other")[0] == 0
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(
            "consul-agent-ca.pem",
            ("dc1-server-consul-0.pem", "dc1-server-consul-0-key.pem"),
            ("dc1-cli-other-0.pem", "dc1-cli-other-0-key.pem"),
        )
