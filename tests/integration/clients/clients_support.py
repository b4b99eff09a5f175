"""Shared by the client-library tests and scripts/client_suites.py: where scripts/test.sh put
each library (all under .venv/clients/, never committed), how to run one of our scenario scripts
against an agent, and how to start a -dev agent through tests/harness.py for them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent.parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from harness import Cluster, Node, wait_for  # noqa: E402 - harness lives in tests/

CLIENTS = REPO / ".venv" / "clients"
SRC = CLIENTS / "src"
PY_CONSUL_SDIST = SRC / "py_consul-1.8.0"
PYTHON_CONSUL_SDIST = SRC / "python-consul-1.1.0"
NODE_MODULES = CLIENTS / "npm" / "node_modules"

#: the environment variables every Consul client reads; none may leak into a scenario or suite
CONSUL_ENV = (
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN_FILE",
    "CONSUL_HTTP_SSL",
    "CONSUL_HTTP_SSL_VERIFY",
    "CONSUL_HTTP_AUTH",
    "CONSUL_NAMESPACE",
    "CONSUL_PARTITION",
)


@dataclass(frozen=True)
class Library:
    name: str
    #: the interpreter and the scenario script (in this directory)
    runtime: str
    script: str
    #: the install dir scripts/test.sh made; PYTHONPATH (Python) or NODE_PATH (node)
    path: Path

    def installed(self) -> bool:
        marker = {
            "python-consul": "python_consul-1.1.0.dist-info",
            "py-consul": "py_consul-1.8.0.dist-info",
            "node-consul": "consul/package.json",
        }[self.name]
        return (self.path / marker).exists()

    def command(self, addr: str, node: str, groups: list[str]) -> list[str]:
        exe = sys.executable if self.runtime == "python" else "node"
        return [exe, str(HERE / self.script), addr, node, *groups]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CONSUL_ENV}
        env.pop("PYTHONPATH", None)
        env.pop("NODE_PATH", None)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPATH" if self.runtime == "python" else "NODE_PATH"] = str(self.path)
        return env

    def run(
        self, addr: str, node: str, groups: list[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(addr, node, groups),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            cwd=HERE,
            stdin=subprocess.DEVNULL,
        )


LIBRARIES = {
    "python-consul": Library(
        "python-consul", "python", "scenario_python_consul.py", CLIENTS / "python-consul"
    ),
    "py-consul": Library("py-consul", "python", "scenario_py_consul.py", CLIENTS / "py-consul"),
    "node-consul": Library("node-consul", "node", "scenario_npm_consul.js", NODE_MODULES),
}


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_dev_agent(
    cluster: Cluster,
    name: str,
    ip: str,
    *,
    extra: list[str] | None = None,
    http_port: int = 8500,
    timeout: float = 30.0,
) -> Node:
    """A `senate agent -dev` on its own loopback IP (see test_agent_process.py), waited for
    until it leads, the leader has registered its consul service, its own anti-entropy has
    synced its node (the TaggedAddresses only the agent sends), and its serfHealth check
    passes: what a client sees of a fresh `consul agent -dev`."""
    node = cluster.add(name, ip)
    node.args = ["-dev", f"-node={name}", f"-bind={ip}", f"-client={ip}", *(extra or [])]
    node.start()
    base = f"http://{ip}:{http_port}"

    def get(path: str) -> object:
        import json
        import urllib.request

        with urllib.request.urlopen(base + path, timeout=2.0) as resp:
            return json.loads(resp.read() or b"null")

    wait_for(lambda: get("/v1/status/leader") == f"{ip}:8300", timeout, f"{name} leading")
    wait_for(lambda: get("/v1/catalog/service/consul"), timeout, f"{name}'s consul service")
    wait_for(
        lambda: (
            (get(f"/v1/catalog/node/{name}") or {})  # type: ignore[attr-defined]
            .get("Node", {})
            .get("TaggedAddresses", {})
            .get("lan")
            == ip
        ),
        timeout,
        f"{name}'s anti-entropy syncing its node",
    )
    wait_for(
        lambda: any(
            c["CheckID"] == "serfHealth" and c["Status"] == "passing"
            for c in get(f"/v1/health/node/{name}")  # type: ignore[attr-defined]
        ),
        timeout,
        f"{name}'s serfHealth passing",
    )
    return node
