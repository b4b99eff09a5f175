"""Pure formatting and parsing helpers, checked against the seed transcript's strings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent.cli import dispatch, version_text
from agent.cli.common import Parser, columnize, tabwriter
from agent.cli.info import format_stats
from agent.cli.rtt import distance_seconds, format_rtt
from agent.client import ClientError, split_host_port


def test_rtt_line_matches_seed() -> None:
    assert (
        format_rtt("ceph-debug", "server1", 0.000794, "LAN")
        == "Estimated ceph-debug <-> server1 rtt: 0.794 ms (using LAN coordinates)"
    )


def test_vivaldi_distance_uses_height_and_adjustment() -> None:
    a = {"Vec": [0.003, 0.004], "Height": 0.001, "Adjustment": 0.0}
    b = {"Vec": [0.0, 0.0], "Height": 0.001, "Adjustment": 0.0}
    assert distance_seconds(a, b) == pytest.approx(0.007)
    negative = {"Vec": [0.0, 0.0], "Height": 0.0, "Adjustment": -1.0}
    assert distance_seconds(a, negative) == pytest.approx(0.006)  # adjustment ignored if <= 0


def test_info_raft_section_matches_seed() -> None:
    stats = {
        "raft": {
            "applied_index": "63",
            "commit_index": "63",
            "latest_configuration": "[{Suffrage:Voter ID:10.12.10.37:8300 Address:10.12.10.37:8300}]",
            "num_peers": "0",
        }
    }
    assert format_stats(stats) == (
        "raft:\n\tapplied_index = 63\n\tcommit_index = 63\n"
        "\tlatest_configuration = [{Suffrage:Voter ID:10.12.10.37:8300 Address:10.12.10.37:8300}]\n"
        "\tnum_peers = 0\n"
    )


def test_columnize_pads_all_but_the_last_column() -> None:
    assert columnize([["a", "bb", "c"], ["ddd", "e", "ffff"]]) == "a    bb  c\nddd  e   ffff\n"


def test_tabwriter_block() -> None:
    assert tabwriter([("ID", "x"), ("Version", "1")]) == "ID           x\nVersion      1"


def test_go_flag_parsing_stops_at_first_positional() -> None:
    p = Parser("t", "t")
    p.flag("flags", default="0")
    p.flag("cas", action="store_true")
    assert p.go_args(["-flags", "3", "-cas", "key", "-value"]) == [
        "-flags=3",
        "-cas",
        "--",
        "key",
        "-value",
    ]
    assert p.go_args(["-flags=3", "--", "-k"]) == ["-flags=3", "--", "-k"]


def test_addresses() -> None:
    assert split_host_port("127.0.0.1:8500", 1) == ("127.0.0.1", 8500)
    assert split_host_port("http://10.0.0.1:9", 1) == ("10.0.0.1", 9)
    assert split_host_port("localhost", 8400) == ("localhost", 8400)
    assert split_host_port("[::1]:8500", 1) == ("::1", 8500)
    with pytest.raises(ClientError, match="Invalid port"):
        split_host_port("127.0.0.1:http", 1)
    with pytest.raises(ClientError, match="scheme"):
        split_host_port("https://x:1", 1)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(["version"]) == 0
    out = capsys.readouterr().out
    assert out == version_text()
    assert out.startswith("Senate v0.7.2\nProtocol 2 spoken by default")
    assert dispatch(["--help"]) == 0
    assert "members" in capsys.readouterr().err
    assert dispatch(["frobnicate"]) == 127
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import all_commands

    for name in all_commands():
        if name in ("agent", "validate"):
            continue
        rc = dispatch([name, "--help"])
        captured = capsys.readouterr()
        assert rc == 0, name
        assert "senate" in captured.out + captured.err, name


def test_keygen_is_16_random_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(["keygen"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(base64.b64decode(key)) == 16
    assert dispatch(["keygen"]) == 0
    assert capsys.readouterr().out.strip() != key


def test_usage_errors_exit_1_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert dispatch(["members", "-bogus"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flag provided but not defined: -bogus")
    assert dispatch(["kv", "put", "-flags=x", "k"]) == 1
    assert "invalid unsigned integer" in capsys.readouterr().err
    assert dispatch(["members", "foo", "bar"]) == 1
    assert capsys.readouterr().err.startswith("Too many arguments (expected 0, got 2)")


def test_configtest_is_validate_with_consuls_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"datacenter": "dc1"}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"datacenter": 5}')
    assert dispatch(["configtest", f"-config-file={good}"]) == 0
    assert dispatch(["configtest", "-config-dir", str(tmp_path)]) == 1  # bad.json is in there
    assert dispatch(["configtest", f"-config-file={bad}"]) == 1
    assert "bad.json" in capsys.readouterr().err
    assert dispatch(["configtest", "-nope"]) == 1
