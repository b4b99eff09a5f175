"""TLS configuration as Consul 1.x builds it: the `tls { defaults, https, internal_rpc }` block
over the deprecated top-level keys (each named in a warning), each listener's block over
tls.defaults, verify_server_hostname implying verify_outgoing, and the refusals Consul makes at
start (no CA for verify_incoming / verify_outgoing, no certificate for verify_incoming, keys in
a stanza that does not take them), plus senate's own: a certificate without its key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from consul_pki import CertPair, Pki, make_pki

from agent.config import AgentConfig, ConfigError, load


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def pairs(pki: Pki) -> list[CertPair]:
    return [pki.cert("server", "dc1") for _ in range(3)]


def _load(tmp_path: Path, doc: dict[str, object] | str, *flags: str) -> AgentConfig:
    if isinstance(doc, str):
        path = tmp_path / "tls.hcl"
        path.write_text(doc)
    else:
        path = tmp_path / "tls.json"
        path.write_text(json.dumps(doc))
    return load([f"-config-file={path}", "-data-dir=/x", *flags])


def test_internal_rpc_and_https_take_their_block_then_defaults_then_the_old_keys(
    tmp_path: Path, pki: Pki, pairs: list[CertPair]
) -> None:
    old, defaults, rpc = pairs
    cfg = _load(
        tmp_path,
        {
            "ca_file": str(pki.ca),
            "cert_file": str(old.cert),
            "key_file": str(old.key),
            "verify_incoming": False,
            "verify_incoming_rpc": True,
            "tls": {
                "defaults": {"cert_file": str(defaults.cert), "key_file": str(defaults.key)},
                "internal_rpc": {
                    "cert_file": str(rpc.cert),
                    "key_file": str(rpc.key),
                    "verify_server_hostname": True,
                    "tls_min_version": "TLSv1_3",
                },
            },
        },
    )
    rpc_tls, https = cfg.internal_rpc_tls, cfg.https_tls
    assert (rpc_tls.cert_file, rpc_tls.key_file) == (str(rpc.cert), str(rpc.key))
    assert (https.cert_file, https.key_file) == (str(defaults.cert), str(defaults.key))
    assert rpc_tls.ca_file == https.ca_file == str(pki.ca)  # the old key fills tls.defaults
    assert rpc_tls.verify_incoming and not https.verify_incoming  # verify_incoming_rpc
    # verify_server_hostname implies verify_outgoing (Consul's fix of CVE-2018-19653)
    assert rpc_tls.verify_server_hostname and rpc_tls.verify_outgoing
    assert (rpc_tls.min_version, https.min_version) == ("tls13", "tls12")
    assert cfg.warnings == (
        "WARNING: The 'ca_file' field is deprecated. Use the 'tls.defaults.ca_file' field instead.",
        "WARNING: The 'cert_file' field is deprecated. Use the 'tls.defaults.cert_file' field "
        "instead.",
        "WARNING: The 'key_file' field is deprecated. Use the 'tls.defaults.key_file' field "
        "instead.",
        "WARNING: The 'verify_incoming' field is deprecated. Use the "
        "'tls.defaults.verify_incoming' field instead.",
        "WARNING: The 'verify_incoming_rpc' field is deprecated. Use the "
        "'tls.internal_rpc.verify_incoming' field instead.",
    )


def test_top_level_keys_alone_configure_both_listeners(
    tmp_path: Path, pki: Pki, pairs: list[CertPair]
) -> None:
    """The 0.7..1.11 way: top-level keys, as the seed's configs and templates write them."""
    cfg = _load(
        tmp_path,
        f'ca_file = "{pki.ca}"\ncert_file = "{pairs[0].cert}"\nkey_file = "{pairs[0].key}"\n'
        "verify_incoming = true\nverify_outgoing = true\nverify_server_hostname = true\n"
        "ports { https = 8501 }\n",
    )
    rpc, https = cfg.internal_rpc_tls, cfg.https_tls
    assert rpc.verify_incoming and rpc.verify_outgoing and rpc.verify_server_hostname
    assert https.verify_incoming and https.cert_file == rpc.cert_file == str(pairs[0].cert)


def test_verify_server_hostname_alone_turns_outgoing_tls_on(tmp_path: Path, pki: Pki) -> None:
    cfg = _load(
        tmp_path,
        {
            "tls": {
                "defaults": {"ca_file": str(pki.ca)},
                "internal_rpc": {"verify_server_hostname": True},
            }
        },
    )
    assert cfg.internal_rpc_tls.verify_outgoing


