"""TLS from the agent's configuration (Consul's tlsutil): the checks Consul runs on each
protocol's settings at start, the HTTPS listener's context, and `RPCTLS`, the contexts of
server RPC and raft on the server port (served when a connection asks for TLS, dialled when
verify_outgoing is on), with Consul's server name `server.<datacenter>.<domain>` and Go's
wording for the certificate errors a handshake meets."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HTTPSConfig:
    """TLS of the HTTPS listener: `cert_file`/`key_file`/`ca_file`/`ca_path`,
    `verify_incoming`, `tls_min_version` (top-level, or tls.defaults / tls.https in 1.x)."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    ca_path: str = ""
    verify_incoming: bool = False
    min_version: str = "tls12"


@dataclass(frozen=True, slots=True)
class RPCTLSConfig:
    """TLS of server RPC and raft on the server port (Consul's tls.internal_rpc, over
    tls.defaults, over the deprecated top-level keys): the certificate served and presented as
    client certificate, the CA both ends check against, `verify_incoming` (only TLS, with a
    client certificate), `verify_outgoing` (dial with TLS, check the server's certificate) and
    `verify_server_hostname` (it must name server.<dc>.<domain>; implies verify_outgoing)."""

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    ca_path: str = ""
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    min_version: str = "tls12"


_VERSIONS = {
    "tls10": ssl.TLSVersion.TLSv1,
    "tls11": ssl.TLSVersion.TLSv1_1,
    "tls12": ssl.TLSVersion.TLSv1_2,
    "tls13": ssl.TLSVersion.TLSv1_3,
}


class TLSError(ConnectionError):
    """A TLS handshake or certificate check that failed, worded as Consul (Go) words it."""


# ---------------------------------------------------------------------------- loading


def _ca_files(tls: HTTPSConfig | RPCTLSConfig) -> list[Path]:
    """ca_file, else every file under ca_path (Consul reads them all, whatever their names)."""
    if tls.ca_file:
        return [Path(tls.ca_file)]
    if tls.ca_path:
        root = Path(tls.ca_path)
        if not root.is_dir():
            raise ConfigError(f"Error loading from {root}: not a directory")
        files = sorted(p for p in root.rglob("*") if p.is_file())
        if not files:
            raise ConfigError("Error loading from CAPath: no CAs found")
        return files
    return []


def _load_cas(ctx: ssl.SSLContext, tls: HTTPSConfig | RPCTLSConfig) -> bool:
    """Trust the configured CAs in `ctx`; False when none are configured."""
    files = _ca_files(tls)
    for path in files:
        try:
            pem = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Error loading from {path}: {exc}") from None
        try:
            ctx.load_verify_locations(cadata=pem)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"Error loading from {path}: failed to parse PEM: {exc}") from None
    return bool(files)


def _load_cert(ctx: ssl.SSLContext, tls: HTTPSConfig | RPCTLSConfig) -> bool:
    """Load the cert/key pair into `ctx`; False when none is configured. One without the
    other is refused: it would silently serve (and dial) without a certificate."""
    if bool(tls.cert_file) != bool(tls.key_file):
        given, missing = ("cert_file", "key_file") if tls.cert_file else ("key_file", "cert_file")
        raise ConfigError(
            f"Failed to load cert/key pair: {given} ({tls.cert_file or tls.key_file}) "
            f"is set but {missing} is not"
        )
    if not tls.cert_file:
        return False
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"Failed to load cert/key pair ({tls.cert_file}, {tls.key_file}): {exc}"
        ) from None
    return True


def check_protocol(tls: HTTPSConfig | RPCTLSConfig) -> None:
    """Consul's checks of one protocol's settings (tlsutil loadProtocolConfig): the files
    load, verify_incoming has a CA and a certificate, verify_outgoing has a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    has_cert = _load_cert(ctx, tls)
    has_ca = _load_cas(ctx, tls)
    if tls.verify_incoming and not has_ca:
        raise ConfigError("VerifyIncoming set but no CA certificates were provided")
    if tls.verify_incoming and not has_cert:
        raise ConfigError(
            "VerifyIncoming requires either a Cert and Key pair in the configuration file, "
            "or auto_encrypt/auto_config be enabled"
        )
    if getattr(tls, "verify_outgoing", False) and not has_ca:
        raise ConfigError("VerifyOutgoing set but no CA certificates were provided")


def https_context(tls: HTTPSConfig) -> ssl.SSLContext:
    """The server context of the HTTPS listener; ConfigError naming the file that fails."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    _load_cert(ctx, tls)
    _load_cas(ctx, tls)
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.verify_incoming else ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------------------- internal RPC


