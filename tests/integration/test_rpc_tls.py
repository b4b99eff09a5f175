"""TLS on server RPC and raft between real agents (Consul 1.x's tls.internal_rpc), with
certificates made by `senate tls ca create` / `tls cert create`: three servers with
verify_incoming, verify_outgoing and verify_server_hostname elect a leader and replicate KV
writes, and a client agent holding a client certificate reaches them; a plain connection to
port 8300 is refused and logged while the servers keep serving; a server holding a
certificate for server.dc2.consul gets no raft traffic from dc1's servers (their
verify_server_hostname refuses it, in Go's words) while dc1 stays writable; an agent asking
for verify_outgoing without a CA does not start."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consul_pki import CertPair, Pki, make_pki
from harness import Cluster, Node, wait_for

from agent.codec import RPCType, encode_frame

pytestmark = pytest.mark.timeout(180)

IPS = ["127.5.31.1", "127.5.31.2", "127.5.31.3"]
CLIENT_IP = "127.5.31.10"
ROGUE_IP = "127.5.31.4"


def _tls_config(path: Path, pki: Pki, pair: CertPair) -> Path:
    path.write_text(
        "tls {\n"
        f'  defaults {{ ca_file = "{pki.ca}"  cert_file = "{pair.cert}"  key_file = "{pair.key}"\n'
        "             verify_incoming = true  verify_outgoing = true }\n"
        "  internal_rpc { verify_server_hostname = true }\n"
        "}\n"
    )
    return path


def _server(cluster: Cluster, name: str, ip: str, conf: Path, *, expect: int = 3) -> Node:
    node = cluster.add(
        name,
        ip,
        server=True,
        bootstrap_expect=expect,
        retry_join=[i for i in IPS if i != ip],
        extra=[f"-config-file={conf}"],
    )
    return node


def _put(node: Node, key: str, value: str) -> bool:
    status, body, _ = node.request("PUT", f"/v1/kv/{key}", value.encode())
    return status == 200 and body.strip() == b"true"


def _stale_value(node: Node, key: str) -> str | None:
    status, body, _ = node.request("GET", f"/v1/kv/{key}?stale", timeout=3.0)
    if status != 200:
        return None
    return base64.b64decode(json.loads(body)[0]["Value"]).decode()


async def _plain_rpc(ip: str) -> bytes:
    """Speak server RPC without TLS to ip:8300 (from 127.0.0.1); what comes back before the
    server closes (a reset, as the request is left unread, counts as nothing)."""
    reader, writer = await asyncio.open_connection(ip, 8300, local_addr=("127.0.0.1", 0))
    writer.write(bytes([RPCType.CONSUL]))
    writer.write(encode_frame({"Seq": 1, "Method": "Status.Leader", "Args": {}}))
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def test_tls_cluster_elects_replicates_and_refuses_plain_rpc(
    cluster: Cluster, tmp_path: Path, pki: Pki
) -> None:
    servers = [
        _server(cluster, f"s{n}", ip, _tls_config(tmp_path / f"s{n}.hcl", pki, pki.cert()))
        for n, ip in enumerate(IPS, start=1)
    ]
    for s in servers:
        s.start()
    cluster.wait_http(servers)
    leader = cluster.wait_leader(servers, timeout=40)
    assert leader in {f"{ip}:8300" for ip in IPS}
    assert _put(servers[0], "tls/a", "one")
    for s in servers:  # replicated to every server's own store (raft over TLS)
        wait_for(lambda s=s: _stale_value(s, "tls/a") == "one", 20, f"tls/a on {s.name}")

    # A client agent with a client certificate: its RPC goes to the servers over TLS.
    client_conf = _tls_config(tmp_path / "c1.hcl", pki, pki.cert("client"))
    client = cluster.add("c1", CLIENT_IP, retry_join=IPS, extra=[f"-config-file={client_conf}"])
    client.start()
    cluster.wait_http([client])
    wait_for(lambda: _put(client, "tls/b", "two"), 30, "a KV write through the client")
    wait_for(lambda: _stale_value(servers[2], "tls/b") == "two", 20, "tls/b on s3")

    # A plain connection to 8300 is refused, said so in the log, and the servers keep serving.
    assert asyncio.run(_plain_rpc(IPS[1])) == b""
    refused = (
        "[WARN] agent.server.rpc: Non-TLS connection attempted with VerifyIncoming set: "
        "conn=from=127.0.0.1:"
    )
    wait_for(lambda: refused in servers[1].log_text(), 10, "the refusal in s2's log")
    assert _put(servers[1], "tls/c", "three")
    wait_for(lambda: _stale_value(servers[0], "tls/c") == "three", 20, "tls/c on s1")
    for s in servers:
        assert "Gossip encrypt: false, RPC-TLS: true, TLS-Incoming: true" in s.log_text()
        assert "Traceback" not in s.log_text()


def test_server_certificate_of_another_datacenter_gets_no_raft(
    cluster: Cluster, tmp_path: Path, pki: Pki
) -> None:
    servers = [
        _server(cluster, f"s{n}", ip, _tls_config(tmp_path / f"s{n}.hcl", pki, pki.cert()))
        for n, ip in enumerate(IPS, start=1)
    ]
    for s in servers:
        s.start()
    cluster.wait_http(servers)
    leader_addr = cluster.wait_leader(servers, timeout=40)
    leader = cluster.node_by_server_addr(leader_addr)
    assert _put(leader, "before", "1")

    # A fourth dc1 server whose certificate names server.dc2.consul: gossip lets it in, the
    # leader adds it to raft, and every raft connection to it fails the name check.
    rogue_conf = _tls_config(tmp_path / "rogue.hcl", pki, pki.cert("server", "dc2"))
    rogue = cluster.add(
        "rogue", ROGUE_IP, server=True, retry_join=IPS, extra=[f"-config-file={rogue_conf}"]
    )
    rogue.start()
    cluster.wait_http([rogue])
    want = (
        f'failed to contact peer: peer={ROGUE_IP}:8300 error="x509: certificate is valid for '
        'server.dc2.consul, localhost, not server.dc1.consul"'
    )
    wait_for(lambda: want in leader.log_text(), 40, "the leader's name check failing on rogue")
    assert _put(leader, "after", "2")  # dc1 keeps a quorum and stays writable
    for s in servers:
        wait_for(lambda s=s: _stale_value(s, "after") == "2", 20, f"'after' on {s.name}")
    # The rogue never hears from the leader: no leader, none of the data.
    assert rogue.leader() == ""
    assert _stale_value(rogue, "before") is None and _stale_value(rogue, "after") is None
    assert "Traceback" not in leader.log_text() + rogue.log_text()


def test_verify_outgoing_without_a_ca_does_not_start(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.add("noca", "127.5.31.20", server=True, bootstrap_expect=1)
    node.args += ["-hcl=tls { defaults { verify_outgoing = true } }"]
    node.start()
    assert node.proc is not None
    assert node.proc.wait(30) == 1
    assert "VerifyOutgoing set but no CA certificates were provided" in node.log_text()