def test_no_tls_is_plaintext_without_warnings(tmp_path: Path) -> None:
    cfg = _load(tmp_path, {"datacenter": "dc1"})
    rpc = cfg.internal_rpc_tls
    assert not (rpc.verify_incoming or rpc.verify_outgoing or rpc.cert_file)
    assert cfg.warnings == ()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"verify_outgoing": True},
            "VerifyOutgoing set but no CA certificates were provided",
        ),
        (
            {"tls": {"internal_rpc": {"verify_server_hostname": True}}},
            "VerifyOutgoing set but no CA certificates were provided",
        ),
        (
            {"tls": {"defaults": {"verify_incoming": True}}},
            "VerifyIncoming set but no CA certificates were provided",
        ),
        (
            {"tls": {"internal_rpc": {"verify_incoming": True, "ca_file": "@ca"}}},
            "VerifyIncoming requires either a Cert and Key pair in the configuration file, "
            "or auto_encrypt/auto_config be enabled",
        ),
        (
            {"tls": {"defaults": {"ca_file": "@ca", "cert_file": "@cert"}}},
            "Failed to load cert/key pair: cert_file (@cert) is set but key_file is not",
        ),
        (
            {"tls": {"internal_rpc": {"key_file": "@key"}}},
            "Failed to load cert/key pair: key_file (@key) is set but cert_file is not",
        ),
        (
            {"tls": {"defaults": {"cert_file": "/nonexistent.pem", "key_file": "@key"}}},
            "Failed to load cert/key pair (/nonexistent.pem, @key)",
        ),
        (
            {"tls": {"defaults": {"ca_file": "/nonexistent-ca.pem", "verify_outgoing": True}}},
            "Error loading from /nonexistent-ca.pem",
        ),
        (
            {"tls": {"defaults": {"verify_server_hostname": True}}},
            "key 'tls.defaults.verify_server_hostname': verify_server_hostname is only valid in "
            "the tls.internal_rpc stanza",
        ),
        (
            {"tls": {"https": {"verify_server_hostname": False}}},
            "verify_server_hostname is only valid in the tls.internal_rpc stanza",
        ),
        (
            {"tls": {"grpc": {"verify_outgoing": True}}},
            "verify_outgoing is not valid in the tls.grpc stanza",
        ),
        (
            {"tls": {"internal_rpc": {"use_auto_cert": True}}},
            "use_auto_cert is only valid in the tls.grpc stanza",
        ),
        (
            {"tls": {"defaults": {"tls_min_version": "ssl3"}}},
            "TLSMinVersion: value ssl3 not supported, please specify one of [TLSv1_0, TLSv1_1, "
            "TLSv1_2, TLSv1_3]",
        ),
    ],
)
def test_settings_consul_refuses_stop_the_agent(
    tmp_path: Path, pki: Pki, pairs: list[CertPair], doc: dict[str, object], message: str
) -> None:
    text = (
        json.dumps(doc)
        .replace("@ca", str(pki.ca))
        .replace("@cert", str(pairs[0].cert))
        .replace("@key", str(pairs[0].key))
    )
    message = (
        message.replace("@ca", str(pki.ca))
        .replace("@cert", str(pairs[0].cert))
        .replace("@key", str(pairs[0].key))
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, json.loads(text))


def test_ca_path_reads_every_file_and_an_empty_one_is_refused(
    tmp_path: Path, pki: Pki, pairs: list[CertPair]
) -> None:
    cas = tmp_path / "cas"
    cas.mkdir()
    doc = {"tls": {"defaults": {"ca_path": str(cas), "verify_outgoing": True}}}
    with pytest.raises(ConfigError, match="Error loading from CAPath: no CAs found"):
        _load(tmp_path, doc)
    (cas / "any-name.crt").write_bytes(pki.ca.read_bytes())  # no c_rehash'd names needed
    assert _load(tmp_path, doc).internal_rpc_tls.ca_path == str(cas)
    (cas / "junk.txt").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"junk\.txt: failed to parse PEM"):
        _load(tmp_path, doc)


def test_https_settings_without_an_https_listener_are_named(
    tmp_path: Path, pki: Pki, pairs: list[CertPair]
) -> None:
    cfg = _load(
        tmp_path,
        {"tls": {"https": {"ca_file": str(pki.ca), "verify_incoming": False}}},
    )
    assert cfg.warnings == (
        "WARNING: HTTPS settings (ca_file, verify_incoming) have no effect: no HTTPS listener "
        "(ports.https)",
    )
