"""Agent, status, operator, snapshot, event, session, catalog, health and txn endpoints."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import msgpack
import pytest
from agent_double import SERVER2_ID, AgentDouble, failed_server_agent, http_client

from agent.http.archive import read_archive

pytestmark = pytest.mark.timeout(60)

Client = Any


async def test_agent_self_members_and_wan(client: Client, agent: AgentDouble) -> None:
    body = await (await client.get("/v1/agent/self")).json()
    assert body["Config"]["NodeName"] == "server1"
    assert body["Stats"]["build"]["version"] == "0.7.2"
    members = await (await client.get("/v1/agent/members")).json()
    assert [m["Name"] for m in members] == ["server1", "ceph-debug"]
    assert members[0]["Status"] == 1 and members[0]["Addr"] == "10.12.10.37"
    wan = await (await client.get("/v1/agent/members?wan=1")).json()
    assert [m["Name"] for m in wan] == ["server1.mydc"]


async def test_agent_join_leave_force_leave_reload(client: Client, agent: AgentDouble) -> None:
    assert (await client.put("/v1/agent/join/10.0.0.5?wan=1")).status == 200
    assert agent.gossip.joined[-1] == (["10.0.0.5"], True)
    resp = await client.put("/v1/agent/join/10.99.0.1")
    assert resp.status == 500
    assert "Failed to join 10.99.0.1" in await resp.text()
    assert (await client.put("/v1/agent/force-leave/ceph-debug")).status == 200
    assert agent.gossip.force_left == ["ceph-debug"]
    unknown = await client.put("/v1/agent/force-leave/nope?prune")
    assert (unknown.status, await unknown.text()) == (500, "agent: No node found with name 'nope'")
    assert agent.gossip.force_left == ["ceph-debug"]
    assert (await client.put("/v1/agent/reload")).status == 200
    assert agent.reloads == 1
    assert (await client.put("/v1/agent/leave")).status == 200
    assert agent.gossip.left


async def test_monitor_streams_log_lines(client: Client, agent: AgentDouble) -> None:
    agent.log_lines = ["2017/02/14 15:27:58 [INFO] raft: Election won. Tally: 1"]
    resp = await client.get("/v1/agent/monitor?loglevel=debug")
    assert resp.status == 200
    line = await asyncio.wait_for(resp.content.readline(), 5)
    assert line == b"2017/02/14 15:27:58 [INFO] raft: Election won. Tally: 1\n"
    resp.close()
    bad = await client.get("/v1/agent/monitor?loglevel=loud")
    assert bad.status == 400
    assert await bad.text() == "Unknown log level: loud"


async def test_status_and_operator_raft() -> None:
    agent = failed_server_agent()  # server1 leads; server2 (a Nonvoter) is down
    async with http_client(agent) as client:
        assert await (await client.get("/v1/status/leader")).json() == "10.12.10.37:8300"
        assert await (await client.get("/v1/status/peers")).json() == [
            "10.12.10.37:8300",
            "127.0.0.1:1",
        ]
        conf = await (await client.get("/v1/operator/raft/configuration")).json()
        # Consul 1.x: servers by node ID (raft protocol 3), ProtocolVersion from raft_vsn,
        # Index 0 (hashicorp/raft's GetConfiguration carries none)
        assert conf["Index"] == 0
        assert conf["Servers"] == [
            {
                "ID": agent.node_id,
                "Node": "server1",
                "Address": "10.12.10.37:8300",
                "Leader": True,
                "Voter": True,
                "ProtocolVersion": "3",
            },
            {
                "ID": SERVER2_ID,
                "Node": "server2",
                "Address": "127.0.0.1:1",
                "Leader": False,
                "Voter": False,
                "ProtocolVersion": "3",
            },
        ]
        missing = await client.delete("/v1/operator/raft/peer")
        assert (missing.status, await missing.text()) == (
            400,
            "Must specify either ?id with the server's ID or ?address with IP:port of peer "
            "to remove",
        )
        both = await client.delete("/v1/operator/raft/peer?id=x&address=127.0.0.1:1")
        assert (both.status, await both.text()) == (400, "Must specify only one of ?id or ?address")
        unknown = await client.delete("/v1/operator/raft/peer?id=nope")
        assert (unknown.status, await unknown.text()) == (
            500,
            'id "nope" was not found in the Raft configuration',
        )
        ok = await client.delete(f"/v1/operator/raft/peer?id={SERVER2_ID}")
        assert ok.status == 200
        assert [s.id for s in agent.raft.configuration()] == [agent.node_id]
        bad = await client.delete("/v1/operator/raft/peer?address=1.2.3.4:8300")
        assert bad.status == 500
        assert "was not found in the Raft configuration" in await bad.text()


def value(agent: AgentDouble, key: str) -> bytes | None:
    entry = agent.state.kvs_get(key)[1]
    return None if entry is None else bytes(entry["Value"])


async def test_snapshot_save_then_restore_round_trips(client: Client, agent: AgentDouble) -> None:
    await client.put("/v1/kv/kept", data=b"before")
    index, term = agent.raft.applied_index, agent.raft.term
    resp = await client.get("/v1/snapshot")
    assert resp.status == 200
    assert resp.headers["X-Consul-Index"] == str(index)
    archive = await resp.read()
    meta, state = read_archive(archive)
    assert state == agent.fsm.snapshot()  # the state machine's own snapshot of this state
    assert (meta.index, meta.term, meta.version, meta.size) == (index, term, 1, len(state))
    assert meta.id.startswith(f"{term}-{index}-")
    await client.put("/v1/kv/kept", data=b"after")
    await client.put("/v1/kv/later", data=b"x")
    restored = await client.put("/v1/snapshot", data=archive)
    assert restored.status == 200
    assert (value(agent, "kept"), value(agent, "later")) == (b"before", None)
    applied = agent.raft.applied_index
    bad = await client.put("/v1/snapshot", data=b"not a snapshot")
    assert bad.status == 400
    assert "failed to read snapshot archive" in await bad.text()
    assert agent.raft.applied_index == applied  # nothing reached raft


async def test_snapshot_with_bad_checksum_is_refused(client: Client, agent: AgentDouble) -> None:
    import gzip
    import io
    import tarfile

    from agent.http.archive import build_archive

    raw = gzip.decompress(build_archive(b"state", 3, 1))
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(raw)) as tar_in,
        tarfile.open(fileobj=buf, mode="w") as tar_out,
    ):
        for m in tar_in.getmembers():
            data = tar_in.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == "state.bin":
                data = b"STATE"
            tar_out.addfile(m, io.BytesIO(data))
    applied = agent.raft.applied_index
    resp = await client.put("/v1/snapshot", data=gzip.compress(buf.getvalue()))
    assert resp.status == 400
    assert await resp.text() == "checksum mismatch for state.bin in snapshot archive"
    assert agent.raft.applied_index == applied  # nothing reached raft


async def test_event_fire_and_list(client: Client, agent: AgentDouble) -> None:
    resp = await client.put("/v1/event/fire/sayhi?node=ceph.*", data=b"hello")
    assert resp.status == 200
    event = await resp.json()
    assert event["Name"] == "sayhi"
    assert event["NodeFilter"] == "ceph.*"
    assert base64.b64decode(event["Payload"]) == b"hello"
    # this agent is server1: an event for ceph.* reaches it but is not kept (Consul's
    # shouldProcessUserEvent), one for server.* is
    assert await (await client.get("/v1/event/list")).json() == []
    mine = await (await client.put("/v1/event/fire/sayhi?node=server.*", data=b"hi")).json()
    await client.put("/v1/event/fire/other")
    listed = await (await client.get("/v1/event/list?name=sayhi")).json()
    assert [e["ID"] for e in listed] == [mine["ID"]]
    too_big = await client.put("/v1/event/fire/big", data=b"x" * 513)
    assert too_big.status == 400
    everything = await (await client.get("/v1/event/list")).json()
    assert [e["Name"] for e in everything] == ["sayhi", "other"]


async def test_session_lifecycle(client: Client, agent: AgentDouble) -> None:
    resp = await client.put(
        "/v1/session/create", data=json.dumps({"TTL": "15s", "LockDelay": "5s"})
    )
    assert resp.status == 200
    sid = (await resp.json())["ID"]
    stored = agent.state.session_get(sid)[1]
    assert stored is not None
    assert stored["Node"] == "server1" and stored["TTL"] == "15s"
    assert stored["LockDelay"] == 5_000_000_000
    info = await (await client.get(f"/v1/session/info/{sid}")).json()
    assert info[0]["ID"] == sid
    assert len(await (await client.get("/v1/session/list")).json()) == 1
    renewed = await client.put(f"/v1/session/renew/{sid}")
    assert renewed.status == 200
    assert await (await client.put(f"/v1/session/destroy/{sid}")).json() is True
    gone = await client.put(f"/v1/session/renew/{sid}")
    assert gone.status == 404
    assert await gone.text() == f"Session id '{sid}' not found"
    bad = await client.put("/v1/session/create", data=b"{not json")
    assert bad.status == 400
    assert (await bad.text()).startswith("Request decode failed")
    bad = await client.put("/v1/session/create", data=json.dumps({"Behavior": "explode"}))
    assert bad.status == 400
    assert await bad.text() == "Invalid Behavior setting 'explode'"


async def test_catalog_health_and_coordinate_reads(client: Client, agent: AgentDouble) -> None:
    assert await (await client.get("/v1/catalog/datacenters")).json() == ["mydc"]
    resp = await client.get("/v1/catalog/nodes?index=3&wait=1s")
    nodes = await resp.json()
    # the leader registered both gossip members; Consul lists nodes sorted by name
    assert [n["Node"] for n in nodes] == ["ceph-debug", "server1"]
    index = int(resp.headers["X-Consul-Index"])
    assert index > 3  # so it answered at once
    start = time.monotonic()  # at the current index it blocks until the wait ends
    resp = await client.get(f"/v1/catalog/nodes?index={index}&wait=200ms")
    assert time.monotonic() - start >= 0.2 and resp.headers["X-Consul-Index"] == str(index)
    resp = await client.get("/v1/health/state/critical")
    assert resp.status == 200 and await resp.json() == []
    bad = await client.get("/v1/health/state/sad")
    assert bad.status == 400
    assert await bad.text() == "Invalid check state"
    assert await (await client.get("/v1/coordinate/nodes")).json() == []


async def test_txn_applies_and_reports_errors(client: Client, agent: AgentDouble) -> None:
    ops = [
        {"KV": {"Verb": "set", "Key": "t/a", "Value": base64.b64encode(b"1").decode()}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ]
    resp = await client.put("/v1/txn", data=json.dumps(ops))
    assert resp.status == 200
    body = await resp.json()
    assert body["Errors"] is None
    assert body["Results"][1]["KV"]["Key"] == "t/a"
    assert base64.b64decode(body["Results"][1]["KV"]["Value"]) == b"1"
    failed = await client.put("/v1/txn", data=json.dumps([{"KV": {"Verb": "get", "Key": "none"}}]))
    assert failed.status == 409
    # Consul's txn KV get: fmt.Errorf("key %q doesn't exist", key)
    assert (await failed.json())["Errors"] == [{"OpIndex": 0, "What": 'key "none" doesn\'t exist'}]
    too_many = await client.put("/v1/txn", data=json.dumps([ops[0]] * 65))
    assert too_many.status == 413
    assert await too_many.text() == "Transaction contains too many operations (65 > 64)"
    bad = await client.put("/v1/txn", data=json.dumps([{"KV": {"Verb": "frob"}}]))
    assert bad.status == 400


async def test_keyring_endpoint(client: Client, agent: AgentDouble) -> None:
    listed = await (await client.get("/v1/operator/keyring")).json()
    assert listed[1]["Keys"] == {"pUqJrVyVRj5jsiYEkM/tFQ==": 2}
    assert (await client.post("/v1/operator/keyring", data=json.dumps({"Key": "k2"}))).status == 200
    assert "k2" in agent.gossip.keys
    resp = await client.delete("/v1/operator/keyring", data=json.dumps({"Key": "nope"}))
    assert resp.status == 500
    assert "key not found" in await resp.text()
    bad = await client.post("/v1/operator/keyring", data=b"[]")
    assert bad.status == 400


async def test_unknown_path_is_404_and_pretty_json(client: Client) -> None:
    missing = await client.get("/v1/nothing/here")
    assert missing.status == 404
    assert await missing.text() == "Invalid URL path: not a recognized HTTP API endpoint\n"
    elsewhere = await client.get("/kv/x")
    assert (elsewhere.status, await elsewhere.text()) == (
        404,
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
    )
    # the root answers, any method, as Consul 1.x's index with the UI off
    for method in ("GET", "PUT", "HEAD"):
        root = await client.request(method, "/")
        assert root.status == 200, method
        assert root.content_type == "text/plain"
    assert (await (await client.get("/")).text()).startswith("Consul Agent: UI disabled. ")
    # a known path with the wrong method stays a 405
    assert (await client.get("/v1/agent/leave")).status == 405
    pretty = await (await client.get("/v1/status/peers?pretty")).text()
    assert pretty == '[\n    "10.12.10.37:8300"\n]'


#: /v1/agent/services of a service registered with a name and a port only
PLAIN_SERVICE = {
    "Tags": [],
    "Address": "",
    "Meta": {},
    "Weights": {"Passing": 1, "Warning": 1},
    "EnableTagOverride": False,
    "Datacenter": "mydc",  # the agent double's datacenter
}


async def test_agent_services_and_checks_from_the_local_registry(
    client: Client, agent: AgentDouble
) -> None:
    web = {"Name": "web", "Tags": ["v1"], "Port": 80, "Check": {"TTL": "30s"}}
    assert (await client.put("/v1/agent/service/register", data=json.dumps(web))).status == 200
    services = await (await client.get("/v1/agent/services")).json()
    assert list(services) == ["web"]  # Consul 1.x: the consul service is in the catalog only
    assert services["web"] == {**PLAIN_SERVICE, "ID": "web", "Service": "web", "Tags": ["v1"]} | {
        "Port": 80
    }
    checks = await (await client.get("/v1/agent/checks")).json()
    assert list(checks) == ["service:web"]
    check = checks["service:web"]
    assert (check["Status"], check["ServiceID"], check["ServiceName"]) == ("critical", "web", "web")
    assert "CreateIndex" not in check  # the agent's own record, not the catalog's
    assert (await client.put("/v1/agent/check/pass/service:web?note=ok")).status == 200
    check = (await (await client.get("/v1/agent/checks")).json())["service:web"]
    assert (check["Status"], check["Output"]) == ("passing", "ok")

    # anti-entropy brings them to the catalog
    async def synced() -> bool:
        resp = await client.get("/v1/health/service/web")
        nodes = await resp.json()
        return bool(nodes) and [c["Status"] for c in nodes[0]["Checks"]] == [
            "passing",
            "passing",
        ]

    deadline = time.monotonic() + 10
    while not await synced():
        assert time.monotonic() < deadline, "web was not synced to the catalog"
        await asyncio.sleep(0.02)
    assert (await client.put("/v1/agent/service/deregister/web")).status == 200
    assert await (await client.get("/v1/agent/services")).json() == {}
    assert await (await client.get("/v1/agent/checks")).json() == {}


async def test_agent_services_answer_without_a_leader() -> None:
    """The agent's own services and checks are its own: no server is asked."""
    async with http_client(AgentDouble(bootstrap=False)) as client:
        assert (await client.get("/v1/kv/k")).status == 500  # no leader indeed
        assert (await client.put("/v1/agent/service/register", data='{"Name": "a"}')).status == 200
        services = await (await client.get("/v1/agent/services")).json()
        assert services == {"a": {**PLAIN_SERVICE, "ID": "a", "Service": "a", "Port": 0}}
        assert await (await client.get("/v1/agent/checks")).json() == {}


