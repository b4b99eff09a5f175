"""The agent's logs as Consul writes them: -log-json's hclog lines on stdout, log_file with
rotation by size keeping log_rotate_max_files, `senate monitor -log-json`; and `senate debug`'s
bundle (agent, host, members, metrics samples, logs) in a .tar.gz."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from harness import REPO, SENATE, Cluster, run_cli, senate_env, wait_for

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


def test_senate_debug_writes_consuls_bundle(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.add("d1", "127.5.63.2", server=True, bootstrap=True)
    node.start()
    cluster.wait_leader([node], timeout=30)
    bad = run_cli(["debug", f"-http-addr={node.http}", "-interval=1s"])
    assert bad.returncode == 1 and "interval must be longer than 5s" in bad.stderr
    output = tmp_path / "bundle"
    res = run_cli(
        ["debug", f"-http-addr={node.http}", "-interval=5s", "-duration=10s", f"-output={output}"],
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert f"==> Saved debug archive: {output}.tar.gz" in res.stdout
    with tarfile.open(f"{output}.tar.gz") as tar:
        names = {m.name for m in tar.getmembers()}
        assert {f"bundle/{n}" for n in FILES} <= names, names

        def text(name: str) -> str:
            f = tar.extractfile(f"bundle/{name}")
            assert f is not None
            return f.read().decode()

        assert json.loads(text("agent.json"))["Config"]["NodeName"] == "d1"
        assert [m["Name"] for m in json.loads(text("members.json"))] == ["d1"]
        samples = [json.loads(ln) for ln in text("metrics.json").splitlines()]
        assert len(samples) >= 2 and all("Gauges" in s for s in samples)
        assert json.loads(text("index.json"))["Duration"] == "10s"
        assert "[INFO]" in text("consul.log") or "[DEBUG]" in text("consul.log")


FILES = ("index.json", "agent.json", "host.json", "members.json", "metrics.json", "consul.log")
