"""Health checks on a real `senate agent` process (127.8.0.x): a service registered over the
agent API with an HTTP check against a tiny server this test runs goes passing in
/v1/health/service/web?passing and DNS, then critical and out of DNS when the server stops;
a TTL check passes and expires through the endpoints; API registrations survive a restart."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dnslib import RCODE, DNSRecord

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Cluster, Node, wait_for

pytestmark = pytest.mark.timeout(120)

AGENT_IP = "127.8.0.1"
APP_IP = "127.8.0.2"


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"app ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def app_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((APP_IP, 0), Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def put(node: Node, path: str, body: Any = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    status, text, _ = node.request("PUT", path, data)
    assert status == 200, f"PUT {path}: {status} {text!r}"


def dns_a(name: str) -> tuple[int, list[str]]:
    wire = DNSRecord.question(name, "A").send(AGENT_IP, 8600, timeout=5.0)
    reply = DNSRecord.parse(wire)
    return reply.header.rcode, sorted(str(rr.rdata) for rr in reply.rr)


def critical_ids(node: Node) -> dict[str, str]:
    return {c["CheckID"]: c["Output"] for c in node.get_json("/v1/health/state/critical")}


def test_checks_drive_health_and_dns(
    cluster: Cluster, app_server: ThreadingHTTPServer, tmp_path: Path
) -> None:
    # A config-file service with a script check (scripts enabled by the flag) runs too.
    conf = tmp_path / "svc.json"
    conf.write_text(
        json.dumps(
            {
                "service": {
                    "name": "cron",
                    "check": {"args": ["sh", "-c", "echo cron ok"], "interval": "1s"},
                }
            }
        )
    )
    node = cluster.add(
        "checks1",
        AGENT_IP,
        server=True,
        bootstrap=True,
        extra=[f"-config-file={conf}", "-enable-script-checks"],
    )
    node.start()
    cluster.wait_http([node], timeout=30)
    cluster.wait_leader([node], timeout=20)

    t_register = time.monotonic()
    app_port = app_server.server_address[1]
    url = f"http://{APP_IP}:{app_port}/health"
    put(
        node,
        "/v1/agent/service/register",
        {
            "Name": "web",
            "Address": APP_IP,
            "Port": app_port,
            "Check": {"HTTP": url, "Interval": "1s", "Timeout": "1s"},
        },
    )
    put(node, "/v1/agent/service/register", {"Name": "worker", "Check": {"TTL": "2s"}})
    # An HTTP check of the agent's own root (client libraries' suites do it): `/` is a 200,
    # as in Consul 1.x with its UI off
    root = f"http://{AGENT_IP}:8500/"
    put(
        node,
        "/v1/agent/service/register",
        {"Name": "agent-root", "Check": {"HTTP": root, "Interval": "1s"}},
    )

    cron = wait_for(
        lambda: node.get_json("/v1/health/service/cron?passing") or None, 15, "cron passing"
    )
    assert [c["Output"] for c in cron[0]["Checks"] if c["CheckID"] == "service:cron"] == [
        "cron ok\n"
    ]

    # HTTP check passes: the instance is in ?passing and in DNS.
    web = wait_for(
        lambda: node.get_json("/v1/health/service/web?passing") or None, 15, "web passing"
    )
    print(f"web passing in /v1/health {time.monotonic() - t_register:.2f}s after register")
    (check,) = [c for c in web[0]["Checks"] if c["CheckID"] == "service:web"]
    assert check["Output"] == f"HTTP GET {url}: 200 OK Output: app ok"
    assert wait_for(lambda: dns_a("web.service.consul")[1] == [APP_IP], 10, "web in DNS")

    agent_root = wait_for(
        lambda: node.get_json("/v1/health/service/agent-root?passing") or None, 15, "root passing"
    )
    (check,) = [c for c in agent_root[0]["Checks"] if c["CheckID"] == "service:agent-root"]
    assert check["Output"] == (
        f"HTTP GET {root}: 200 OK Output: Consul Agent: UI disabled. To enable, set "
        "ui_config.enabled=true in the agent configuration and restart."
    )

    # The app stops: critical, out of ?passing and out of DNS.
    app_server.shutdown()
    app_server.server_close()
    t_stop = time.monotonic()
    outputs = wait_for(
        lambda: (c := critical_ids(node)) and "service:web" in c and c, 15, "web critical"
    )
    print(f"web critical in /v1/health {time.monotonic() - t_stop:.2f}s after the app stopped")
    assert outputs["service:web"].endswith("connect: connection refused")
    assert node.get_json("/v1/health/service/web?passing") == []
    assert dns_a("web.service.consul") == (RCODE.NXDOMAIN, [])

    # TTL: pass through the endpoint, then silence expires it.
    put(node, "/v1/agent/check/pass/service:worker?note=heartbeat")
    t_pass = time.monotonic()
    wait_for(
        lambda: node.get_json("/v1/health/service/worker?passing") or None, 10, "worker passing"
    )
    expired = wait_for(
        lambda: (c := critical_ids(node)).get("service:worker") and c, 10, "worker TTL expired"
    )
    print(f"TTL 2s: critical in /v1/health {time.monotonic() - t_pass:.2f}s after the pass")
    assert expired["service:worker"] == (
        "TTL expired (last output before timeout follows): heartbeat"
    )
    log = node.log_text()
    assert "[INFO] agent: Check 'service:web' is passing" in log
    assert "[WARN] agent: Check 'service:web' is now critical" in log
    assert "[WARN] agent: Check 'service:worker' missed TTL, is now critical" in log

    # Registrations made over the API come back after a restart (and their checks run).
    node.kill()
    node.start()
    cluster.wait_http([node], timeout=30)
    assert set(node.get_json("/v1/agent/services")) == {"agent-root", "cron", "web", "worker"}
    checks = wait_for(
        lambda: (c := node.get_json("/v1/agent/checks"))["service:web"]["Output"] and c,
        10,
        "web checked again after the restart",
    )
    assert checks["service:web"]["Status"] == "critical"
    assert checks["service:worker"]["Name"] == "Service 'worker' check"


def test_check_update_interval_defers_output_alone(cluster: Cluster, tmp_path: Path) -> None:
    """Consul's check_update_interval: with the default (5 m) a TTL check's new note stays
    local while syncs run for other changes; with "0s" it reaches the catalog at once."""
    ip = "127.8.0.3"

    def catalog_output(node: Node, check_id: str) -> str | None:
        checks = node.get_json(f"/v1/health/node/{node.name}")
        found = [c for c in checks if c["CheckID"] == check_id]
        return found[0]["Output"] if found else None

    def run(name: str, interval: str | None) -> Node:
        conf = tmp_path / f"{name}.json"
        conf.write_text(json.dumps({"check_update_interval": interval} if interval else {}))
        node = cluster.add(name, ip, server=True, bootstrap=True, extra=[f"-config-file={conf}"])
        node.start()
        cluster.wait_http([node], timeout=30)
        cluster.wait_leader([node], timeout=20)
        for name in ("beat", "other"):
            put(node, "/v1/agent/check/register", {"Name": name, "TTL": "60s"})
        put(node, "/v1/agent/check/pass/beat?note=first")
        wait_for(lambda: catalog_output(node, "beat") == "first", 10, "first note synced")
        put(node, "/v1/agent/check/pass/beat?note=second")  # output alone changes
        return node

    node = run("upd1", None)
    assert node.get_json("/v1/agent/checks")["beat"]["Output"] == "second"  # the agent has it
    put(node, "/v1/agent/check/warn/other?note=x")  # a status change: anti-entropy syncs
    wait_for(lambda: catalog_output(node, "other") == "x", 10, "the other check synced")
    assert catalog_output(node, "beat") == "first"  # ... but the note waits its interval
    node.kill()

    node = run("upd2", "0s")
    wait_for(lambda: catalog_output(node, "beat") == "second", 5, "second note synced at once")
    node.kill()
