"""The agent's logs as Consul writes them: -log-json's hclog lines on stdout, log_file with
rotation by size keeping log_rotate_max_files, and `senate monitor -log-json`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from harness import REPO, SENATE, Cluster, senate_env, wait_for

pytestmark = pytest.mark.timeout(120)

IP = "127.5.63.1"


def test_json_logs_file_rotation_and_monitor(cluster: Cluster, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    node = cluster.add(
        "l1",
        IP,
        server=True,
        bootstrap=True,
        extra=[
            "-log-json",
            f"-log-file={logs}/",
            "-log-rotate-bytes=1500",
            "-log-rotate-max-files=1",
        ],
    )
    node.start()
    cluster.wait_leader([node], timeout=30)
    wait_for(
        lambda: "cluster leadership acquired" in node.log_text(), 20, "the leadership log line"
    )
    stdout = [ln for ln in node.log_text().splitlines() if ln.startswith("{")]
    docs = [json.loads(ln) for ln in stdout]
    assert docs and all(set(d) >= {"@level", "@message", "@module", "@timestamp"} for d in docs)
    assert any(d["@module"] == "raft" for d in docs)

    # enough lines to rotate: every PUT logs at DEBUG only, so write through events at INFO
    for i in range(40):
        status, _, _ = node.request("PUT", f"/v1/event/fire/rotate-{i}", b"")
        assert status == 200
    wait_for(lambda: list(logs.glob("consul-*.log")), 20, "a rotated log file")
    rotated = list(logs.glob("consul-*.log"))
    assert len(rotated) == 1, rotated  # log_rotate_max_files = 1
    for path in [logs / "consul.log", *rotated]:
        for line in path.read_text().splitlines():
            json.loads(line)

    monitor = subprocess.Popen(
        [*SENATE, "monitor", "-log-json", f"-rpc-addr={IP}:8400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=senate_env(),
        cwd=REPO,
        start_new_session=True,
    )
    cluster.extra_procs.append(monitor)
    try:
        assert monitor.stdout is not None
        first = monitor.stdout.readline()  # the backlog comes first
        assert json.loads(first)["@level"] in ("info", "warn", "error", "debug")
    finally:
        os.kill(monitor.pid, signal.SIGKILL)
        monitor.wait(10)
