"""pytest plugin that runs py-consul 1.8.0's own test suite (its sdist's tests/) against senate.

Loaded by suite_runner.py as `python -m pytest -p suite_plugin_py_consul --noconftest ...` with
PYTHONPATH=.venv/clients/py-consul:<this dir>. py-consul's conftest.py files start a Consul
container per test through docker; this plugin provides every fixture they define, each with a
fresh `senate agent -dev` instead, configured like their container (HTTPS, DNS and gRPC-TLS off,
raft_multiplier 1, script checks on; ACLs enabled with an initial management token for the acl_
fixtures). Their tests talk to `Consul(port=port)`, i.e. 127.0.0.1: the agent binds gossip and
RPC on its own 127.x.y.z address and serves HTTP on that address and on 127.0.0.1 (port 8500 when
free, see _http_port; else a free port, as docker publishes the container's 8500 on a random one).

Every agent is killed by PID when its test ends; its PID is also appended to
$SENATE_SUITE_PIDFILE so the runner can kill any an interrupted run left behind.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients_support import free_port, start_dev_agent
from consul import Consul  # type: ignore[import-not-found]
from harness import Cluster

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])
ACLConsul = collections.namedtuple("ACLConsul", ["instance", "token", "version"])

#: the /16 the agents' addresses come from (the runner gives each run its own)
NET = os.environ.get("SENATE_SUITE_NET", "127.78")
_serial = itertools.count()


def _next_ip() -> str:
    n = next(_serial)
    return f"{NET}.{n // 250}.{n % 250 + 1}"


def _http_port() -> int:
    """8500 when 127.0.0.1:8500 is free: some of their tests point HTTP checks at the agent's
    own API as http://127.0.0.1:8500 or http://localhost:8500 (inside their container that is
    Consul itself); else any free port, and those few tests fail for that reason alone."""
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 8500))
        return 8500
    except OSError:
        return free_port("127.0.0.1")


def _start(tmp_path: Path, acl_token: str | None) -> tuple[Cluster, ConsulInstance]:
    ip = _next_ip()
    port = _http_port()
    config: dict[str, Any] = {
        "ports": {"http": port, "https": -1, "dns": -1, "grpc_tls": -1},
        "addresses": {"http": f"{ip} 127.0.0.1"},
        "performance": {"raft_multiplier": 1},
        "enable_script_checks": True,
    }
    if acl_token is not None:
        config["primary_datacenter"] = "dc1"
        config["acl"] = {"enabled": True, "tokens": {"initial_management": acl_token}}
    conf = tmp_path / "senate-suite.json"
    conf.write_text(json.dumps(config))
    cluster = Cluster(tmp_path / "senate")
    name = f"suite{ip.replace('.', '-')}"
    try:
        node = start_dev_agent(cluster, name, ip, extra=[f"-config-file={conf}"], http_port=port)
    except BaseException:
        cluster.cleanup()
        raise
    pidfile = os.environ.get("SENATE_SUITE_PIDFILE")
    if pidfile and node.pid is not None:
        with open(pidfile, "a") as f:
            f.write(f"{node.pid}\n")
    version = Consul(port=port).agent.self()["Config"]["Version"].strip()
    return cluster, ConsulInstance(None, port, version)


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token() -> None:
    os.environ.pop("CONSUL_HTTP_TOKEN", None)


@pytest.fixture
def consul_instance(tmp_path: Path) -> Iterator[ConsulInstance]:
    cluster, instance = _start(tmp_path, None)
    try:
        yield instance
    finally:
        cluster.cleanup()


@pytest.fixture
def acl_consul_instance(tmp_path: Path) -> Iterator[tuple[ConsulInstance, str]]:
    token = uuid.uuid4().hex
    cluster, instance = _start(tmp_path, token)
    try:
        yield instance, token
    finally:
        cluster.cleanup()


@pytest.fixture
def consul_port(consul_instance: ConsulInstance) -> tuple[int, str]:
    return consul_instance.port, consul_instance.version


@pytest.fixture
def acl_consul(acl_consul_instance: tuple[ConsulInstance, str]) -> ACLConsul:
    instance, token = acl_consul_instance
    return ACLConsul(Consul(port=instance.port), token, instance.version)


@pytest.fixture
def consul_obj(consul_port: tuple[int, str]) -> tuple[Any, str]:
    port, version = consul_port
    return Consul(port=port), version
