"""agent/config.py: Consul's flags and JSON config files -> AgentConfig, with readable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import validate
from agent.config import ConfigError, FlagError, HelpRequested, load, load_files
from agent.durations import config_seconds as parse_duration


def test_seed_flags_both_spellings() -> None:
    cfg = load(["-data-dir=/tmp/t1", "-bind=10.12.10.37", "-node=server1", "-dc=mydc", "-server"])
    assert cfg.data_dir == "/tmp/t1"
    assert cfg.bind_addr == "10.12.10.37"
    assert cfg.node_name == "server1"
    assert cfg.datacenter == "mydc"
    assert cfg.server is True
    assert cfg.warnings == ("WARNING: the 'dc' flag has been deprecated. Use 'datacenter' instead",)
    cfg2 = load(["--data-dir", "/tmp/t1", "-bootstrap-expect", "3", "-server", "-datacenter", "x"])
    assert cfg2.bootstrap_expect == 3 and cfg2.datacenter == "x" and cfg2.warnings == ()


def test_defaults_and_leave_defaults_depend_on_role() -> None:
    client = load(["-data-dir=/d"])
    assert client.client_addr == "127.0.0.1"
    assert client.ports.http == 8500 and client.ports.server == 8300 and client.ports.https == -1
    assert client.leave_on_term is True and client.skip_leave_on_int is False
    server = load(["-data-dir=/d", "-server"])
    assert server.leave_on_term is False and server.skip_leave_on_int is True


def test_dev_mode() -> None:
    cfg = load(["-dev"])
    assert cfg.dev and cfg.server and cfg.bootstrap and cfg.bind_addr == "127.0.0.1"


def test_flags_override_files_and_lists_accumulate(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "a.json").write_text(
        json.dumps({"datacenter": "east", "retry_join": ["10.0.0.1"], "ports": {"http": 18500}})
    )
    (d / "b.json").write_text(
        json.dumps(
            {"retry_join": ["10.0.0.2"], "server": True, "services": [{"name": "web", "port": 80}]}
        )
    )
    (d / "ignored.txt").write_text("not json")
    cfg = load([f"-config-dir={d}", "-data-dir=/x", "-datacenter=west", "-retry-join=10.0.0.3"])
    assert cfg.datacenter == "west"
    assert cfg.retry_join == ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert cfg.ports.http == 18500 and cfg.ports.dns == 8600
    assert cfg.server and cfg.services[0]["name"] == "web"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"bootstrap_expect": "three"}, "key 'bootstrap_expect': expected an integer"),
        ({"server": "yes"}, "key 'server': expected a boolean"),
        ({"ports": {"http": 70000}}, "key 'ports.http': expected a port number"),
        ({"ports": {"htp": 1}}, "invalid config key ports.htp (did you mean 'ports.http'?)"),
        ({"bind_addr": "not-an-ip"}, "key 'bind_addr': expected an IP address"),
        ({"retry_interval": "soon"}, "key 'retry_interval': expected a duration"),
        (
            {"check_update_interval": "5 minutes"},
            "key 'check_update_interval': expected a duration",
        ),
        ({"datacentre": "x"}, "invalid config key datacentre"),
        ({"performance": {"raft_multiplier": 11}}, "performance.raft_multiplier"),
        ({"services": [{"port": 80}]}, "key 'services': expected a service object with a \"name\""),
        ({"encrypt": "!!"}, "key 'encrypt': expected a base64-encoded key"),
    ],
)
def test_bad_file_values_name_file_key_and_expectation(
    tmp_path: Path, doc: dict[str, object], needle: str
) -> None:
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as err:
        load([f"-config-file={f}", "-data-dir=/x"])
    assert str(f) in str(err.value)
    assert needle in str(err.value)


def test_invalid_json_reports_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.json"
    f.write_text('{\n  "server": true,\n  oops\n}')
    with pytest.raises(ConfigError, match=r"broken.json.*line 3"):
        load_files([str(f)])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-nope"], "flag provided but not defined: -nope"),
        (["-data-dir"], "flag needs an argument: -data-dir"),
        (["-data-dir=/x", "-bootstrap-expect=x"], 'invalid value "x" for flag -bootstrap-expect'),
        (["-data-dir=/x", "-bind=300.1.1.1"], "-bind"),
        (["-data-dir=/x", "stray"], "unexpected argument: stray"),
        (["-server=maybe"], "invalid boolean value"),
    ],
)
def test_bad_flags(argv: list[str], needle: str) -> None:
    with pytest.raises(FlagError, match=needle):
        load(argv)


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="Must specify data directory"):
        load(["-server"])
    with pytest.raises(ConfigError, match="mutually exclusive"):
        load(["-data-dir=/x", "-server", "-bootstrap", "-bootstrap-expect=3"])
    with pytest.raises(ConfigError, match="requires server mode"):
        load(["-data-dir=/x", "-bootstrap-expect=3"])


def test_help() -> None:
    with pytest.raises(HelpRequested):
        load(["-h"])


def test_durations() -> None:
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"datacenter": "dc1", "server": True, "bootstrap_expect": 3}))
    assert validate.run([str(good)]) == 0
    assert capsys.readouterr().out == "Configuration is valid!\n"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"server": 1}))
    assert validate.run([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "Config validation failed" in err and "bad.json" in err and "'server'" in err
    assert "Traceback" not in err
    # dns_config is checked too, with the key named, instead of only disabling DNS at start.
    bad.write_text(json.dumps({"dns_config": {"node_ttl": "banana"}}))
    assert validate.run([str(bad)]) == 1
    err = capsys.readouterr().err
    assert 'dns_config.node_ttl: expected a duration such as "30s" or "1m", got "banana"' in err
    # Consul 1.x keys: HCL read, a key without effect here named; a misspelt one refused.
    hcl = tmp_path / "server.hcl"
    hcl.write_text("server = true\nports { grpc = 8502 }\n")
    assert validate.run([str(hcl)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "Configuration is valid!\n"
    assert f"WARNING: config key 'ports.grpc' (from {hcl})" in captured.err
    hcl.write_text("sever = true\n")
    assert validate.run([str(hcl)]) == 1
    assert "invalid config key sever (did you mean 'server'?)" in capsys.readouterr().err


def test_node_name_not_valid_for_dns_warns() -> None:
    cfg = load(["-data-dir=/x", "-node=web_1.example"])
    assert cfg.node_name == "web_1.example"
    assert any("will not be discoverable via DNS" in w for w in cfg.warnings)
    assert not load(["-data-dir=/x", "-node=web-1"]).warnings


def test_check_update_interval(tmp_path: Path) -> None:
    assert load(["-data-dir=/d"]).check_update_interval == 300.0  # Consul's 5 m
    f = tmp_path / "c.json"
    for text, secs in (("0s", 0.0), ("90s", 90.0), ("10m", 600.0)):
        f.write_text(json.dumps({"check_update_interval": text}))
        assert load([f"-config-file={f}", "-data-dir=/d"]).check_update_interval == secs