async def test_txn_bad_fields_are_400_not_500(client: Client, agent: AgentDouble) -> None:
    for op in (
        {"KV": {"Verb": "set", "Key": "k", "Flags": "many"}},
        {"KV": {"Verb": "cas", "Key": "k", "Index": -1}},
        {"KV": {"Verb": "set", "Key": "k", "Value": "***"}},
        "not an object",
    ):
        resp = await client.put("/v1/txn", data=json.dumps([op]))
        assert resp.status == 400, op
        assert (await resp.text()).startswith("Failed to parse body"), op
    assert agent.state.kvs_list("")[1] == []


async def test_keyring_without_gossip_encryption_is_consuls_500(
    client: Client, agent: AgentDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every member answers a keyring query with serf's "encryption not enabled": each pool's
    Error is the key manager's "n/m nodes reported failure", and the endpoint (a list too)
    answers Consul's go-multierror text with a 500."""
    from agent.gossip.keyring import KeyringResponse, answer_keyring_query, parse_keyring_response

    def pool(op: str, wan: bool) -> dict[str, object]:
        node = "server1.mydc" if wan else "server1"
        ok, message, _ = parse_keyring_response(
            msgpack.packb(
                answer_keyring_query(None, f"{op}-key" if op != "list" else "list-keys", b"")
            )
        )
        resp = KeyringResponse(num_nodes=1, num_resp=1, num_err=0 if ok else 1)
        resp.messages[node] = message
        return {
            "WAN": wan,
            "Datacenter": "mydc",
            "Messages": dict(resp.messages),
            "Keys": {},
            "NumNodes": 1,
            "Error": resp.error,
        }

    async def keyring(op: str, key: str | None = None) -> list[dict[str, object]]:
        return [pool(op, True), pool(op, False)]

    monkeypatch.setattr(agent, "keyring", keyring)
    listed = await client.get("/v1/operator/keyring")
    assert (listed.status, await listed.text()) == (
        500,
        "4 errors occurred:\n"
        "\t* WAN error: 1/1 nodes reported failure\n"
        "\t* server1.mydc: Keyring is empty (encryption not enabled)\n"
        "\t* mydc (LAN) error: 1/1 nodes reported failure\n"
        "\t* server1: Keyring is empty (encryption not enabled)\n\n",
    )
    key = json.dumps({"Key": "8CooQRX1+VK7MsQQK6lx2LhumpSfQzUjE63HdAu2hgA="})
    for method in ("POST", "PUT", "DELETE"):
        resp = await client.request(method, "/v1/operator/keyring", data=key)
        assert resp.status == 500, method
        assert "\t* server1: No keyring to modify (encryption not enabled)\n" in await resp.text()
