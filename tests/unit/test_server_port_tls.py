"""TLS on the server port (agent/mux.py, agent/tlsutil.py, the RPC pool): a connection that
opens with RPCType.TLS is served over TLS and dispatched on its inner byte; verify_incoming
refuses plain connections and clients without a certificate; verify_server_hostname checks
server.<dc>.<domain> (the target datacenter's) on the client's side and, for raft, the
client certificate on the server's side; every failure is logged in Consul's words, surfaces
as a connection error, and never hangs."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from consul_pki import CertPair, Pki, make_pki

from agent.codec import RPCType, encode_frame, read_frame
from agent.config.model import RPCTLSConfig
from agent.mux import PortMux, dial
from agent.server.rpc import ConnectFailed, ConnPool, RPCServer
from agent.tlsutil import RPCTLS, TLSError, rpc_tls, verify_name

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def certs(pki: Pki) -> dict[str, CertPair]:
    return {
        "server": pki.cert("server", "dc1"),
        "server-dc2": pki.cert("server", "dc2"),
        "client": pki.cert("client", "dc1"),
    }


def _tls(pki: Pki, pair: CertPair | None, **verify: bool) -> RPCTLS:
    tls = rpc_tls(
        RPCTLSConfig(
            ca_file=str(pki.ca),
            cert_file=str(pair.cert) if pair else "",
            key_file=str(pair.key) if pair else "",
            verify_outgoing=True,
            **verify,
        ),
        datacenter="dc1",
        domain="consul.",
    )
    assert tls is not None
    return tls


async def _echo(method: str, args: dict[str, Any]) -> Any:
    return {"Method": method, **args}


async def _serve(tls: RPCTLS | None) -> tuple[PortMux, str]:
    mux = PortMux(tls)
    RPCServer(mux, _echo)
    await mux.start(HOST, 0)
    return mux, f"{HOST}:{mux.port}"


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)


async def test_rpc_over_tls_and_plain_connections_refused_with_verify_incoming(
    pki: Pki, certs: dict[str, CertPair], caplog: pytest.LogCaptureFixture
) -> None:
    server_tls = _tls(pki, certs["server"], verify_incoming=True, verify_server_hostname=True)
    mux, addr = await _serve(server_tls)
    secure = ConnPool(tls=_tls(pki, certs["client"], verify_server_hostname=True))
    plain = ConnPool(connect_timeout=2.0)
    try:
        assert await secure.call(addr, "Status.Ping", {"X": 1}) == {"Method": "Status.Ping", "X": 1}
        with (
            caplog.at_level(logging.WARNING, logger="agent.server.rpc"),
            pytest.raises((ConnectionError, OSError)),
        ):
            await plain.call(addr, "Status.Ping", {}, timeout=5)
        assert "agent.server.rpc: Non-TLS connection attempted with VerifyIncoming set: " in (
            _messages(caplog)
        )
        assert f"conn=from={HOST}:" in _messages(caplog)
        # The listener keeps serving, plain and TLS connections alike.
        secure.drop(addr)
        assert (await secure.call(addr, "KVS.Get", {}))["Method"] == "KVS.Get"
        assert mux.rejected == 1
    finally:
        await secure.close()
        await plain.close()
        await mux.close()


async def test_server_name_is_checked_for_the_datacenter_called(
    pki: Pki, certs: dict[str, CertPair], caplog: pytest.LogCaptureFixture
) -> None:
    mux, addr = await _serve(_tls(pki, certs["server-dc2"]))
    pool = ConnPool(tls=_tls(pki, certs["server"], verify_server_hostname=True))
    try:
        with (
            caplog.at_level(logging.ERROR, logger="agent.client"),
            pytest.raises(ConnectFailed) as err,
        ):
            await pool.call(addr, "KVS.Get", {})
        want = "x509: certificate is valid for server.dc2.consul, localhost, not server.dc1.consul"
        assert str(err.value) == f"rpc error getting client: failed to get conn: {want}"
        assert (
            f'agent.client: RPC failed to server: method=KVS.Get server={addr} error="'
            f'rpc error getting client: failed to get conn: {want}"'
        ) in _messages(caplog)
        # A call to dc2 checks server.dc2.consul: that server's certificate names it.
        assert (await pool.call(addr, "KVS.Get", {}, datacenter="dc2"))["Method"] == "KVS.Get"
    finally:
        await pool.close()
        await mux.close()


async def test_verify_outgoing_without_hostname_checks_the_ca_only(
    pki: Pki, certs: dict[str, CertPair], tmp_path: Path
) -> None:
    mux, addr = await _serve(_tls(pki, certs["server-dc2"]))
    pool = ConnPool(tls=_tls(pki, certs["client"]))
    other = make_pki(tmp_path / "other")
    stranger = ConnPool(tls=_tls(other, other.cert("client", "dc1")))
    try:
        assert (await pool.call(addr, "A", {}))["Method"] == "A"  # any name, our CA
        with pytest.raises(ConnectFailed, match="x509: certificate signed by unknown authority"):
            await stranger.call(addr, "A", {})
    finally:
        await pool.close()
        await stranger.close()
        await mux.close()


async def test_client_without_a_certificate_is_refused(
    pki: Pki, certs: dict[str, CertPair], caplog: pytest.LogCaptureFixture
) -> None:
    mux, addr = await _serve(_tls(pki, certs["server"], verify_incoming=True))
    pool = ConnPool(tls=_tls(pki, None))
    try:
        with caplog.at_level(logging.ERROR, logger="agent.server.rpc"):
            # TLS 1.3: the client's handshake ends before the server checks its certificate,
            # so the refusal arrives as the connection closing under the call.
            with pytest.raises((ConnectionError, OSError)):
                await pool.call(addr, "A", {}, timeout=5)
            await _until(lambda: "failed to read byte" in _messages(caplog))
        assert "error=tls: client didn't provide a certificate" in _messages(caplog)
    finally:
        await pool.close()
        await mux.close()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_handshakes_are_bounded_on_both_ends(
    pki: Pki, certs: dict[str, CertPair], caplog: pytest.LogCaptureFixture
) -> None:
    mux, _ = await _serve(_tls(pki, certs["server"], verify_incoming=True))
    mux.handshake_timeout = 0.3
    try:
        # A client that asks for TLS and then says nothing is closed at the timeout.
        reader, writer = await asyncio.open_connection(HOST, mux.port)
        with caplog.at_level(logging.ERROR, logger="agent.server.rpc"):
            writer.write(bytes([RPCType.TLS]))
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert "failed to read byte: conn=from=127.0.0.1:" in _messages(caplog)
        assert "error=i/o timeout" in _messages(caplog)
        writer.close()
    finally:
        await mux.close()

    # A "server" that accepts and never answers the handshake: the dial gives up in time.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    listener = await asyncio.start_server(silent, HOST, 0)
    port = listener.sockets[0].getsockname()[1]
    pool = ConnPool(connect_timeout=0.5, tls=_tls(pki, certs["server"]))
    started = time.monotonic()
    try:
        with pytest.raises(ConnectFailed):
            await pool.call(f"{HOST}:{port}", "A", {})
        assert time.monotonic() - started < 3.0
    finally:
        await pool.close()
        listener.close()


async def test_tls_inside_tls_and_unknown_bytes_are_refused(
    pki: Pki, certs: dict[str, CertPair], caplog: pytest.LogCaptureFixture
) -> None:
    mux, addr = await _serve(_tls(pki, certs["server"], verify_incoming=True))
    client = _tls(pki, certs["client"])
    try:
        with caplog.at_level(logging.ERROR, logger="agent.server.rpc"):
            for kind, needle in (
                (RPCType.TLS, "TLS connection attempting to establish inner TLS connection"),
                (RPCType.GOSSIP, "unrecognized RPC byte: byte=6"),
            ):
                reader, writer = await dial(addr, kind, client)
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
                assert needle in _messages(caplog)
    finally:
        await mux.close()


async def test_raft_needs_a_server_certificate_of_this_datacenter(
    pki: Pki, certs: dict[str, CertPair], caplog: pytest.LogCaptureFixture
) -> None:
    """Consul's AuthorizeServerConn: with verify_incoming and verify_server_hostname a raft
    connection must present a certificate for server.dc1.consul; RPC accepts clients."""
    mux, addr = await _serve(
        _tls(pki, certs["server"], verify_incoming=True, verify_server_hostname=True)
    )
    served: list[bytes] = []

    async def raft(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(await reader.readexactly(1))

    mux.register(RPCType.RAFT, raft, servers_only=True)
    try:
        with caplog.at_level(logging.WARNING, logger="agent.server.rpc"):
            for name in ("client", "server-dc2"):
                reader, writer = await dial(addr, RPCType.RAFT, _tls(pki, certs[name]))
                writer.write(b"x")
                assert await asyncio.wait_for(reader.read(), 5) == b""
                writer.close()
        log = _messages(caplog)
        assert (
            "AuthorizeServerConn failed certificate validation for certificate with a "
            "SAN.DNSName of server.dc1.consul: x509: certificate is valid for "
            "client.dc1.consul, localhost, not server.dc1.consul: from=127.0.0.1:"
        ) in log
        assert "valid for server.dc2.consul, localhost, not server.dc1.consul" in log
        assert "operation=raft RPC" in log
        assert served == []
        reader, writer = await dial(addr, RPCType.RAFT, _tls(pki, certs["server"]))
        writer.write(b"x")
        await _until(lambda: served == [b"x"])
        writer.close()
        # Server RPC itself is open to clients holding a certificate of the CA.
        reader, writer = await dial(addr, RPCType.CONSUL, _tls(pki, certs["client"]))
        writer.write(encode_frame({"Seq": 1, "Method": "Status.Leader", "Args": {}}))
        assert (await asyncio.wait_for(read_frame(reader), 5))["Result"]["Method"] == (
            "Status.Leader"
        )
        writer.close()
    finally:
        await mux.close()


def test_names_match_as_go_matches_them() -> None:
    cert = {"subjectAltName": (("DNS", "*.dc1.consul"), ("DNS", "localhost"), ("IP Address", "1"))}
    verify_name(cert, "server.dc1.consul")
    verify_name(cert, "SERVER.DC1.CONSUL.")
    verify_name(cert, "localhost")
    with pytest.raises(
        TLSError, match=r"valid for \*\.dc1\.consul, localhost, not a\.b\.dc1\.consul"
    ):
        verify_name(cert, "a.b.dc1.consul")
    with pytest.raises(TLSError, match=r"not valid for any names, but wanted to match x\.consul"):
        verify_name({}, "x.consul")


def test_nothing_configured_is_plaintext_and_no_outgoing_without_verify_outgoing(
    pki: Pki, certs: dict[str, CertPair]
) -> None:
    assert rpc_tls(RPCTLSConfig(), datacenter="dc1", domain="consul.") is None
    served_only = rpc_tls(
        RPCTLSConfig(
            ca_file=str(pki.ca),
            cert_file=str(certs["server"].cert),
            key_file=str(certs["server"].key),
        ),
        datacenter="dc1",
        domain="consul.",
    )
    assert served_only is not None and served_only.incoming is not None
    assert served_only.outgoing is None
    assert served_only.server_name("dc9") == "server.dc9.consul"
