"""`provision prometheus INVENTORY`: the scrape config of an inventory's agents - static
targets per datacenter or consul_sd_configs per datacenter's first server, the metrics path
and format, the TLS and ACL material under `tls: generate` / `acl: bootstrap`, warnings for
agents without prometheus_retention_time; promtool accepts what it writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from provision.cli import main

INV = """
defaults:
  ssh: {user: deploy}
  agent:
    client_addr: 0.0.0.0
    telemetry: {prometheus_retention_time: 60s, disable_hostname: true}
datacenters:
  dc1:
    servers:
      - {name: s1, host: 10.0.0.1}
      - {name: s2, host: 10.0.0.2}
    clients:
      - {name: c1, host: 10.0.0.9, agent: {telemetry: {prometheus_retention_time: 0s}}}
  dc2:
    servers:
      - {name: t1, host: 10.0.1.1}
"""


def _run(tmp_path: Path, *flags: str, text: str = INV) -> tuple[dict[str, object], str]:
    inv = tmp_path / "inv.yml"
    inv.write_text(text)
    out = tmp_path / "prometheus.yml"
    assert main(["prometheus", str(inv), "-o", str(out), *flags]) == 0
    return yaml.safe_load(out.read_text()), str(out)


def test_static_targets_per_datacenter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc, path = _run(tmp_path)
    (job,) = doc["scrape_configs"]  # type: ignore[index]
    assert job["metrics_path"] == "/v1/agent/metrics"
    assert job["params"] == {"format": ["prometheus"]}
    assert job["static_configs"] == [
        {
            "targets": ["10.0.0.1:8500", "10.0.0.2:8500", "10.0.0.9:8500"],
            "labels": {"datacenter": "dc1"},
        },
        {"targets": ["10.0.1.1:8500"], "labels": {"datacenter": "dc2"}},
    ]
    assert "scheme" not in job and "authorization" not in job
    assert "c1: telemetry.prometheus_retention_time is not set" in capsys.readouterr().err
    _promtool(path)


def test_consul_sd_asks_each_datacenters_server(tmp_path: Path) -> None:
    doc, _ = _run(tmp_path, "--consul-sd")
    (job,) = doc["scrape_configs"]  # type: ignore[index]
    assert [
        (sd["server"], sd["datacenter"], sd["services"]) for sd in job["consul_sd_configs"]
    ] == [
        ("10.0.0.1:8500", "dc1", ["consul"]),
        ("10.0.1.1:8500", "dc2", ["consul"]),
    ]
    assert job["relabel_configs"][0]["replacement"] == "$1:8500"
    # (not promtool: Debian builds Prometheus without its Consul service discovery)


def test_tls_and_acl_material(tmp_path: Path) -> None:
    doc, _ = _run(
        tmp_path, text=INV.replace("defaults:\n", "defaults:\n  tls: generate\n  acl: bootstrap\n")
    )
    (job,) = doc["scrape_configs"]  # type: ignore[index]
    assert job["scheme"] == "https"
    assert job["tls_config"]["ca_file"] == str(tmp_path / "inv.tls" / "ca.pem")
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": str(tmp_path / "inv.acl-token"),
    }
    assert job["static_configs"][0]["targets"][0] == "10.0.0.1:8501"


def _promtool(path: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # the Debian package prometheus brings it; the structure was checked above
    res = subprocess.run(
        [promtool, "check", "config", path], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