@dataclass(frozen=True, slots=True)
class RPCTLS:
    """TLS of the server port, ready to use. `incoming` serves connections that open with
    the TLS byte (None: no certificate, such a connection fails its handshake); `outgoing`
    dials every server RPC and raft connection (None: they go in plaintext)."""

    datacenter: str
    #: the DNS domain without its trailing dot, as in server.dc1.consul
    domain: str
    incoming: ssl.SSLContext | None
    outgoing: ssl.SSLContext | None
    verify_incoming: bool
    verify_server_hostname: bool

    def server_name(self, datacenter: str | None = None) -> str:
        return f"server.{datacenter or self.datacenter}.{self.domain}"


def rpc_tls(tls: RPCTLSConfig, *, datacenter: str, domain: str) -> RPCTLS | None:
    """The server port's TLS, or None when nothing about it is configured."""
    if not (tls.cert_file or tls.verify_incoming or tls.verify_outgoing):
        return None
    incoming: ssl.SSLContext | None = None
    if tls.cert_file:
        incoming = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        incoming.minimum_version = _VERSIONS[tls.min_version]
        _load_cert(incoming, tls)
        _load_cas(incoming, tls)
        incoming.verify_mode = ssl.CERT_REQUIRED if tls.verify_incoming else ssl.CERT_NONE
    outgoing: ssl.SSLContext | None = None
    if tls.verify_outgoing:
        outgoing = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        outgoing.minimum_version = _VERSIONS[tls.min_version]
        # The chain is checked by OpenSSL; the name by verify_name, in Go's words, and only
        # with verify_server_hostname (Consul checks no name without it).
        outgoing.check_hostname = False
        outgoing.verify_mode = ssl.CERT_REQUIRED
        _load_cas(outgoing, tls)
        _load_cert(outgoing, tls)
    return RPCTLS(
        datacenter=datacenter,
        domain=domain.rstrip("."),
        incoming=incoming,
        outgoing=outgoing,
        verify_incoming=tls.verify_incoming,
        verify_server_hostname=tls.verify_server_hostname,
    )


def _matches(pattern: str, name: str) -> bool:
    """Go's matchHostnames: case-insensitive, a `*` only as the whole leftmost label."""
    want, have = pattern.lower().rstrip(".").split("."), name.lower().rstrip(".").split(".")
    if len(want) != len(have):
        return False
    return all(
        w == h or (i == 0 and w == "*") for i, (w, h) in enumerate(zip(want, have, strict=True))
    )


def verify_name(peercert: dict[str, Any] | None, name: str) -> None:
    """Raise TLSError (Go's x509.HostnameError wording) unless the verified certificate
    `peercert` (SSLObject.getpeercert()) names `name` among its DNS SANs."""
    sans = [str(v) for k, v in (peercert or {}).get("subjectAltName", ()) if k == "DNS"]
    if any(_matches(p, name) for p in sans):
        return
    if not sans:
        raise TLSError(f"x509: certificate is not valid for any names, but wanted to match {name}")
    raise TLSError(f"x509: certificate is valid for {', '.join(sans)}, not {name}")


#: OpenSSL verify codes -> Go's x509 errors
_VERIFY_ERRORS = {
    2: "x509: certificate signed by unknown authority",  # unable to get issuer certificate
    18: "x509: certificate signed by unknown authority",  # self-signed leaf
    19: "x509: certificate signed by unknown authority",  # self-signed in chain
    20: "x509: certificate signed by unknown authority",  # unable to get local issuer
    21: "x509: certificate signed by unknown authority",  # unable to verify leaf signature
    9: "x509: certificate has expired or is not yet valid",
    10: "x509: certificate has expired or is not yet valid",
}
#: OpenSSL reasons -> Go's crypto/tls errors
_TLS_ERRORS = {
    "SSLV3_ALERT_BAD_CERTIFICATE": "remote error: tls: bad certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "remote error: tls: certificate required",
    "TLSV1_ALERT_UNKNOWN_CA": "remote error: tls: unknown certificate authority",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "remote error: tls: expired certificate",
    "TLSV1_ALERT_PROTOCOL_VERSION": "remote error: tls: protocol version not supported",
    "UNSUPPORTED_PROTOCOL": "tls: client offered only unsupported versions",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "tls: client didn't provide a certificate",
    "WRONG_VERSION_NUMBER": "tls: first record does not look like a TLS handshake",
    "NO_SHARED_CIPHER": "tls: no cipher suite supported by both client and server",
}


def describe(exc: BaseException) -> str:
    """A handshake failure in the words Consul logs for it."""
    if isinstance(exc, TLSError):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        return _VERIFY_ERRORS.get(code, f"x509: {exc.verify_message or exc.reason}")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        return _TLS_ERRORS.get(reason, f"tls: {reason.lower().replace('_', ' ') or exc}")
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError):
        return "EOF"
    return str(exc) or type(exc).__name__
