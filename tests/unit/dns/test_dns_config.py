from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, load, load_files
from agent.dns.config import (
    DNSConfig,
    DNSConfigError,
    build_dns_config,
    normalize_domain,
    parse_recursor,
)


def test_defaults_are_consul_07() -> None:
    c = build_dns_config()
    assert c == DNSConfig()
    assert (c.node_ttl, c.allow_stale, c.max_stale, c.udp_answer_limit) == (
        0.0,
        True,
        87600 * 3600.0,
        3,
    )
    assert not c.enable_truncate and not c.only_passing


def test_dns_config_block() -> None:
    c = build_dns_config(
        domain="Example",
        recursors=["127.0.0.53", "127.0.0.1:5353", "[::1]:53"],
        dns_config={
            "node_ttl": "10s",
            "service_ttl": {"*": "5s", "web": "30s"},
            "allow_stale": False,
            "max_stale": "1m",
            "only_passing": True,
            "enable_truncate": True,
            "udp_answer_limit": 5,
            "recursor_timeout": "500ms",
        },
    )
    assert c.domain == "example."
    assert c.recursors == (("127.0.0.53", 53), ("127.0.0.1", 5353), ("::1", 53))
    assert c.node_ttl == 10.0 and c.max_stale == 60.0 and c.recursor_timeout == 0.5
    assert c.ttl_for_service("web") == 30 and c.ttl_for_service("db") == 5
    assert not c.allow_stale and c.only_passing and c.enable_truncate
    assert c.udp_answer_limit == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domain": ""}, "domain: expected a DNS domain"),
        ({"domain": "a..b"}, "domain: expected a DNS domain"),
        (
            {"recursors": ["dns.google"]},
            'recursors: expected an IP address with an optional port, got "dns.google"',
        ),
        ({"recursors": ["127.0.0.1:99999"]}, "recursors: invalid port"),
        ({"dns_config": {"node_ttl": "soon"}}, "dns_config.node_ttl: expected a duration"),
        ({"dns_config": {"allow_stale": "yes"}}, "dns_config.allow_stale: expected true or false"),
        (
            {"dns_config": {"udp_answer_limit": 0}},
            "dns_config.udp_answer_limit: expected a positive integer",
        ),
        ({"dns_config": {"service_ttl": "5s"}}, "dns_config.service_ttl: expected an object"),
        ({"dns_config": {"service_ttl": {"web": "x"}}}, "dns_config.service_ttl.web"),
        (
            {"dns_config": {"recursor_timeout": "0s"}},
            "dns_config.recursor_timeout: must be positive",
        ),
        ({"dns_config": {"bogus": 1}}, 'dns_config: unknown key "bogus"'),
        ({"dns_config": [1]}, "dns_config: expected a JSON object"),
    ],
)
def test_bad_values_name_the_key(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DNSConfigError) as err:
        build_dns_config(**kwargs)
    assert message in str(err.value)


def test_normalize_and_recursor_helpers() -> None:
    assert normalize_domain("consul") == "consul."
    assert parse_recursor(" 8.8.8.8 ") == ("8.8.8.8", 53)


def _write(tmp_path: Path, name: str, obj: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def test_the_agent_config_holds_the_dns_config_typed(tmp_path: Path) -> None:
    first = _write(
        tmp_path,
        "a.json",
        {"dns_config": {"node_ttl": "1s"}, "telemetry": {"enable_host_metrics": True}},
    )
    second = _write(
        tmp_path,
        "b.json",
        {"domain": "senate", "dns_config": {"node_ttl": "3s"}, "translate_wan_addrs": True},
    )
    cfg = load_files([first, second])  # blocks merge key by key; the later file's key wins
    assert cfg.dns_config == build_dns_config(
        domain="senate", dns_config={"node_ttl": "3s"}, translate_wan_addrs=True
    )
    assert cfg.translate_wan_addrs is True and cfg.dns_config.node_ttl == 3.0
    assert cfg.warnings == (
        f"WARNING: config key 'telemetry.enable_host_metrics' (from {first}) is not implemented "
        "by senate and has no effect",
    )
    flags = load(
        ["-data-dir=/d", "-domain=example", "-recursor=127.0.0.9", f"-config-file={first}"]
    )
    assert flags.dns_config.domain == "example."
    assert flags.dns_config.recursors == (("127.0.0.9", 53),)
    assert load(["-data-dir=/d"]).dns_config == DNSConfig()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"dns_config": {"node_ttl": "x"}}, "dns_config.node_ttl: expected a duration"),
        ({"translate_wan_addrs": 1}, "translate_wan_addrs: expected true or false, got 1"),
        ({"recursors": ["dns.google"]}, "recursors: expected an IP address"),
    ],
)
def test_a_bad_dns_setting_fails_the_load_naming_the_key(
    tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(DNSConfigError) as err:
        load_files([_write(tmp_path, "c.json", doc)])
    assert str(err.value).startswith(message)
    assert isinstance(err.value, ConfigError)  # so a SIGHUP reload reports it, as others


def test_a_dns_config_that_is_no_block_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.json", {"dns_config": 3})
    with pytest.raises(ConfigError) as err:
        load_files([path])
    assert str(err.value) == f"Error decoding '{path}': key 'dns_config': expected an object, got 3"


def test_a_bad_dns_setting_is_reported_after_other_config_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.json", {"dns_config": {"node_ttl": "x"}})
    with pytest.raises(ConfigError) as err:
        load([f"-config-file={path}"])  # no -data-dir
    assert str(err.value) == "Must specify data directory using -data-dir"
