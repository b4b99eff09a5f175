"""`provision prometheus INVENTORY`: a Prometheus scrape config for an inventory's agents.

Static targets (every node's HTTP API, as the controller reaches it) or, with --consul-sd,
`consul_sd_configs` that ask the first server for the `consul` service (the servers) and
scrape each on its HTTP port. Either way the path is /v1/agent/metrics?format=prometheus;
HTTPS with the inventory's CA and CLI certificate under `tls: generate`, and the management
token file as the bearer credential under `acl: bootstrap`. A node whose agent settings lack
telemetry.prometheus_retention_time would answer an empty page: that is a warning.
"""

from __future__ import annotations

from typing import Any

from provision.inventory import Inventory, Node
from provision.secure import acl_token_path, tls_dir

JOB = "senate"
METRICS_PATH = "/v1/agent/metrics"


def target(node: Node) -> str:
    """The node's HTTP API as Prometheus on the controller reaches it."""
    host = node.client_addr
    if host in ("0.0.0.0", "::"):
        host = node.advertise
    port = node.port("https") if node.tls else node.port("http")
    if node.tls and port <= 0:
        port = 8501
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _security(inv: Inventory) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if any(n.tls for n in inv.nodes):
        d = tls_dir(inv.path)
        out["scheme"] = "https"
        out["tls_config"] = {
            "ca_file": str(d / "ca.pem"),
            "cert_file": str(d / "cli.pem"),
            "key_file": str(d / "cli-key.pem"),
        }
    if any(n.acl for n in inv.nodes):
        out["authorization"] = {
            "type": "Bearer",
            "credentials_file": str(acl_token_path(inv.path)),
        }
    return out


def scrape_config(inv: Inventory, *, consul_sd: bool = False) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job_name": JOB,
        "metrics_path": METRICS_PATH,
        "params": {"format": ["prometheus"]},
        **_security(inv),
    }
    if consul_sd:
        jobs = []
        for dc in inv.datacenters:
            first = inv.servers(dc)[0]
            sd: dict[str, Any] = {
                "server": target(first),
                "datacenter": dc,
                "services": ["consul"],
            }
            if first.tls:
                sd["scheme"] = "https"
                sd["tls_config"] = dict(job["tls_config"])
            if first.acl:
                sd["authorization"] = dict(job["authorization"])
            jobs.append(sd)
        port = inv.nodes[0].port("https") if inv.nodes[0].tls else inv.nodes[0].port("http")
        job["consul_sd_configs"] = jobs
        job["relabel_configs"] = [
            {  # the consul service's port is 8300 (server RPC): scrape the HTTP API instead
                "source_labels": ["__meta_consul_address"],
                "target_label": "__address__",
                "replacement": f"$1:{port}",
            },
            {"source_labels": ["__meta_consul_node"], "target_label": "node"},
            {"source_labels": ["__meta_consul_dc"], "target_label": "datacenter"},
        ]
    else:
        job["static_configs"] = [
            {
                "targets": [target(n) for n in inv.nodes if n.datacenter == dc],
                "labels": {"datacenter": dc},
            }
            for dc in inv.datacenters
        ]
    return {"scrape_configs": [job]}


def warnings(inv: Inventory) -> list[str]:
    out = []
    for n in inv.nodes:
        telemetry = n.agent.get("telemetry") or {}
        if str(telemetry.get("prometheus_retention_time") or "0").strip() in ("0", "0s", "0.0"):
            out.append(
                f"{n.name}: telemetry.prometheus_retention_time is not set in its agent "
                "settings: it answers the Prometheus format with an empty page"
            )
    return out
