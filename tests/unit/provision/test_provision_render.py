"""Rendering against golden files (set UPDATE_GOLDEN=1 to rewrite them after a deliberate change)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provision.inventory import load_inventory
from provision.render import agent_config, render_node

GOLDEN = Path(__file__).parent / "golden"

INVENTORY = """
defaults:
  install_dir: /opt/senate
  data_dir: /var/lib/senate/{dc}
  agent: {log_level: INFO, client_addr: 0.0.0.0}
datacenters:
  dc1:
    servers:
      - {name: s1, host: 10.0.0.1}
      - {name: s2, host: 10.0.0.2}
      - {name: s3, host: 10.0.0.3, agent: {ports: {http: 8501}}}
    clients:
      - {name: c1, host: 10.0.0.9}
  dc2:
    servers:
      - {name: t1, host: 10.0.1.1, bind_addr: 192.168.1.1}
"""


@pytest.fixture
def inv(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = tmp_path / "inv.yml"
    p.write_text(INVENTORY)
    return load_inventory(p)


def check_golden(name: str, content: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(content)
    assert content == path.read_text(), f"{name} differs from its golden file"


@pytest.mark.parametrize(
    ("node", "service"), [("s1", "launcher"), ("c1", "launcher"), ("t1", "systemd")]
)
def test_golden(inv, node: str, service: str) -> None:  # type: ignore[no-untyped-def]
    r = render_node(inv, inv.node(node), service)
    check_golden(f"{node}.senate.json", r.config.content)
    check_golden(f"{node}.senatectl.{service}", r.control.content)
    if service == "systemd":
        assert r.unit is not None and r.unit.path == "/etc/systemd/system/senate.service"
        check_golden(f"{node}.senate.service", r.unit.content)
    else:
        assert r.unit is None
    assert r.config.path == "/opt/senate/etc/senate.json"
    assert r.control.path == "/opt/senate/bin/senatectl" and r.control.mode == 0o755


def test_agent_config_derives_the_layout(inv) -> None:  # type: ignore[no-untyped-def]
    s1 = agent_config(inv, inv.node("s1"))
    assert s1["bootstrap_expect"] == 3 and s1["server"] is True
    assert s1["retry_join"] == ["10.0.0.2:8301", "10.0.0.3:8301"]
    assert s1["retry_join_wan"] == ["192.168.1.1:8302"]
    assert s1["data_dir"] == "/var/lib/senate/dc1"
    c1 = agent_config(inv, inv.node("c1"))
    assert c1["server"] is False and "bootstrap_expect" not in c1
    assert c1["retry_join"] == ["10.0.0.1:8301", "10.0.0.2:8301", "10.0.0.3:8301"]
    assert "retry_join_wan" not in c1
    t1 = agent_config(inv, inv.node("t1"))
    assert t1["bootstrap_expect"] == 1 and t1["bind_addr"] == "192.168.1.1"
    assert t1["retry_join"] == [] and len(t1["retry_join_wan"]) == 3
    # the rendered file is the same dict, as JSON
    assert json.loads(render_node(inv, inv.node("s1"), "launcher").config.content) == s1


# A stand-in parent that starts a fake agent (its command line names the config dir, as the
# launcher's does), writes its pid where the launcher keeps it, and never reaps it: once the
# agent exits it stays a zombie, as under a PID 1 that reaps late or not at all.
_NO_REAP_PARENT = r"""
import os, signal, subprocess, sys, time
install = sys.argv[1]
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
agent = "import time; time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", agent, "agent", f"-config-dir={install}/etc"])
with open(f"{install}/run/senate.pid", "w") as f:
    f.write(str(child.pid))
print("ready", flush=True)
time.sleep(60)
"""


def test_launcher_stop_returns_once_the_agent_is_a_zombie(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    p = tmp_path / "inv.yml"
    p.write_text(
        f"defaults: {{connection: local, install_dir: '{tmp_path}/opt'}}\n"
        "datacenters:\n  dc1:\n    servers: [{name: z1, host: 127.0.0.1}]\n"
    )
    inv = load_inventory(p)
    ctl = render_node(inv, inv.nodes[0], "launcher").control
    script = tmp_path / "senatectl"
    script.write_text(ctl.content)
    script.chmod(0o755)
    (tmp_path / "opt" / "run").mkdir(parents=True)
    parent = subprocess.Popen(
        [sys.executable, "-c", _NO_REAP_PARENT, str(tmp_path / "opt")], stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"
        assert subprocess.run([str(script), "status"], capture_output=True).returncode == 0
        t0 = time.monotonic()
        res = subprocess.run([str(script), "stop"], capture_output=True, text=True, timeout=10)
        took = time.monotonic() - t0
        assert res.returncode == 0 and res.stdout.startswith("stopped pid"), res
        assert took < 2.0, f"stop took {took:.1f}s"  # not the 15 s SIGKILL wait, nor forever
        pid = int(res.stdout.split()[-1])
        assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        assert subprocess.run([str(script), "status"], capture_output=True).returncode == 3
    finally:
        parent.kill()
        parent.wait()
