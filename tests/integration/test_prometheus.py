"""Prometheus (the Debian package) scrapes a 3-server senate datacenter at
/v1/agent/metrics?format=prometheus: every target is up, and Consul's series that dashboards
and alerts query exist - consul_raft_commitTime (a summary) and consul_serf_member_join."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, wait_for

pytestmark = pytest.mark.timeout(180)

IPS = ["127.5.62.1", "127.5.62.2", "127.5.62.3"]
PROM = "127.5.62.9:9090"
PROMETHEUS = shutil.which("prometheus")


def _query(path: str, **params: str) -> Any:
    url = f"http://{PROM}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["data"]


@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus is not installed (apt-get install prometheus)"
)
def test_prometheus_scrapes_a_three_server_datacenter(cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "telemetry.hcl"
    conf.write_text(
        'telemetry {\n  prometheus_retention_time = "60s"\n  disable_hostname = true\n}\n'
    )
    servers = [
        cluster.add(
            f"p{i + 1}",
            ip,
            server=True,
            bootstrap_expect=3,
            retry_join=[IPS[0]],
            extra=[f"-config-file={conf}"],
        )
        for i, ip in enumerate(IPS)
    ]
    cluster.start_all()
    cluster.wait_leader(servers, timeout=30)
    for i in range(5):  # writes, so raft commits
        status, _, _ = servers[0].request("PUT", f"/v1/kv/prom/{i}", b"v")
        assert status == 200

    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: senate\n    metrics_path: /v1/agent/metrics\n"
        "    params:\n      format: [prometheus]\n"
        f"    static_configs:\n      - targets: [{', '.join(f'{ip}:8500' for ip in IPS)}]\n"
    )
    assert PROMETHEUS is not None
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={PROM}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster.extra_procs.append(proc)
    log.close()

    def all_up() -> bool:
        targets = _query("/api/v1/targets")["activeTargets"]
        return len(targets) == 3 and all(t["health"] == "up" for t in targets)

    wait_for(all_up, 60, "3 senate targets up in Prometheus")

    def series(name: str) -> set[str]:
        return {s["instance"] for s in _query("/api/v1/series", **{"match[]": name})}

    every = {f"{ip}:8500" for ip in IPS}
    wait_for(lambda: series("consul_serf_member_join") == every, 30, "consul_serf_member_join")
    leader = cluster.node_by_server_addr(cluster.wait_leader(servers))
    wait_for(
        lambda: f"{leader.ip}:8500" in series("consul_raft_commitTime_count"),
        30,
        "consul_raft_commitTime on the leader",
    )
    quantiles = _query("/api/v1/series", **{"match[]": "consul_raft_commitTime"})
    assert {s.get("quantile") for s in quantiles} >= {"0.5", "0.9", "0.99"}
