"""TLS contexts built from the agent's configuration (Consul's tlsutil): the HTTPS listener's,
with the certificate and key it serves, the CA it checks client certificates against
(`verify_incoming`), and the lowest protocol version it speaks."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.config.model import HTTPSConfig

_VERSIONS = {
    "tls10": ssl.TLSVersion.TLSv1,
    "tls11": ssl.TLSVersion.TLSv1_1,
    "tls12": ssl.TLSVersion.TLSv1_2,
    "tls13": ssl.TLSVersion.TLSv1_3,
}


def https_context(tls: HTTPSConfig) -> ssl.SSLContext:
    """The server context of the HTTPS listener; ConfigError naming the file that fails."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"Failed to load cert/key pair ({tls.cert_file}, {tls.key_file}): {exc}"
        ) from None
    if tls.ca_file or tls.ca_path:
        try:
            ctx.load_verify_locations(cafile=tls.ca_file or None, capath=tls.ca_path or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"Failed to load CA ({tls.ca_file or tls.ca_path}): {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.verify_incoming else ssl.CERT_NONE
    return ctx
