"""Metrics of a real agent: /v1/agent/metrics in Consul's JSON with Consul's names for what
the agent did (a KV write's raft, RPC, FSM and HTTP metrics, serf's member join), agent:read
required under default-deny ACLs, ?format=prometheus refused as Consul 1.x without
prometheus_retention_time (an empty 200 with X-Consul-Reason), the statsd and dogstatsd sinks' UDP lines, and SIGUSR1's dump of
the in-memory intervals to the log."""

from __future__ import annotations

import json
import signal
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, Node, wait_for

pytestmark = pytest.mark.timeout(120)

ROOT = "6a1f0c52-5a0e-4a39-9c7e-2f6f1b9d4e21"
IP = "127.5.61.1"


def _udp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.5.61.9", port))
    sock.settimeout(0.2)
    return sock


def _drain(sock: socket.socket, into: list[str]) -> None:
    while True:
        try:
            data, _ = sock.recvfrom(65536)
        except (TimeoutError, BlockingIOError):
            return
        into.extend(data.decode().splitlines())


def _get(node: Node, path: str, token: str | None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{node.http}{path}")
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _names(summary: dict[str, Any], section: str) -> set[str]:
    return {m["Name"] for m in summary[section]}


def test_agent_metrics_sinks_and_dump(cluster: Cluster, tmp_path: Path) -> None:
    statsd, dogstatsd = _udp(18125), _udp(18126)
    conf = tmp_path / "telemetry.hcl"
    conf.write_text(
        'telemetry {\n  statsd_address = "127.5.61.9:18125"\n'
        '  dogstatsd_addr = "127.5.61.9:18126"\n  dogstatsd_tags = ["env:test"]\n'
        "  disable_hostname = true\n}\n"
        'acl {\n  enabled = true\n  default_policy = "deny"\n'
        f'  tokens {{\n    initial_management = "{ROOT}"\n    agent = "{ROOT}"\n  }}\n}}\n'
    )
    node = cluster.add("m1", IP, server=True, bootstrap=True, extra=[f"-config-file={conf}"])
    node.start()
    wait_for(lambda: _get(node, "/v1/status/leader", None)[1].strip(b'"'), 30, "a leader")
    wait_for(lambda: _get(node, "/v1/acl/token/self", ROOT)[0] == 200, 30, "the management token")
    req = urllib.request.Request(f"http://{node.http}/v1/kv/metrics/a", data=b"v", method="PUT")
    req.add_header("X-Consul-Token", ROOT)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read() == b"true"

    # agent:read is required, as Consul's
    assert _get(node, "/v1/agent/metrics", None)[0] == 403
    req = urllib.request.Request(f"http://{node.http}/v1/agent/metrics?format=prometheus")
    req.add_header("X-Consul-Token", ROOT)
    with urllib.request.urlopen(req, timeout=10) as resp:  # Consul 1.x: an empty 200
        assert (resp.status, resp.read()) == (200, b"")
        assert resp.headers["X-Consul-Reason"] == (
            "Prometheus is not enabled since its retention time is not positive"
        )

    wanted_samples = {
        "consul.raft.commitTime",
        "consul.raft.fsm.apply",
        "consul.kvs.apply",
        "consul.fsm.kvs",
        "consul.rpc.server.call",
        "consul.api.http",
    }

    def summary_with_all() -> dict[str, Any] | None:
        status, raw = _get(node, "/v1/agent/metrics", ROOT)
        assert status == 200
        s: dict[str, Any] = json.loads(raw)
        # the last completed interval: wait until the write's interval is the one shown
        return s if wanted_samples <= _names(s, "Samples") else None

    summary = wait_for(summary_with_all, 30, "the KV write's samples in /v1/agent/metrics")
    assert set(summary) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    assert summary["Timestamp"].endswith(" +0000 UTC")
    http = [m for m in summary["Samples"] if m["Name"] == "consul.api.http"]
    assert {"method": "PUT", "path": "v1_kv_"} in [m["Labels"] for m in http]
    kv = next(m for m in summary["Samples"] if m["Name"] == "consul.fsm.kvs")
    assert kv["Labels"] == {"op": "set"} and kv["Count"] >= 1
    assert set(kv) == {"Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"}

    # statsd and dogstatsd got their lines (runtime gauges come every second)
    lines: list[str] = []
    dog: list[str] = []

    def got_lines() -> bool:
        _drain(statsd, lines)
        _drain(dogstatsd, dog)
        return any(line.startswith("consul.runtime.alloc_bytes:") for line in lines) and any(
            line.startswith("consul.runtime.alloc_bytes:") for line in dog
        )

    wait_for(got_lines, 20, "statsd and dogstatsd lines")
    assert any(line.startswith("consul.raft.apply:1.000000|c") for line in lines), lines[:20]
    gauge = next(line for line in lines if line.startswith("consul.runtime.alloc_bytes:"))
    assert gauge.endswith("|g")
    assert any(line.endswith("|g|#env:test") for line in dog), dog[:20]

    # SIGUSR1: the completed intervals to the log, in go-metrics' words
    assert node.proc is not None
    proc = node.proc

    def dumped() -> bool:
        # only completed intervals are dumped: signal again until the write's has completed
        proc.send_signal(signal.SIGUSR1)
        return "[C] 'consul.raft.apply': Count: " in node.log_text()

    wait_for(dumped, 25, "the SIGUSR1 dump", interval=1.0)
    assert "[S] 'consul.raft.commitTime': Count: " in node.log_text()
    statsd.close()
    dogstatsd.close()
