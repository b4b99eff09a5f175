"""Check and service definitions in config files: validated at load (file, key, reason), and
enable_script_checks from a file or the -enable-script-checks flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import ConfigError, load


def write(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "checks.json"
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"check": {"name": "c", "ttl": "abc"}}, "key 'check': time: invalid duration \"abc\""),
        (
            {"service": {"name": "web", "check": {"http": "http://127.0.0.1/"}}},
            "key 'service': Invalid check: Interval must be > 0 for Script, HTTP, or TCP checks",
        ),
        (
            {"checks": [{"name": "c", "ttl": "5s", "status": "fine"}]},
            "key 'checks': Bad check status",
        ),
    ],
)
def test_bad_check_definitions_fail_the_load(
    tmp_path: Path, doc: dict[str, object], needle: str
) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load([f"-config-file={path}", "-data-dir=/x"])
    assert str(path) in str(err.value) and needle in str(err.value)


def test_enable_script_checks_from_file_and_flag(tmp_path: Path) -> None:
    assert load(["-data-dir=/x"]).enable_script_checks is False
    path = write(tmp_path, {"enable_script_checks": True, "check": {"name": "legacy"}})
    cfg = load([f"-config-file={path}", "-data-dir=/x"])
    assert cfg.enable_script_checks is True and cfg.checks == ({"name": "legacy"},)
    assert load(["-data-dir=/x", "-enable-script-checks"]).enable_script_checks is True
