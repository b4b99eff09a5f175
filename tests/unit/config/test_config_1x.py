"""Consul 1.x configuration: HCL and JSON files and directories in Consul's order, `-hcl` and
`-config-format`, every 1.x key known (acted on, warned about, or refused with the nearest
key), go-sockaddr templates, and config watches validated at load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, FlagError, load, load_files
from agent.config.sockaddr import TemplateError, render
from agent.config.sources import parse_text


def _w(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def test_hcl_server_config_acts(tmp_path: Path) -> None:
    _w(
        tmp_path,
        "server.hcl",
        """
        # a comment
        server = true
        bootstrap_expect = 3
        datacenter = "east"
        retry_join = ["127.0.0.2", "127.0.0.3"]
        ports { dns = 8601  serf_lan = 9301 }
        node_meta { rack = "r1" }
        performance { raft_multiplier = 5 }
        service { name = "web"  port = 80 }
        service { name = "db"  port = 5432 }
        """,
    )
    cfg = load([f"-config-dir={tmp_path}", "-data-dir=/x"])
    assert cfg.server and cfg.bootstrap_expect == 3 and cfg.datacenter == "east"
    assert cfg.retry_join == ("127.0.0.2", "127.0.0.3")
    assert (cfg.ports.dns, cfg.ports.serf_lan, cfg.ports.http) == (8601, 9301, 8500)
    assert cfg.node_meta == (("rack", "r1"),) and cfg.raft_multiplier == 5
    assert [s["name"] for s in cfg.services] == ["web", "db"]
    assert cfg.warnings == ()


def test_directory_files_merge_in_lexical_order_json_and_hcl_alike(tmp_path: Path) -> None:
    _w(tmp_path, "10-base.json", json.dumps({"datacenter": "a", "retry_join": ["127.0.0.2"]}))
    _w(tmp_path, "20-over.hcl", 'datacenter = "b"\nretry_join = ["127.0.0.3"]\n')
    _w(tmp_path, "30-last.json", json.dumps({"ports": {"http": 8501}}))
    _w(tmp_path, "40-more.hcl", "ports { dns = 8601 }\n")
    cfg = load([f"-config-dir={tmp_path}", "-data-dir=/x"])
    assert cfg.datacenter == "b"  # a scalar: the later file wins
    assert cfg.retry_join == ("127.0.0.2", "127.0.0.3")  # lists accumulate
    assert (cfg.ports.http, cfg.ports.dns) == (8501, 8601)  # blocks merge key by key
    assert [Path(f).name for f in cfg.config_files] == [
        "10-base.json",
        "20-over.hcl",
        "30-last.json",
        "40-more.hcl",
    ]


def test_unknown_extension_in_a_directory_is_warned_not_skipped_silently(tmp_path: Path) -> None:
    _w(tmp_path, "server.hcl", "server = true\n")
    _w(tmp_path, "consul.env", "CONSUL_HTTP_ADDR=x\n")
    _w(tmp_path, "old.json.bak", "{}")
    cfg = load([f"-config-dir={tmp_path}", "-data-dir=/x"])
    assert cfg.server
    assert cfg.warnings == tuple(
        f"WARNING: skipping file {tmp_path / n}, extension must be .hcl or .json, "
        "or config format must be set"
        for n in ("consul.env", "old.json.bak")
    )


def test_config_format_forces_the_format_of_every_file(tmp_path: Path) -> None:
    _w(tmp_path, "agent.conf", "server = true\n")
    cfg = load([f"-config-dir={tmp_path}", "-config-format=hcl", "-data-dir=/x"])
    assert cfg.server and cfg.warnings == ()
    one = _w(tmp_path, "single.cfg", '{"datacenter": "z"}')
    with pytest.raises(ConfigError, match=r"extension must be \.json or \.hcl"):
        load([f"-config-file={one}", "-data-dir=/x"])
    assert load([f"-config-file={one}", "-config-format=json", "-data-dir=/x"]).datacenter == "z"
    with pytest.raises(FlagError, match="-config-format must be one of json, hcl"):
        load(["-config-format=yaml", "-data-dir=/x"])


def test_hcl_fragments_come_after_files_and_before_flags(tmp_path: Path) -> None:
    f = _w(tmp_path, "a.json", json.dumps({"datacenter": "file", "node_name": "file"}))
    cfg = load(
        [
            f"-config-file={f}",
            '-hcl=datacenter = "frag"',
            '-hcl=node_name = "frag2"',
            "-node=flag",
            "-data-dir=/x",
        ]
    )
    assert cfg.datacenter == "frag" and cfg.node_name == "flag"
    with pytest.raises(ConfigError, match=r"Error decoding '-hcl #1': invalid HCL"):
        load(["-hcl=server = ", "-data-dir=/x"])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"datacentre": "x"}, "invalid config key datacentre (did you mean 'datacenter'?)"),
        ({"ports": {"grcp": 1}}, "invalid config key ports.grcp (did you mean 'ports.grpc'?)"),
        (
            {"acl": {"tokens": {"agnet": "x"}}},
            "invalid config key acl.tokens.agnet (did you mean 'acl.tokens.agent'?)",
        ),
        ({"zzzz": 1}, "invalid config key zzzz"),
        ({"ports": 3}, "key 'ports': expected an object, got 3"),
    ],
)
def test_a_key_consul_does_not_know_is_refused_with_the_nearest(
    tmp_path: Path, doc: dict[str, object], message: str
) -> None:
    f = _w(tmp_path, "bad.json", json.dumps(doc))
    with pytest.raises(ConfigError) as err:
        load([f"-config-file={f}", "-data-dir=/x"])
    assert str(err.value) == f"Error decoding '{f}': {message}"


def test_known_but_unimplemented_keys_warn_once_each_naming_key_and_file(tmp_path: Path) -> None:
    a = _w(
        tmp_path,
        "a.hcl",
        'ports { grpc = 8502 }\nui_config { enabled = true }\nacl { disabled_ttl = "30s" }\n',
    )
    b = _w(
        tmp_path,
        "b.json",
        json.dumps({"ports": {"grpc": 8503}, "telemetry": {"enable_host_metrics": True}}),
    )
    cfg = load([f"-config-file={a}", f"-config-file={b}", "-data-dir=/x", "-grpc-port=8504"])
    assert cfg.warnings == (
        f"WARNING: config key 'acl.disabled_ttl' (from {a}) is not implemented by senate and has no effect",
        f"WARNING: config key 'ports.grpc' (from {a}) is not implemented by senate and has no effect",
        f"WARNING: config key 'telemetry.enable_host_metrics' (from {b}) is not implemented by senate and has no effect",
        f"WARNING: config key 'ui_config.enabled' (from {a}) is not implemented by senate and has no effect",
    )


def test_keys_match_case_insensitively_as_consuls_decoder(tmp_path: Path) -> None:
    f = _w(tmp_path, "a.json", json.dumps({"Datacenter": "up", "Ports": {"HTTP": 8501}}))
    cfg = load([f"-config-file={f}", "-data-dir=/x"])
    assert cfg.datacenter == "up" and cfg.ports.http == 8501


def test_flags_that_set_one_key_act_or_warn() -> None:
    cfg = load(["-data-dir=/x", "-serf-lan-port=9301", "-server-port=9300", "-grpc-port=8502"])
    assert (cfg.ports.serf_lan, cfg.ports.server) == (9301, 9300)
    assert cfg.warnings == (
        "WARNING: config key 'ports.grpc' (from command-line flags) is not implemented by "
        "senate and has no effect",
    )
    with pytest.raises(ConfigError, match=r"HTTPS \(ports.https\) requires cert_file and key_file"):
        load(["-data-dir=/x", "-https-port=8501"])
    assert load(["-data-dir=/x", "-enable-local-script-checks"]).enable_local_script_checks


def test_sockaddr_templates_in_addresses() -> None:
    assert render('{{ GetInterfaceIP "lo" }}') == "127.0.0.1"
    assert (
        render(
            '{{ GetAllInterfaces | include "name" "lo" | include "type" "ipv4" | attr "address" }}'
        )
        == "127.0.0.1"
    )
    assert render("127.0.0.9") == "127.0.0.9"
    cfg = load(
        ["-data-dir=/x", '-bind={{ GetInterfaceIP "lo" }}', '-client={{ GetInterfaceIP "lo" }}']
    )
    assert cfg.bind_addr == "127.0.0.1" and cfg.client_addr == "127.0.0.1"
    with pytest.raises(TemplateError, match='function "GetFoo" not defined'):
        render("{{ GetFoo }}")
    with pytest.raises(FlagError, match="resolved to no address"):
        load(["-data-dir=/x", '-bind={{ GetInterfaceIP "no-such-if0" }}'])


def test_config_watches_are_validated_at_load(tmp_path: Path) -> None:
    ok = _w(tmp_path, "w.hcl", 'watches = [{ type = "key" key = "a" args = ["/bin/true"] }]\n')
    assert load([f"-config-file={ok}", "-data-dir=/x"]).watches == (
        {"type": "key", "key": "a", "args": ["/bin/true"]},
    )
    for body, needle in (
        ('watches = [{ type = "key" args = ["/bin/true"] }]', "Must specify a single key to watch"),
        ('watches = [{ type = "bogus" args = ["x"] }]', "Unsupported watch type: bogus"),
        ('watches = [{ type = "key" key = "a" }]', "Must define a watch handler"),
        (
            'watches = [{ type = "key" key = "a" args = ["x"] colour = 1 }]',
            "Invalid parameters: ['colour']",
        ),
    ):
        bad = _w(tmp_path, "bad.hcl", body + "\n")
        with pytest.raises(ConfigError, match="key 'watches': Failed to parse watch") as err:
            load([f"-config-file={bad}", "-data-dir=/x"])
        assert needle in str(err.value)


def test_validate_reads_hcl_too(tmp_path: Path) -> None:
    f = _w(tmp_path, "a.hcl", 'node_name = "n1"\nports { grpc = 1 }\n')
    cfg = load_files([str(f)])
    assert cfg.node_name == "n1" and len(cfg.warnings) == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='abcdefgh_ ={}[]"\n#/*0123456789.-,<>$', max_size=200))
def test_hcl_parser_fuzz_never_raises_anything_but_config_error(text: str) -> None:
    start = time.monotonic()
    try:
        parse_text(text, "hcl", "fuzz.hcl")
    except ConfigError as exc:
        assert "fuzz.hcl" in str(exc)
    assert time.monotonic() - start < 2.0


def test_hcl_deep_nesting_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_text("a = " + "[" * 5000, "hcl", "deep.hcl")


def test_acl_ttls_bound_how_long_a_resolved_token_is_cached(tmp_path: Path) -> None:
    f = _w(
        tmp_path,
        "acl.hcl",
        'acl { enabled = true\n token_ttl = "30s"\n policy_ttl = "5s"\n role_ttl = "10s" }\n',
    )
    cfg = load([f"-config-file={f}", "-data-dir=/x"])
    assert (cfg.acl.token_ttl, cfg.acl.policy_ttl, cfg.acl.role_ttl) == (30.0, 5.0, 10.0)
    assert cfg.acl.identity_ttl == 5.0
    assert cfg.warnings == ()


def test_raft_protocol_acts_and_is_2_or_3(tmp_path: Path) -> None:
    """raft_protocol (and -raft-protocol): 3 by default, as Consul 1.x; 2 for a datacenter
    being upgraded; anything else refused."""
    assert load(["-data-dir=/x"]).raft_protocol == 3
    cfg = load(["-data-dir=/x", "-raft-protocol=2"])
    assert cfg.raft_protocol == 2 and not any("raft_protocol" in w for w in cfg.warnings)
    _w(tmp_path, "a.json", '{"raft_protocol": 2}')
    assert load([f"-config-dir={tmp_path}", "-data-dir=/x"]).raft_protocol == 2
    with pytest.raises(ConfigError, match="raft_protocol version 4 is not supported"):
        load(["-data-dir=/x", "-raft-protocol=4"])
