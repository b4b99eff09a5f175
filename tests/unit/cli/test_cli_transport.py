"""How every command reaches the agent (Consul's command/flags/http.go and api.NewClient):
https:// with -ca-file / -ca-path / -client-cert / -client-key / -tls-server-name and their
CONSUL_* variables, unix:// sockets, the ACL token as X-Consul-Token; and a bad address or an
unreachable agent is one `Error ...` line and exit 1, never a traceback."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_servers import (
    DATACENTERS,
    LEADER,
    SERVER_NAME,
    Pki,
    Running,
    closed_tcp_port,
    https_server,
    make_pki,
    unix_server,
)

import agent.cli
from agent.cli import all_commands, dispatch
from agent.client import ClientError, ConfigError, HTTPClient, TLSOptions

pytestmark = pytest.mark.timeout(60)

ENV = (
    "CONSUL_HTTP_ADDR",
    "SENATE_HTTP_ADDR",
    "CONSUL_RPC_ADDR",
    "SENATE_RPC_ADDR",
    "CONSUL_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN_FILE",
    "CONSUL_HTTP_SSL",
    "CONSUL_HTTP_SSL_VERIFY",
    "CONSUL_CACERT",
    "CONSUL_CAPATH",
    "CONSUL_CLIENT_CERT",
    "CONSUL_CLIENT_KEY",
    "CONSUL_TLS_SERVER_NAME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"), ca_name="Somebody Else's CA")


@pytest.fixture
def https(pki: Pki) -> Iterator[Running]:
    with https_server(pki) as running:
        yield running


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_error_line(err: str, prefix: str = "Error") -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    return lines[0]


# ---- https --------------------------------------------------------------------------------


def test_ca_file_verifies_the_agent(
    https: Running, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(
        capsys, "catalog", "datacenters", f"-http-addr={https.url}", f"-ca-file={pki.ca}"
    ) == (0, "dc1\ndc2\n", "")
    client = HTTPClient(https.url, tls=TLSOptions(ca_file=str(pki.ca)))
    try:
        assert client.get_json("/v1/status/leader") == LEADER
    finally:
        client.close()
    assert [r.path for r in https.recorder.requests] == [
        "/v1/catalog/datacenters",
        "/v1/status/leader",
    ]


def test_ca_path_and_environment(
    https: Running,
    pki: Pki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cas = tmp_path / "cas"
    cas.mkdir()
    shutil.copy(pki.ca, cas / "ca.pem")
    h = f"-http-addr={https.url}"
    assert run(capsys, "catalog", "datacenters", h, f"-ca-path={cas}")[0] == 0
    monkeypatch.setenv("CONSUL_CACERT", str(pki.ca))
    monkeypatch.setenv("CONSUL_HTTP_ADDR", https.url)
    assert run(capsys, "catalog", "datacenters") == (0, "dc1\ndc2\n", "")
    # CONSUL_HTTP_SSL=true: a bare host:port is https
    monkeypatch.setenv("CONSUL_HTTP_ADDR", https.url.removeprefix("https://"))
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    assert run(capsys, "catalog", "datacenters") == (0, "dc1\ndc2\n", "")
    monkeypatch.delenv("CONSUL_HTTP_SSL")
    rc, _, err = run(capsys, "catalog", "datacenters")  # plain http to a TLS server
    assert rc == 1
    one_error_line(err, "Error listing datacenters: GET http://127.0.0.1:")


def test_wrong_ca_fails_with_one_line(
    https: Running, other_pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(
        capsys, "catalog", "datacenters", f"-http-addr={https.url}", f"-ca-file={other_pki.ca}"
    )
    assert (rc, out) == (1, "")
    line = one_error_line(err, f"Error listing datacenters: GET {https.url}/v1/catalog/")
    assert line.endswith(
        ": tls: failed to verify certificate: unable to get local issuer certificate"
    )
    rc, _, err = run(capsys, "members", f"-http-addr={https.url}", f"-ca-file={other_pki.ca}")
    assert rc == 1
    assert "tls: failed to verify certificate" in one_error_line(err)


def test_insecure_skip_verify_from_environment(
    https: Running,
    other_pki: Pki,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = f"-http-addr={https.url}"
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "false")
    assert run(capsys, "catalog", "datacenters", h, f"-ca-file={other_pki.ca}")[0] == 0
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "true")
    assert run(capsys, "catalog", "datacenters", h, f"-ca-file={other_pki.ca}")[0] == 1
    capsys.readouterr()


def test_tls_server_name_is_the_sni_and_the_verified_name(
    https: Running, pki: Pki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ("catalog", "datacenters", f"-http-addr={https.url}", f"-ca-file={pki.ca}")
    assert run(capsys, *base, f"-tls-server-name={SERVER_NAME}:8501")[0] == 0  # port dropped
    assert https.recorder.sni[-1] == SERVER_NAME
    rc, _, err = run(capsys, *base, "-tls-server-name=wrong.senate.test")
    assert rc == 1
    assert "tls: failed to verify certificate: Hostname mismatch" in one_error_line(err)
    monkeypatch.setenv("CONSUL_TLS_SERVER_NAME", SERVER_NAME)
    assert run(capsys, *base)[0] == 0


def test_client_certificate_is_presented(
    pki: Pki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with https_server(pki, require_client_cert=True) as server:
        base = ("catalog", "datacenters", f"-http-addr={server.url}", f"-ca-file={pki.ca}")
        rc, _, err = run(
            capsys, *base, f"-client-cert={pki.client_cert}", f"-client-key={pki.client_key}"
        )
        assert (rc, err) == (0, "")
        assert server.recorder.requests[-1].client_cn == "cli.senate"
        monkeypatch.setenv("CONSUL_CLIENT_CERT", str(pki.client_cert))
        monkeypatch.setenv("CONSUL_CLIENT_KEY", str(pki.client_key))
        assert run(capsys, *base)[0] == 0
        monkeypatch.delenv("CONSUL_CLIENT_CERT")
        monkeypatch.delenv("CONSUL_CLIENT_KEY")
        rc, out, err = run(capsys, *base)  # no certificate: the server refuses us
        assert (rc, out) == (1, "")
        one_error_line(err, "Error listing datacenters: ")
        assert len(server.recorder.requests) == 2


def test_bad_tls_settings_are_connection_errors(
    https: Running, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = f"-http-addr={https.url}"
    cases = [
        (
            [f"-client-cert={pki.client_cert}"],
            "Error connecting to Senate agent: both client cert and client key must be provided",
        ),
        (
            [f"-ca-file={tmp_path / 'missing.pem'}"],
            f"Error connecting to Senate agent: Error loading CA File: open {tmp_path}"
            "/missing.pem: no such file or directory",
        ),
        (
            [f"-ca-file={pki.client_key}"],
            "Error connecting to Senate agent: Error loading CA File: couldn't parse PEM in: "
            f"{pki.client_key}",
        ),
        (
            [f"-ca-path={pki.ca}"],
            f"Error connecting to Senate agent: Error loading CA Path: open {pki.ca}: "
            "not a directory",
        ),
    ]
    for flags, expected in cases:
        rc, out, err = run(capsys, "catalog", "datacenters", h, *flags)
        assert (rc, out, err) == (1, "", expected + "\n"), flags
    assert https.recorder.requests == []


# ---- the token ----------------------------------------------------------------------------


def test_token_flag_file_and_environment(
    https: Running,
    pki: Pki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ("catalog", "datacenters", f"-http-addr={https.url}", f"-ca-file={pki.ca}")

    def token_sent(*flags: str) -> str | None:
        rc, _, err = run(capsys, *base, *flags)
        assert (rc, err) == (0, "")
        return https.recorder.requests[-1].token

    assert token_sent() is None
    assert token_sent("-token=abc") == "abc"
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    assert token_sent() == "from-env"
    assert token_sent("-token=flag-wins") == "flag-wins"
    token_file = tmp_path / "token"
    token_file.write_text("  from-file\n")
    assert token_sent(f"-token-file={token_file}") == "from-file"
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(token_file))
    assert token_sent("-token=x") == "from-file"  # as api.NewClient: the file wins
    rc, _, err = run(capsys, *base, f"-token-file={tmp_path / 'nope'}")
    assert rc == 1
    assert err == (
        f"Error connecting to Senate agent: Error loading token file: open {tmp_path}/nope: "
        "no such file or directory\n"
    )


# ---- unix sockets -------------------------------------------------------------------------


def test_unix_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "agent.sock"
    with unix_server(sock) as server:
        assert run(capsys, "catalog", "datacenters", f"-http-addr={server.url}", "-token=t") == (
            0,
            "".join(dc + "\n" for dc in DATACENTERS),
            "",
        )
        client = HTTPClient(server.url)
        try:
            assert client.get_json("/v1/status/leader") == LEADER
        finally:
            client.close()
        assert [(r.path, r.token) for r in server.recorder.requests] == [
            ("/v1/catalog/datacenters", "t"),
            ("/v1/status/leader", None),
        ]
    rc, _, err = run(capsys, "catalog", "datacenters", f"-http-addr=unix://{sock}")
    assert rc == 1
    assert one_error_line(err) == (
        f"Error listing datacenters: GET unix://{sock}/v1/catalog/datacenters: "
        f"dial unix {sock}: connect: no such file or directory"
    )


def test_addresses_as_api_reads_them() -> None:
    c = HTTPClient("http://10.0.0.1:8501/consul/")
    assert (c.scheme, c.host, c.port, c.path_prefix) == ("http", "10.0.0.1", 8501, "/consul")
    assert HTTPClient("10.0.0.1").port == 8500
    assert HTTPClient("[::1]:9").base_url == "http://[::1]:9"
    assert HTTPClient("http://h:1", use_ssl=True).scheme == "https"  # never back to http
    assert HTTPClient("unix:///run/senate.sock").base_url == "unix:///run/senate.sock"
    with pytest.raises(ConfigError, match="Unknown protocol scheme: ftp"):
        HTTPClient("ftp://h:1")
    with pytest.raises(ConfigError, match="Invalid port"):
        HTTPClient("h:http")
    with pytest.raises(ConfigError, match="Invalid address"):
        HTTPClient("unix://")


# ---- every command: a bad or unreachable address is one line, exit 1 -------------------------


def _command_lines(tmp_path: Path) -> dict[str, list[tuple[list[str], list[str]]]]:
    """For each command: (its subcommand words, the flags and arguments that bring it to its
    first call to the agent); -http-addr goes between the two."""
    snap = tmp_path / "restore.snap"
    snap.write_bytes(b"not a snapshot")
    entry = '[{"key": "k", "flags": 0, "value": ""}]'
    return {
        "acl": [
            (["bootstrap"], []),
            (["set-agent-token"], ["default", "x"]),
            (["token", "create"], ["-policy-name=p"]),
            (["token", "read"], ["-self"]),
            (["token", "read"], ["-accessor-id=abc"]),
            (["token", "list"], []),
            (["token", "delete"], ["-accessor-id=anonymous"]),
            (["policy", "create"], ["-name=p"]),
            (["policy", "read"], ["-name=p"]),
            (["policy", "list"], []),
            (["role", "read"], ["-id=abc"]),
            (["role", "list"], []),
        ],
        "catalog": [
            (["datacenters"], []),
            (["nodes"], ["-detailed=true"]),
            (["services"], []),
            (["services"], ["-node=n"]),
        ],
        "debug": [([], [])],
        "event": [([], ["-name=deploy"])],
        "exec": [([], ["uptime"])],
        "force-leave": [([], ["-prune", "node1"])],
        "info": [([], [])],
        "join": [([], ["10.0.0.9"])],
        "keyring": [([], ["-list"])],
        "kv": [
            (["get"], ["k"]),
            (["put"], ["k", "v"]),
            (["delete"], ["k"]),
            (["export"], []),
            (["import"], ["-prefix=p", entry]),
        ],
        "leave": [([], [])],
        "lock": [([], ["jobs", "true"])],
        "maint": [([], []), ([], ["-enable"])],
        "members": [([], [])],
        "monitor": [([], [])],
        "operator": [
            (["raft", "list-peers"], []),
            (["raft", "remove-peer"], ["-address=10.0.0.9:8300"]),
            (["raft", "transfer-leader"], []),
        ],
        "reload": [([], [])],
        "rtt": [([], ["a", "b"])],
        "services": [(["register"], ["-name=web"]), (["deregister"], ["-id=web"])],
        "snapshot": [(["save"], [str(tmp_path / "out.snap")]), (["restore"], [str(snap)])],
        "watch": [([], ["-type=nodes"])],
    }


#: commands that never talk to an agent
OFFLINE = {"agent", "validate", "configtest", "version", "keygen", "tls"}


@pytest.mark.parametrize(
    "address", ["https://127.0.0.1:{closed}", "unix:///nonexistent.sock", "ftp://x", "h:port"]
)
def test_every_command_fails_in_one_line(
    address: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = address.format(closed=closed_tcp_port())
    commands = _command_lines(tmp_path)
    assert set(commands) | OFFLINE == set(all_commands()), "a command is missing from this test"
    for name, variants in commands.items():
        for sub, rest in variants:
            argv = [name, *sub, f"-http-addr={address}", *rest]
            monkeypatch.setattr(sys, "argv", ["senate", *argv])
            with pytest.raises(SystemExit) as exited:
                agent.cli.main()  # an exception escaping main would be a traceback
            captured = capsys.readouterr()
            assert exited.value.code == 1, (argv, captured.err)
            assert "Traceback" not in captured.err, argv
            lines = captured.err.splitlines()
            assert len(lines) == 1, (argv, captured.err)
            # Consul's acl commands word some as "Failed to ...: <error>"
            assert lines[0].lower().startswith(("error", "failed")), (argv, captured.err)


def test_client_errors_keep_their_reason() -> None:
    port = closed_tcp_port()
    client = HTTPClient(f"127.0.0.1:{port}")
    with pytest.raises(ClientError) as failed:
        client.get_json("/v1/status/leader")
    assert str(failed.value) == (
        f"GET http://127.0.0.1:{port}/v1/status/leader: dial tcp 127.0.0.1:{port}: connect: "
        "connection refused"
    )
