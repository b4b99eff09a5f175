"""Real-world Consul 1.x config directories (tests/fixtures/consul-configs/) start a real agent:
the settings senate implements act, each key it does not implement is warned about once, a
file a directory holds that is not a config file is named, and config watches run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consul_pki import make_pki
from harness import Cluster, Node, wait_for

pytestmark = pytest.mark.timeout(120)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "consul-configs"

#: per directory: the keys warned about, and whether the agent is a server
EXPECTED: dict[str, tuple[bool, tuple[str, ...]]] = {
    "deployment-guide-server": (
        True,
        (
            "addresses.grpc",
            "connect.enabled",
            "ports.grpc",
            "ui_config.enabled",
        ),
    ),
    "deployment-guide-client": (False, ()),
    "py-consul-server": (
        True,
        ("ui_config.enabled",),
    ),
    "python-consul-dev": (False, ("ports.grpc",)),
    "prometheus-telemetry": (True, ()),
    "vault-storage-backend": (
        True,
        (
            "session_ttl_min",
            "ui",
        ),
    ),
    "legacy-0.7": (True, ()),
}


def test_every_fixture_directory_is_listed() -> None:
    dirs = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    assert dirs == sorted(EXPECTED)


#: the management token of the fixtures whose ACLs deny by default (their initial_management)
TOKENS = {"py-consul-server": "e95b599e-166e-7d80-08ad-aee76e7ddf19"}


def _start(cluster: Cluster, name: str, ip: str, extra: list[str]) -> Node:
    node = cluster.add(name, ip)
    node.token = TOKENS.get(name, "")
    # The fixture's own addresses are overridden the way an operator would: flags, and -hcl
    # (read after the files) for `addresses`, which outranks -client.
    node.args = [
        f"-config-dir={FIXTURES / name}",
        f"-data-dir={node.data_dir}",
        f"-bind={ip}",
        f"-client={ip}",
        f'-hcl=addresses {{ http = "{ip}" }}',
        *extra,
    ]
    node.start()
    cluster.wait_http([node], timeout=30)
    return node


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_starts_the_agent_and_warns_once_per_ignored_key(
    cluster: Cluster, name: str, tmp_path: Path
) -> None:
    ip = f"127.21.{sorted(EXPECTED).index(name) + 1}.1"
    # py-consul's docker-compose starts its server with -bootstrap-expect=1 on the command line
    extra = ["-bootstrap-expect=1"] if name == "py-consul-server" else []
    if name == "deployment-guide-server":
        # The guide's certificates, made as it makes them, where this host keeps them (-hcl
        # is read after the directory, so its tls.defaults paths win).
        pki = make_pki(tmp_path / "consul.d")
        pair = pki.cert("server", "dc1")
        extra = [
            f'-hcl=tls {{ defaults {{ ca_file = "{pki.ca}" cert_file = "{pair.cert}" '
            f'key_file = "{pair.key}" }} }}'
        ]
    if name == "deployment-guide-client":
        extra = [f"-log-file={tmp_path}/logs/"]  # its log_file is /var/log/consul/
    node = _start(cluster, name, ip, extra)
    if name == "deployment-guide-client":
        assert "agent" in (tmp_path / "logs" / "consul.log").read_text()
    server, ignored = EXPECTED[name]
    me = node.get_json("/v1/agent/self")
    assert me["Config"]["Server"] is server
    if server:
        assert cluster.wait_leader([node], timeout=20)
    if name in TOKENS:  # its ACLs act: anonymous is denied, the management token is not
        wait_for(
            lambda: node.request("PUT", "/v1/kv/acl-check", b"1")[0] == 200,
            20,
            "the initial management token",
        )
        node.token = ""
        status, body, _ = node.request("PUT", "/v1/kv/acl-check", b"1")
        assert status == 403 and body.startswith(b"Permission denied"), body
        node.token = TOKENS[name]
    text = node.log_text()
    warned = [
        line.split("config key '", 1)[1].split("'", 1)[0]
        for line in text.splitlines()
        if "WARNING: config key '" in line
    ]
    assert sorted(warned) == sorted(ignored)  # each key named once, none missing
    for line in text.splitlines():
        if "WARNING: config key '" in line:
            assert "is not implemented by senate and has no effect" in line
    if name == "deployment-guide-server":
        assert "skipping file" in text and "consul.env" in text
        # its tls block acts: server RPC takes TLS only, verifying hostnames
        assert "Gossip encrypt: true, RPC-TLS: true, TLS-Incoming: true" in text


def test_hcl_client_config_acts(cluster: Cluster) -> None:
    """The client directory's HCL service, its script check (enable_local_script_checks),
    node_meta and node_name all act."""
    server = cluster.add("srv", "127.21.20.1", server=True, bootstrap_expect=1)
    server.start()
    cluster.wait_http([server])
    cluster.wait_leader([server])
    node = _start(cluster, "deployment-guide-client", "127.21.20.2", ["-retry-join=127.21.20.1"])
    me = node.get_json("/v1/agent/self")
    assert me["Config"]["NodeName"] == "web-1"
    assert me["Meta"] == {"rack": "r1", "zone": "z1"}

    def web_passing() -> bool:
        checks = node.get_json("/v1/agent/checks")
        return checks.get("web-alive", {}).get("Status") == "passing"

    wait_for(web_passing, 20, "the HCL service's script check to pass")
    services = node.get_json("/v1/agent/services")
    assert services["web-1"]["Tags"] == ["v1", "primary"]
    assert services["web-1"]["Meta"] == {"version": "1.2.3"}


def test_response_headers_and_templates(cluster: Cluster) -> None:
    ip = "127.21.30.1"
    node = _start(cluster, "prometheus-telemetry", ip, [])
    status, _, headers = node.request("GET", "/v1/status/leader")
    assert status == 200 and headers.get("Access-Control-Allow-Origin") == "*"
    # its telemetry block acts: the Prometheus exposition, gauges without the host name
    status, body, _ = node.request("GET", "/v1/agent/metrics?format=prometheus")
    assert status == 200 and b"\nconsul_runtime_alloc_bytes " in body


def test_config_watch_runs_its_handler(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "watch-out.json"
    conf = tmp_path / "watch.hcl"
    conf.write_text(
        "watches = [{\n"
        '  type = "key"\n'
        '  key = "config/web/flag"\n'
        f'  args = ["/bin/sh", "-c", "cat > {out}.tmp && mv {out}.tmp {out}"]\n'
        "}]\n"
    )
    node = cluster.add("w1", "127.21.40.1", server=True, bootstrap_expect=1)
    node.args += [f"-config-file={conf}"]
    node.start()
    cluster.wait_http([node])
    cluster.wait_leader([node])
    status, _, _ = node.request("PUT", "/v1/kv/config/web/flag", b"on")
    assert status == 200

    def handled_on() -> bool:
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("Value") == "b24="

    wait_for(handled_on, 20, "the config watch's handler to receive the key")
    status, _, _ = node.request("PUT", "/v1/kv/config/web/flag", b"off")
    wait_for(
        lambda: json.loads(out.read_text()).get("Value") == "b2Zm",
        20,
        "the handler to run again on the change",
    )
