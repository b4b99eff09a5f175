"""Small HTTP servers for the CLI's transport tests: HTTPS (certificates made here with the
`cryptography` package) on 127.0.0.1 and plain HTTP on a Unix socket, each in a thread it
stops and joins on the way out. They answer /v1/status/leader and /v1/catalog/datacenters
and record what every request carried."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "agent.senate.test"
LEADER = "10.0.0.1:8300"
DATACENTERS = ["dc1", "dc2"]


@dataclass
class Pki:
    """PEM files in a directory: a CA, a server certificate for 127.0.0.1 and SERVER_NAME,
    and a client certificate, all signed by the CA."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue(
    subject: str,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, ca_name: str = "Senate Test CA", server_ip: str = "127.0.0.1") -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(ca_name, _name(ca_name), ca_key, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(
        "server.senate",
        ca_cert.subject,
        ca_key,
        server_key,
        sans=[x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address(server_ip))],
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue(
        "cli.senate",
        ca_cert.subject,
        ca_key,
        client_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    pki = Pki(
        dir=directory,
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.server_key, server_key)
    pki.client_cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.client_key, client_key)
    return pki


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    token: str | None
    client_cn: str | None = None
    sni: str | None = None


@dataclass
class Recorder:
    requests: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seen: Seen) -> None:
        with self.lock:
            self.requests.append(seen)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        recorder: Recorder = self.server.recorder
        cn = None
        getpeercert = getattr(self.connection, "getpeercert", None)
        peer = getpeercert() if getpeercert is not None else None
        if peer:
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        cn = value
        recorder.add(Seen("GET", self.path, self.headers.get("X-Consul-Token"), cn))
        if self.path.startswith("/v1/status/leader"):
            body = json.dumps(LEADER).encode()
        elif self.path.startswith("/v1/catalog/datacenters"):
            body = json.dumps(DATACENTERS).encode()
        else:
            self.send_error(404, "not here")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "test-client"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    """The TLS handshake runs in the request's thread, so a client that fails it cannot stall
    the accept loop; server_close() joins those threads."""

    def __init__(self, context: ssl.SSLContext, recorder: Recorder) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.recorder = recorder

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass  # the client gave up (it did not like our certificate, or we not its)
        finally:
            tls.close()


@dataclass
class Running:
    url: str
    recorder: Recorder


@contextmanager
def https_server(pki: Pki, require_client_cert: bool = False) -> Iterator[Running]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    recorder = Recorder()

    def sni(_sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: Any) -> None:
        with recorder.lock:
            recorder.sni.append(name)

    ctx.sni_callback = sni
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=pki.ca)
    server = _TLSServer(ctx, recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Running(f"https://127.0.0.1:{server.server_address[1]}", recorder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not thread.is_alive()


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    def __init__(self, path: str, recorder: Recorder) -> None:
        super().__init__(path, _Handler)
        self.recorder = recorder


@contextmanager
def unix_server(path: Path) -> Iterator[Running]:
    recorder = Recorder()
    server = _UnixHTTPServer(str(path), recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Running(f"unix://{path}", recorder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not thread.is_alive()
        path.unlink(missing_ok=True)


def closed_tcp_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
