"""A server whose raft store is lost while it is down (data.mdb cut to 0 bytes, or deleted)
rejoins without an operator: the leader repairs its log and it serves the data again."""

from __future__ import annotations

import json

import pytest
from harness import Cluster, Node, wait_for

pytestmark = pytest.mark.timeout(120)

IPS = ["127.18.1.1", "127.18.1.2", "127.18.1.3"]


def last_index(node: Node) -> int:
    stats = node.get_json("/v1/agent/self", timeout=3)["Stats"]["raft"]
    return int(stats["last_log_index"])


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_a_server_that_lost_its_store_catches_up(cluster: Cluster, how: str) -> None:
    nodes = [
        cluster.add(f"w{i + 1}", ip, server=True, bootstrap_expect=3, retry_join=[IPS[0]])
        for i, ip in enumerate(IPS)
    ]
    cluster.start_all()
    cluster.wait_http(nodes, timeout=30)
    leader_addr = cluster.wait_leader(nodes, timeout=30)
    leader = cluster.node_by_server_addr(leader_addr)
    victim = next(n for n in nodes if n is not leader)
    for i in range(30):
        assert leader.request("PUT", f"/v1/kv/before/{i}", b"v")[0] == 200
    wait_for(lambda: last_index(victim) >= last_index(leader), 15, "the victim caught up")
    victim.kill()
    store = victim.data_dir / "raft" / "data.mdb"
    assert store.exists()
    if how == "truncated":
        store.write_bytes(b"")
    else:
        store.unlink()
    for i in range(10):
        assert leader.request("PUT", f"/v1/kv/after/{i}", b"v")[0] == 200
    victim.start()
    target = last_index(leader)
    wait_for(lambda: last_index(victim) >= target, 30, "the repaired server's log")

    def served(key: str) -> bool:  # applied once the next heartbeat carries the commit index
        status, body, _ = victim.request("GET", f"/v1/kv/{key}?stale")
        return status == 200 and json.loads(body)[0]["Key"] == key

    wait_for(lambda: served("before/0") and served("after/9"), 10, "the victim serving the data")
    assert "lost its log" in leader.log_text()
