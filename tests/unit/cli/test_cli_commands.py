"""`senate` commands against the real server side of tests/agent_double.py: output as the
seed transcript shows it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from agent_double import SERVER2_ID, AgentDouble, Served, failed_server_agent, serve_agent

from agent.cli import dispatch
from agent.cli.common import columnize
from agent.cli.operator import PEERS_HEADER
from agent.http.archive import read_archive

pytestmark = pytest.mark.timeout(60)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


SEED_MEMBERS = """\
Node        Address           Status  Type    Build  Protocol  DC
ceph-debug  10.12.10.61:8301  alive   client  0.7.2  2         mydc
server1     10.12.10.37:8301  alive   server  0.7.2  2         mydc
"""

SEED_KV_DETAILED = """\
CreateIndex      {index}
Flags            0
Key              name
LockIndex        0
ModifyIndex      {index}
Session          -
Value            ivan
"""


def stored(served: Served, key: str) -> dict[str, Any]:
    """The entry as the agent's real state store holds it."""
    entry = served.agent.state.kvs_get(key)[1]
    assert entry is not None, key
    return dict(entry)


def test_seed_kv_session(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    h = f"-http-addr={served.http_addr}"
    index = served.agent.raft.last_log_index + 1  # the put is the next raft entry
    assert run(capsys, "kv", "put", h, "name", "ivan") == (
        0,
        "Success! Data written to: name\n",
        "",
    )
    assert run(capsys, "kv", "get", h, "name") == (0, "ivan\n", "")
    detailed = SEED_KV_DETAILED.format(index=index)
    assert run(capsys, "kv", "get", h, "-detailed", "name") == (0, detailed, "")
    assert run(capsys, "kv", "delete", h, "name") == (0, "Success! Deleted key: name\n", "")
    assert run(capsys, "kv", "get", h, "name") == (1, "", "Error! No key exists at: name\n")


def test_seed_members_over_rpc_and_http(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "members", f"-rpc-addr={served.rpc_addr}") == (0, SEED_MEMBERS, "")
    assert run(capsys, "members", f"-http-addr={served.http_addr}") == (0, SEED_MEMBERS, "")


def test_members_env_address_and_filters(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", served.http_addr)
    rc, out, _ = run(capsys, "members", "-detailed")
    assert rc == 0
    assert out.splitlines()[0] == "Node        Address           Status  Tags"
    assert "role=consul" in out.splitlines()[2]
    assert run(capsys, "members", "-status=failed")[0] == 2
    rc, out, _ = run(capsys, "members", "-status=^al")
    assert rc == 0 and len(out.splitlines()) == 3
    rc, _, err = run(capsys, "members", "-status=(")
    assert rc == 1 and err.startswith("Failed to compile status regexp")
    served.agent.gossip.lan[1]["Status"] = 4
    rc, out, _ = run(capsys, "members", "-status=failed")
    assert rc == 0 and "ceph-debug  10.12.10.61:8301  failed  client" in out


def test_join_leave_force_leave_reload(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    r = f"-rpc-addr={served.rpc_addr}"
    assert run(capsys, "join", r, "10.0.0.2", "10.0.0.3") == (
        0,
        "Successfully joined cluster by contacting 2 nodes.\n",
        "",
    )
    rc, _, err = run(capsys, "join", r, "-wan", "10.99.0.1")
    assert rc == 1
    assert err.startswith("Error joining the cluster: 1 error(s) occurred:")
    assert served.agent.gossip.joined[-1] == (["10.99.0.1"], True)
    rc, _, err = run(capsys, "join", r)
    assert rc == 1 and err.startswith("At least one address to join must be specified.")
    assert run(capsys, "force-leave", r, "ceph-debug") == (0, "", "")
    assert served.agent.gossip.force_left == ["ceph-debug"]
    assert run(capsys, "force-leave", r, "nope") == (
        1,
        "",
        "Error force leaving: agent: No node found with name 'nope'\n",
    )
    assert run(capsys, "force-leave", f"-http-addr={served.http_addr}", "nope") == (
        1,
        "",
        "Error force leaving: Unexpected response code: 500 "
        "(agent: No node found with name 'nope')\n",
    )
    assert run(capsys, "reload", r) == (0, "Configuration reload triggered\n", "")
    assert served.agent.reloads == 1
    assert run(capsys, "leave", r) == (0, "Graceful leave complete\n", "")
    assert served.agent.gossip.left


def test_info_prints_sorted_sections(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "info", f"-rpc-addr={served.rpc_addr}")
    assert rc == 0
    # services = 0 on a fresh server (the seed's 0.7 said 1): in 1.x the consul service is
    # the leader's catalog entry, not one of the agent's own services
    assert out.startswith(
        "agent:\n\tcheck_monitors = 0\n\tcheck_ttls = 0\n\tchecks = 0\n\tservices = 0\n"
        "build:\n\tprerelease = \n\trevision = senate\n\tversion = 0.7.2\nconsul:\n"
    )
    assert "raft:\n" in out and "\tstate = Leader\n" in out


def test_kv_recurse_keys_flags_cas_and_stdin(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    h = f"-http-addr={served.http_addr}"
    (tmp_path / "v").write_bytes(b"from-file")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from-stdin")))
    assert run(capsys, "kv", "put", h, "-flags=7", "app/a", f"@{tmp_path / 'v'}")[0] == 0
    assert run(capsys, "kv", "put", h, "app/b/c", "-")[0] == 0
    assert run(capsys, "kv", "put", h, "app/d", "-not-a-flag")[0] == 0
    rc, out, _ = run(capsys, "kv", "get", h, "-recurse", "app")
    assert out == "app/a:from-file\napp/b/c:from-stdin\napp/d:-not-a-flag\n"
    assert run(capsys, "kv", "get", h, "-keys", "app/") == (0, "app/a\napp/b/\napp/d\n", "")
    assert stored(served, "app/a")["Flags"] == 7
    rc, _, err = run(capsys, "kv", "put", h, "-cas", "app/a", "x")
    assert (rc, err) == (1, "Must specify -modify-index with -cas!\n")
    rc, _, err = run(capsys, "kv", "put", h, "-cas", "-modify-index=1", "app/a", "x")
    assert (rc, err) == (1, "Error! Did not write to app/a: CAS failed\n")
    idx = stored(served, "app/a")["ModifyIndex"]
    assert run(capsys, "kv", "put", h, "-cas", f"-modify-index={idx}", "app/a", "x")[0] == 0
    rc, _, err = run(capsys, "kv", "put", h, "-acquire", "app/a")
    assert (rc, err) == (1, "Error! Missing -session (required with -acquire and -release)\n")
    assert run(capsys, "kv", "delete", h, "-recurse", "app/b") == (
        0,
        "Success! Deleted keys with prefix: app/b\n",
        "",
    )
    rc, _, err = run(capsys, "kv", "delete", h, "-cas", "-modify-index=1", "app/a")
    assert (rc, err) == (1, "Error! Did not delete key app/a: CAS failed\n")
    rc, _, err = run(capsys, "kv", "put", h)
    assert (rc, err) == (1, "Error! Missing KEY argument\n")


def test_kv_errors_name_the_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_agent(AgentDouble(bootstrap=False)) as served:  # a server with no leader
        h = f"-http-addr={served.http_addr}"
        rc, _, err = run(capsys, "kv", "put", h, "k", "v")
        assert (rc, err) == (
            1,
            "Error! Failed writing data: Unexpected response code: 500 (No cluster leader)\n",
        )
        rc, _, err = run(capsys, "kv", "get", h, "k")
        assert (rc, err) == (
            1,
            'Error querying "k": Unexpected response code: 500 (No cluster leader)\n',
        )


def test_unreachable_agent_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "members", "-rpc-addr=127.0.0.1:1")
    assert rc == 1 and err.startswith("Error connecting to Senate agent: dial tcp 127.0.0.1:1")
    rc, _, err = run(capsys, "kv", "get", "-http-addr=127.0.0.1:1", "k")
    assert rc == 1 and err.startswith('Error querying "k":')
    assert "Traceback" not in err


def test_event_prints_id(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "event", "-name=sayhi", f"-http-addr={served.http_addr}", "payload")
    assert rc == 0
    event = served.agent.user_events()[0]
    assert out == f"Event ID: {event['ID']}\n"
    assert event["Payload"] == b"payload"
    rc, _, err = run(capsys, "event", f"-http-addr={served.http_addr}")
    assert rc == 1 and err.startswith("Event name must be specified")
    rc, _, err = run(capsys, "event", "-name=x", "-tag=web", f"-http-addr={served.http_addr}")
    assert (rc, err) == (1, "Cannot provide tag filter without service filter.\n")


def test_operator_raft_list_and_remove(capsys: pytest.CaptureFixture[str]) -> None:
    agent = failed_server_agent()  # server2: a Nonvoter that is down
    with serve_agent(agent) as served:
        h = f"-http-addr={served.http_addr}"
        # Consul 1.x's table: servers by node ID, with their raft protocol, and autopilot's
        # last index of each with how far it trails the leader's
        assert agent.leader_duties is not None and agent.leader_duties.health is not None
        health = {s["ID"]: s for s in agent.leader_duties.health["Servers"]}
        index = health[agent.node_id]["LastIndex"]
        assert index > 0 and health[SERVER2_ID]["LastIndex"] == 0
        trails = f"{index} Commits" if index > 1 else f"{index} Commit"
        expected = columnize(
            [
                PEERS_HEADER,
                [
                    *("server1", agent.node_id, "10.12.10.37:8300", "leader", "true", "3"),
                    *(f"{index}", "_"),
                ],
                [*("server2", SERVER2_ID, "127.0.0.1:1", "follower", "false", "3"), *("0", trails)],
            ]
        )
        assert expected.splitlines()[0].startswith("Node     ID    ")
        assert run(capsys, "operator", "raft", "list-peers", h) == (0, expected, "")
        assert run(capsys, "operator", "raft", "-list-peers", h) == (0, expected, "")
        rc, _, err = run(capsys, "operator", "raft", "remove-peer", h)
        assert (rc, err) == (
            1,
            "Error removing peer: an address or id is required for the peer to remove\n",
        )
        rc, _, err = run(capsys, "operator", "raft", "remove-peer", h, "-id=x", "-address=y")
        assert (rc, err) == (1, "Error removing peer: cannot give both an address and id\n")
        assert run(capsys, "operator", "raft", "remove-peer", h, f"-id={SERVER2_ID}") == (
            0,
            f'Removed peer with id "{SERVER2_ID}"\n',
            "",
        )
        assert [s.address for s in served.agent.raft.configuration()] == ["10.12.10.37:8300"]
        rc, _, err = run(capsys, "operator", "raft", "remove-peer", h, "-address=9.9.9.9:8300")
        assert rc == 1 and "was not found in the Raft configuration" in err
        rc, _, err = run(capsys, "operator", "raft", "remove-peer", h, "-address=127.0.0.1:1")
        assert rc == 1 and 'address "127.0.0.1:1" was not found' in err


def test_snapshot_save_inspect_restore(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    h = f"-http-addr={served.http_addr}"
    path = str(tmp_path / "backup.snap")
    assert run(capsys, "kv", "put", h, "kept", "before")[0] == 0
    index, term = served.agent.raft.applied_index, served.agent.raft.term
    assert run(capsys, "snapshot", "save", h, path) == (
        0,
        f"Saved and verified snapshot to index {index}\n",
        "",
    )
    size = read_archive(Path(path).read_bytes())[0].size
    rc, out, _ = run(capsys, "snapshot", "inspect", path)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"ID           {term}-{index}-")
    assert lines[1:] == [
        f"Size         {size}",
        f"Index        {index}",
        f"Term         {term}",
        "Version      1",
    ]
    assert run(capsys, "kv", "put", h, "kept", "after")[0] == 0
    assert run(capsys, "snapshot", "restore", h, path) == (0, "Restored snapshot\n", "")
    assert stored(served, "kept")["Value"] == b"before"
    (tmp_path / "junk").write_bytes(b"junk")
    rc, _, err = run(capsys, "snapshot", "inspect", str(tmp_path / "junk"))
    assert rc == 1 and err.startswith("Error extracting snapshot data:")
    rc, _, err = run(capsys, "snapshot", "save", h)
    assert (rc, err) == (1, "Missing FILE argument\n")


def test_keyring_list_install_and_errors(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    r = f"-rpc-addr={served.rpc_addr}"
    rc, out, _ = run(capsys, "keyring", r, "-list")
    assert rc == 0
    assert out == (
        "==> Gathering installed encryption keys...\n\nWAN:\n  pUqJrVyVRj5jsiYEkM/tFQ== [2/1]\n"
        "\nmydc (LAN):\n  pUqJrVyVRj5jsiYEkM/tFQ== [2/2]\n"
    )
    assert run(capsys, "keyring", r, "-install=newkey") == (
        0,
        "==> Installing new gossip encryption key...\n==> Done!\n",
        "",
    )
    rc, _, err = run(capsys, "keyring", r, "-remove=nope")
    assert (rc, err) == (1, "\nmydc (LAN) error: key not found\n")
    rc, _, err = run(capsys, "keyring", r, "-list", "-use=x")
    assert (rc, err) == (1, "Only a single action is allowed\n")


def coordinate(x: float) -> dict[str, Any]:
    """A Vivaldi coordinate of serf's 8 dimensions, `x` seconds along the first."""
    return {"Vec": [x] + [0.0] * 7, "Error": 0.1, "Adjustment": 0.0, "Height": 0.0001}


def test_rtt_uses_lan_coordinates(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    agent = served.agent
    coords = {"ceph-debug": coordinate(0.0005), "server1": coordinate(0.0002)}

    async def send_coordinates() -> None:
        """What each agent does (Coordinate.Update), and the leader's next batch write."""
        for node, coord in coords.items():
            args = {"Datacenter": "mydc", "Node": node, "Coord": coord}
            await agent.rpc("Coordinate.Update", args)
        await agent.endpoints.coordinates.flush()

    served.call(send_coordinates())
    agent.gossip.wan_coords = {f"{n}.mydc": c for n, c in coords.items()}
    h = f"-http-addr={served.http_addr}"
    expected = "Estimated ceph-debug <-> server1 rtt: 0.500 ms (using LAN coordinates)\n"
    assert run(capsys, "rtt", h, "ceph-debug", "server1") == (0, expected, "")
    assert run(capsys, "rtt", h, "ceph-debug") == (0, expected, "")
    rc, _, err = run(capsys, "rtt", h, "ghost")
    assert (rc, err) == (1, 'Could not find a coordinate for node "ghost"\n')
    wan = "Estimated ceph-debug.mydc <-> server1.mydc rtt: 0.500 ms (using WAN coordinates)\n"
    assert run(capsys, "rtt", h, "-wan", "ceph-debug.mydc", "server1.mydc") == (0, wan, "")
    rc, _, err = run(capsys, "rtt", h, "-wan", "ceph-debug", "server1")
    assert (rc, err) == (1, "Node names must be specified as <node name>.<datacenter> with -wan\n")


def test_monitor_streams_over_rpc(served: Served) -> None:
    from agent.client import RPCClient

    served.agent.log_lines = ["line one", "line two"]
    with RPCClient(served.rpc_addr, timeout=5) as client:
        lines = client.monitor("DEBUG")
        assert next(lines) == "line one"
        assert next(lines) == "line two"


def test_rpc_commands_also_work_over_http(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """-http-addr (or only $CONSUL_HTTP_ADDR) sends the 0.7 RPC commands over the HTTP API."""
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, "join", h, "10.0.0.9") == (
        0,
        "Successfully joined cluster by contacting 1 nodes.\n",
        "",
    )
    rc, _, err = run(capsys, "join", h, "10.99.0.1")
    assert rc == 1 and "Failed to join 10.99.0.1" in err
    rc, out, _ = run(capsys, "info", h)
    assert rc == 0 and "build:\n\tprerelease = \n\trevision = senate\n" in out
    assert run(capsys, "force-leave", h, "ceph-debug") == (0, "", "")
    assert run(capsys, "reload", h) == (0, "Configuration reload triggered\n", "")
    rc, out, _ = run(capsys, "keyring", h, "-list")
    assert rc == 0 and "mydc (LAN):\n  pUqJrVyVRj5jsiYEkM/tFQ== [2/2]" in out
    assert run(capsys, "leave", h) == (0, "Graceful leave complete\n", "")
    assert served.agent.gossip.force_left == ["ceph-debug"] and served.agent.gossip.left


def test_kv_export_then_import_round_trips(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    h = f"-http-addr={served.http_addr}"
    assert run(capsys, "kv", "put", h, "-flags=5", "cfg/a", "one")[0] == 0
    assert run(capsys, "kv", "put", h, "cfg/b", "two")[0] == 0
    rc, exported, _ = run(capsys, "kv", "export", h, "cfg/")
    assert rc == 0
    assert exported == (
        '[\n\t{\n\t\t"key": "cfg/a",\n\t\t"flags": 5,\n\t\t"value": "b25l"\n\t},\n'
        '\t{\n\t\t"key": "cfg/b",\n\t\t"flags": 0,\n\t\t"value": "dHdv"\n\t}\n]\n'
    )
    assert run(capsys, "kv", "delete", h, "-recurse", "cfg/")[0] == 0
    dump = tmp_path / "dump.json"
    dump.write_text(exported)
    assert run(capsys, "kv", "import", h, f"@{dump}") == (
        0,
        "Imported: cfg/a\nImported: cfg/b\n",
        "",
    )
    assert stored(served, "cfg/a")["Value"] == b"one"
    assert stored(served, "cfg/a")["Flags"] == 5
    rc, _, err = run(capsys, "kv", "import", h, "[{}]")
    assert rc == 1 and err.startswith("Cannot unmarshal data:")


def test_members_over_rpc_with_high_octet_addresses(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    """net.IP travels as a raw msgpack string; octets >= 128 are not UTF-8 and must survive."""
    served.agent.gossip.lan[0]["Addr"] = "10.231.200.255"
    served.agent.gossip.lan[1]["Addr"] = "192.168.128.1"
    rc, out, err = run(capsys, "members", f"-rpc-addr={served.rpc_addr}")
    assert (rc, err) == (0, "")
    assert "10.231.200.255:8301" in out and "192.168.128.1:8301" in out
