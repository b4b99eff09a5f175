"""`python -m agent.gossip`: bad flags get a clear error and exit code, never a traceback."""

from __future__ import annotations

import pytest

from agent.gossip.__main__ import GossipAgent, dc_merge_check, main, parse_args
from agent.gossip.serf_types import Member


def test_bad_flags_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["-node", "a", "-port", "0"])
    assert exc.value.code == 2
    assert "invalid -port 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["-node", "a", "-tag", "novalue"])
    assert main(["-node", "a", "-encrypt", "not-a-key"]) == 1
    assert "Failed to decode encryption key" in capsys.readouterr().err


def test_wrong_datacenter_message_is_consuls() -> None:
    check = dc_merge_check("dc2")
    assert check([Member("c", "1.2.3.4", 8301, {"role": "node", "dc": "dc2"}, "alive")]) is None
    assert (
        check([Member("server1", "1.2.3.4", 8301, {"role": "consul", "dc": "mydc"}, "alive")])
        == "Member 'server1' part of wrong datacenter 'mydc'"
    )


async def test_control_commands_without_network() -> None:
    agent = GossipAgent(parse_args(["-node", "a", "-tag", "role=consul"]))
    assert await agent.command("") == {"error": "empty command"}
    assert await agent.command("bogus") == {"error": "unknown command 'bogus'"}
    assert await agent.command("event") == {"error": "usage: event NAME [PAYLOAD]"}
    assert agent.pool.serf.tags == {"dc": "dc1", "role": "consul"}


def test_consul_merge_checks() -> None:
    from agent.gossip.consul import lan_merge_check, wan_merge_check

    lan = lan_merge_check("dc1")
    assert lan([Member("a", "1.2.3.4", 8301, {"role": "node", "dc": "dc1"}, "alive")]) is None
    assert lan([Member("s", "1.2.3.4", 8301, {"role": "consul", "dc": "dc2"}, "alive")]) == (
        "Member 's' part of wrong datacenter 'dc2'"
    )
    wan = wan_merge_check()
    assert (
        wan([Member("s1.dc1", "1.2.3.4", 8302, {"role": "consul", "dc": "dc1"}, "alive")]) is None
    )
    assert wan([Member("c1", "1.2.3.4", 8302, {"role": "node"}, "alive")]) == (
        "Member 'c1' is not a server"
    )
