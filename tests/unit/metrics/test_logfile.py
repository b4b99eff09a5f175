"""log_file's rotation (by size, keeping log_rotate_max_files) and -log-json's hclog fields,
without an agent."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agent.local.logfile import LogFile
from agent.logfmt import JSONFormatter


def _record(msg: str, name: str = "agent.raft", level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_rotates_by_size_and_keeps_max_files(tmp_path: Path) -> None:
    handler = LogFile(f"{tmp_path}/", max_bytes=100, max_files=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(20):
        handler.emit(_record(f"line {i:02d} " + "x" * 40))
    handler.close()
    current = tmp_path / "consul.log"
    rotated = sorted(p.name for p in tmp_path.glob("consul-*.log"))
    assert current.exists() and len(rotated) == 2
    assert all(p.removeprefix("consul-").removesuffix(".log").isdigit() for p in rotated)
    assert "line 19" in current.read_text()
    assert len(current.read_text()) <= 100 + 60


def test_named_file_keeps_every_rotation_with_zero(tmp_path: Path) -> None:
    handler = LogFile(str(tmp_path / "agent.txt"), max_bytes=5, max_files=0)
    for i in range(5):
        handler.emit(_record(f"entry {i}"))
    handler.close()
    assert len(list(tmp_path.glob("agent-*.txt"))) == 4


def test_json_lines_have_hclogs_fields() -> None:
    line = JSONFormatter().format(_record("Election won", level=logging.WARNING))
    doc = json.loads(line)
    assert set(doc) == {"@level", "@message", "@module", "@timestamp"}
    assert (doc["@level"], doc["@message"], doc["@module"]) == (
        "warn",
        "Election won",
        "agent.raft",
    )
    assert doc["@timestamp"][10] == "T" and doc["@timestamp"][19] == "."
