"""The TLS keys of the config document: Consul 1.12+'s `tls { defaults, https, internal_rpc,
grpc }` block and the deprecated top-level keys it replaced, as handlers filling `acc["tls"]`,
and `tls_values`, which resolves them into the HTTPS listener's and internal RPC's settings.

Consul's precedence (agent/config/builder.go, deprecated.go): a deprecated top-level key only
fills the 1.x key it maps to when no source sets that one (`ca_file`, `ca_path`, `cert_file`,
`key_file`, `tls_min_version`, `verify_incoming`, `verify_outgoing` map to tls.defaults;
`verify_incoming_https` to tls.https, `verify_incoming_rpc` and `verify_server_hostname` to
tls.internal_rpc); then each listener takes its own block's value, else tls.defaults'. The
later source wins within each key. verify_server_hostname implies verify_outgoing (Consul's
fix for CVE-2018-19653). Each deprecated key used is named once in a warning, as Consul does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config import convert as c

Acc = dict[str, Any]
Handler = Callable[[Any, Acc], None]

TLS_VERSIONS = ("tls10", "tls11", "tls12", "tls13")


def tls_version(value: Any) -> str:
    """`tls12` (the pre-1.12 spelling) or `TLSv1_2` (1.12+) -> `tls12`."""
    s = c.expect_str(value).lower().replace("tlsv1_", "tls1").replace(".", "")
    if s not in TLS_VERSIONS:
        raise ValueError(
            f"TLSMinVersion: value {value} not supported, please specify one of "
            "[TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]"
        )
    return s


#: config key of a protocol block -> (field of HTTPSConfig / RPCTLSConfig, converter)
PROTOCOL_KEYS: dict[str, tuple[str, c.Conv]] = {
    "ca_file": ("ca_file", c.expect_str),
    "ca_path": ("ca_path", c.expect_str),
    "cert_file": ("cert_file", c.expect_str),
    "key_file": ("key_file", c.expect_str),
    "verify_incoming": ("verify_incoming", c.expect_bool),
    "verify_outgoing": ("verify_outgoing", c.expect_bool),
    "tls_min_version": ("min_version", tls_version),
}

_KEY_OF = {name: key for key, (name, _) in PROTOCOL_KEYS.items()}

#: deprecated top-level key -> the block it fills
DEPRECATED: dict[str, tuple[str, str]] = {
    **{key: ("defaults", key) for key in PROTOCOL_KEYS},
    "verify_incoming_https": ("https", "verify_incoming"),
    "verify_incoming_rpc": ("internal_rpc", "verify_incoming"),
    "verify_server_hostname": ("internal_rpc", "verify_server_hostname"),
}


def _block(block: str, key: str, conv: c.Conv) -> Handler:
    name = PROTOCOL_KEYS[key][0] if key in PROTOCOL_KEYS else key

    def handle(value: Any, acc: Acc) -> None:
        acc.setdefault("tls", {}).setdefault(block, {})[name] = conv(value)

    return handle


def _deprecated(old: str) -> Handler:
    block, key = DEPRECATED[old]
    conv = PROTOCOL_KEYS[key][1] if key in PROTOCOL_KEYS else c.expect_bool
    name = PROTOCOL_KEYS[key][0] if key in PROTOCOL_KEYS else key

    def handle(value: Any, acc: Acc) -> None:
        tls = acc.setdefault("tls", {})
        tls.setdefault("_legacy", {}).setdefault(block, {})[name] = conv(value)
        tls.setdefault("_deprecated", {})[old] = f"tls.{block}.{key}"

    return handle


def _refuse(message: str) -> Handler:
    def handle(value: Any, acc: Acc) -> None:
        raise ValueError(message)

    return handle


_ONLY_INTERNAL_RPC = "verify_server_hostname is only valid in the tls.internal_rpc stanza"
_ONLY_GRPC = "use_auto_cert is only valid in the tls.grpc stanza"

#: dotted key -> handler; tls.https.verify_outgoing and the rest of tls.grpc (senate has no
#: gRPC listener and makes no outgoing HTTPS) stay keys without effect, warned about
TLS_HANDLERS: dict[str, Handler] = {
    **{old: _deprecated(old) for old in DEPRECATED},
    **{
        f"tls.{block}.{key}": _block(block, key, conv)
        for block in ("defaults", "https", "internal_rpc")
        for key, (_, conv) in PROTOCOL_KEYS.items()
        if (block, key) != ("https", "verify_outgoing")
    },
    "tls.internal_rpc.verify_server_hostname": _block(
        "internal_rpc", "verify_server_hostname", c.expect_bool
    ),
    **{
        f"tls.{block}.verify_server_hostname": _refuse(_ONLY_INTERNAL_RPC)
        for block in ("defaults", "https", "grpc")
    },
    "tls.grpc.verify_outgoing": _refuse("verify_outgoing is not valid in the tls.grpc stanza"),
    **{
        f"tls.{block}.use_auto_cert": _refuse(_ONLY_GRPC)
        for block in ("defaults", "https", "internal_rpc")
    },
}


def _layer(tls: dict[str, Any], block: str) -> dict[str, Any]:
    return {**tls.get("_legacy", {}).get(block, {}), **tls.get(block, {})}


def tls_values(acc: Acc) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of HTTPSConfig and of RPCTLSConfig, resolved as Consul does."""
    tls = acc.get("tls") or {}
    defaults = _layer(tls, "defaults")
    https = {**defaults, **_layer(tls, "https")}
    https.pop("verify_outgoing", None)  # no outgoing HTTPS: the key is internal RPC's only
    rpc = {**defaults, **_layer(tls, "internal_rpc")}
    rpc["verify_outgoing"] = bool(rpc.get("verify_outgoing")) or bool(
        rpc.get("verify_server_hostname")
    )
    return https, rpc


def tls_warnings(acc: Acc) -> list[str]:
    """One warning per deprecated top-level key used, in Consul's words; and one when HTTPS's
    own settings are given without an HTTPS listener to apply them to."""
    tls = acc.get("tls") or {}
    out = [
        f"WARNING: The '{old}' field is deprecated. Use the '{new}' field instead."
        for old, new in sorted(tls.get("_deprecated", {}).items())
    ]
    https_own = tls.get("https") or tls.get("_legacy", {}).get("https")
    if https_own and int((acc.get("ports") or {}).get("https", -1)) <= 0:
        out.append(
            f"WARNING: HTTPS settings ({', '.join(sorted(_KEY_OF.get(k, k) for k in https_own))}) "
            "have no effect: "
            "no HTTPS listener (ports.https)"
        )
    return out
