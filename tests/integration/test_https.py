"""The HTTP API over TLS (ports.https with cert_file, key_file, ca_file): served with the
configured certificate; with verify_incoming a client without a certificate is refused and
one with a certificate of the CA is served; the CLI talks to it with -ca-file and
-client-cert; HTTPS on without a certificate stops the agent at start."""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit" / "cli"))

from harness import Cluster, run_cli, wait_for
from tls_servers import make_pki

pytestmark = pytest.mark.timeout(120)

IP = "127.5.30.1"
HTTPS = 8501


def _get(ctx: ssl.SSLContext, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"https://{IP}:{HTTPS}{path}", context=ctx, timeout=5) as r:
        return r.status, r.read()


def test_https_with_verify_incoming(cluster: Cluster, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", server_ip=IP)
    conf = tmp_path / "tls.hcl"
    conf.write_text(
        f"ports {{ https = {HTTPS} }}\n"
        f'tls {{ defaults {{ ca_file = "{pki.ca}" cert_file = "{pki.server_cert}"\n'
        f'  key_file = "{pki.server_key}" verify_incoming = true }} }}\n'
    )
    node = cluster.add("tls1", IP, server=True, bootstrap_expect=1)
    node.args += [f"-config-file={conf}"]
    node.start()
    cluster.wait_http([node])
    cluster.wait_leader([node])
    anonymous = ssl.create_default_context(cafile=str(pki.ca))
    anonymous.check_hostname = False
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        _get(anonymous, "/v1/status/leader")
    client = ssl.create_default_context(cafile=str(pki.ca))
    client.check_hostname = False
    client.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    wait_for(lambda: _get(client, "/v1/status/leader")[0] == 200, 10, "HTTPS to answer")
    status, body = _get(client, "/v1/status/leader")
    assert status == 200
    assert json.loads(body) == f"{IP}:8300"
    r = run_cli(
        [
            "members",
            f"-http-addr=https://{IP}:{HTTPS}",
            f"-ca-file={pki.ca}",
            f"-client-cert={pki.client_cert}",
            f"-client-key={pki.client_key}",
        ]
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tls1" in r.stdout
    r = run_cli(["members", f"-http-addr=https://{IP}:{HTTPS}", f"-ca-file={pki.ca}"])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "HTTPS: 8501" in node.log_text()


def test_https_without_a_certificate_does_not_start(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.add("tls2", "127.5.30.2")
    node.args += ["-hcl=ports { https = 8501 }"]
    node.start()
    assert node.proc is not None
    assert node.proc.wait(30) == 1
    assert "HTTPS (ports.https) requires cert_file and key_file" in node.log_text()
