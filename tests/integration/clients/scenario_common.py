"""Scenarios shared by the python-consul 1.1.0 and py-consul 1.8.0 scripts: what users of these
libraries (Patroni, service registrars, lock helpers) do, each a group run on its own against a
fresh agent. Expected values are Consul 1.x's documented behaviour, never senate's answers.

Not a pytest module: `scenario_python_consul.py` / `scenario_py_consul.py` import it, with
PYTHONPATH pointing at one library's install dir (both libraries are the package `consul`).
A group raises AssertionError (or the library's exception) with a message saying what differs.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

T = Any
Group = Callable[["Ctx"], None]


class Ctx:
    """What a group needs: the library's `consul` module, where the agent is, its node name."""

    def __init__(self, consul: Any, lib: str, host: str, port: int, node: str) -> None:
        self.consul = consul
        self.lib = lib
        self.host = host
        self.port = port
        self.node = node

    @property
    def ip(self) -> str:
        return self.host

    @property
    def server_addr(self) -> str:
        return f"{self.host}:8300"

    def client(self, **kwargs: Any) -> Any:
        return self.consul.Consul(host=self.host, port=self.port, **kwargs)


def eventually(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `cond` until truthy; AssertionError naming `what` (and the last value) after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def eq(actual: Any, expected: Any, what: str) -> None:
    assert actual == expected, f"{what}: expected {expected!r}, got {actual!r}"


def raises(
    exc: type[BaseException] | tuple[type[BaseException], ...], fn: Callable[[], Any]
) -> str:
    try:
        got = fn()
    except exc as e:
        return str(e)
    raise AssertionError(f"expected {exc} to be raised, the call returned {got!r}")


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def duration_seconds(s: str) -> float:
    """A Go duration as Consul echoes TTLs ("15s", "15.0s", "1m0s")."""
    total = 0.0
    num = ""
    i = 0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    while i < len(s):
        ch = s[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = s[i : i + 2] if s[i : i + 2] in ("ms", "us", "ns") else ch
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    assert not num, f"duration {s!r} has no unit"
    return total


# ---- KV ------------------------------------------------------------------------------------


def kv_basic(ctx: Ctx) -> None:
    c = ctx.client()
    index, data = c.kv.get("kvb/missing")
    eq(data, None, "get of a missing key")
    assert int(index) > 0, f"X-Consul-Index of a 404 KV read must be > 0, got {index!r}"
    eq(c.kv.put("kvb/a", "1"), True, "put returns true")
    index, data = c.kv.get("kvb/a")
    eq(data["Key"], "kvb/a", "Key")
    eq(data["Value"], b"1", "Value (decoded)")
    eq(data["Flags"], 0, "Flags default")
    eq(data["LockIndex"], 0, "LockIndex of an unlocked key")
    eq(data["CreateIndex"], data["ModifyIndex"], "CreateIndex == ModifyIndex on first write")
    assert data.get("Session") in (None, ""), f"no Session on an unlocked key: {data!r}"
    assert int(index) >= data["ModifyIndex"], f"index {index} < ModifyIndex {data}"
    eq(c.kv.put("kvb/a", "2"), True, "overwrite")
    _, again = c.kv.get("kvb/a")
    eq(again["Value"], b"2", "overwritten value")
    eq(again["CreateIndex"], data["CreateIndex"], "CreateIndex kept on overwrite")
    assert again["ModifyIndex"] > data["ModifyIndex"], f"ModifyIndex must grow: {again}"
    packed = struct.pack("i", 1000)
    c.kv.put("kvb/binary", packed)
    eq(c.kv.get("kvb/binary")[1]["Value"], packed, "binary value round trip")
    c.kv.put("kvb/unicode", "żółw ☃")
    eq(c.kv.get("kvb/unicode")[1]["Value"].decode(), "żółw ☃", "UTF-8 value round trip")
    c.kv.put("kvb/with space/and+plus", "x")
    eq(c.kv.get("kvb/with space/and+plus")[1]["Value"], b"x", "key with space and plus")
    eq(c.kv.delete("kvb/a"), True, "delete returns true")
    eq(c.kv.get("kvb/a")[1], None, "deleted key reads as missing")
    eq(c.kv.delete("kvb/never-there"), True, "delete of a missing key is still true")


def kv_empty_and_flags(ctx: Ctx) -> None:
    c = ctx.client()
    # An empty body stores an empty value; Consul returns it as JSON null.
    eq(c.kv.put("kve/none", None), True, "put None")
    _, d = c.kv.get("kve/none")
    assert d is not None, "a key written with no value must exist"
    eq(d["Value"], None, "Value of a key written with an empty body")
    eq(c.kv.put("kve/empty", ""), True, "put empty string")
    eq(c.kv.get("kve/empty")[1]["Value"], None, 'Value of a key written with ""')
    eq(c.kv.put("kve/flags", "x", flags=42), True, "put with flags")
    eq(c.kv.get("kve/flags")[1]["Flags"], 42, "Flags")
    big = 2**64 - 1
    eq(c.kv.put("kve/bigflags", "x", flags=big), True, "put with flags 2^64-1")
    eq(c.kv.get("kve/bigflags")[1]["Flags"], big, "Flags are uint64")
    # Rewriting without ?flags resets them to 0 (the flags are part of each write).
    c.kv.put("kve/flags", "y")
    eq(c.kv.get("kve/flags")[1]["Flags"], 0, "Flags after a write without ?flags")


def kv_recurse_keys(ctx: Ctx) -> None:
    c = ctx.client()
    for k, v in (("kvr/a", "1"), ("kvr/b", "2"), ("kvr/c/d", "3"), ("kvr/c/e", "4")):
        c.kv.put(k, v)
    c.kv.put("kvr-sibling", "s")
    _, items = c.kv.get("kvr/", recurse=True)
    eq([i["Key"] for i in items], ["kvr/a", "kvr/b", "kvr/c/d", "kvr/c/e"], "recurse keys")
    eq([i["Value"] for i in items], [b"1", b"2", b"3", b"4"], "recurse values")
    _, keys = c.kv.get("kvr/", keys=True)
    eq(keys, ["kvr/a", "kvr/b", "kvr/c/d", "kvr/c/e"], "?keys")
    _, keys = c.kv.get("kvr/", keys=True, separator="/")
    eq(keys, ["kvr/a", "kvr/b", "kvr/c/"], "?keys&separator=/")
    _, keys = c.kv.get("kvr", keys=True)
    eq(keys, ["kvr-sibling", "kvr/a", "kvr/b", "kvr/c/d", "kvr/c/e"], "?keys on a bare prefix")
    _index, none = c.kv.get("kvr-none/", recurse=True)
    eq(none, None, "recurse on a prefix with no keys")
    eq(c.kv.delete("kvr/c/", recurse=True), True, "recursive delete of kvr/c/")
    _, keys = c.kv.get("kvr/", keys=True)
    eq(keys, ["kvr/a", "kvr/b"], "keys after deleting kvr/c/")
    eq(c.kv.delete("kvr/", recurse=True), True, "recursive delete of kvr/")
    eq(c.kv.get("kvr/", recurse=True)[1], None, "nothing left under kvr/")
    eq(c.kv.get("kvr-sibling")[1]["Value"], b"s", "a sibling outside the prefix survives")


def kv_cas(ctx: Ctx) -> None:
    c = ctx.client()
    eq(c.kv.put("kvc/k", "first", cas=0), True, "cas=0 on a new key creates it")
    eq(c.kv.put("kvc/k", "second", cas=0), False, "cas=0 on an existing key is refused")
    _, d = c.kv.get("kvc/k")
    eq(d["Value"], b"first", "value after a refused cas")
    eq(c.kv.put("kvc/k", "stale", cas=d["ModifyIndex"] + 1000), False, "cas with a wrong index")
    eq(c.kv.put("kvc/k", "second", cas=d["ModifyIndex"]), True, "cas with the ModifyIndex")
    _, d2 = c.kv.get("kvc/k")
    eq(d2["Value"], b"second", "value after cas")
    eq(c.kv.delete("kvc/k", cas=d["ModifyIndex"]), False, "delete cas with an old index")
    assert c.kv.get("kvc/k")[1] is not None, "a refused cas delete must keep the key"
    eq(c.kv.delete("kvc/k", cas=d2["ModifyIndex"]), True, "delete cas with the ModifyIndex")
    eq(c.kv.get("kvc/k")[1], None, "key gone after cas delete")


def _put_later(ctx: Ctx, key: str, value: str, delay: float = 0.3) -> None:
    time.sleep(delay)
    ctx.client().kv.put(key, value)


def kv_blocking(ctx: Ctx) -> None:
    c = ctx.client()
    c.kv.put("kvblk/k", "v0")
    index, _d = c.kv.get("kvblk/k")
    # No write happens: the query waits ~wait (plus at most wait/16 jitter) and returns the
    # same index.
    t0 = time.monotonic()
    index2, d2 = c.kv.get("kvblk/k", index=index, wait="1s")
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 4.0, f"a blocking query with wait=1s returned after {elapsed:.2f}s"
    eq(index2, index, "index after a blocking query that timed out")
    eq(d2["Value"], b"v0", "value after a timed-out blocking query")

    def write() -> None:
        time.sleep(0.5)
        ctx.client().kv.put("kvblk/k", "v1")

    t = threading.Thread(target=write)
    t.start()
    t0 = time.monotonic()
    index3, d3 = c.kv.get("kvblk/k", index=index, wait="15s")
    elapsed = time.monotonic() - t0
    t.join(10)
    assert 0.3 <= elapsed < 8.0, f"blocking query woken by a write returned after {elapsed:.2f}s"
    eq(d3["Value"], b"v1", "value after the wake-up")
    assert int(index3) > int(index), f"index must grow after a write: {index} -> {index3}"
    # Blocking on a key that does not exist yet wakes when it is created.
    index, missing = c.kv.get("kvblk/new")
    eq(missing, None, "not there yet")
    t = threading.Thread(target=_put_later, args=(ctx, "kvblk/new", "n"))
    t.start()
    t0 = time.monotonic()
    deadline = t0 + 8.0
    got = None
    while got is None and time.monotonic() < deadline:
        index, got = c.kv.get("kvblk/new", index=index, wait="5s")
    t.join(10)
    assert got is not None and got["Value"] == b"n", f"blocking wait on a new key: {got!r}"
    # A recurse blocking query on a prefix wakes for a write under it.
    index, _ = c.kv.get("kvblk/", recurse=True)
    t = threading.Thread(target=_put_later, args=(ctx, "kvblk/z", "z"))
    t.start()
    index4, items = c.kv.get("kvblk/", recurse=True, index=index, wait="10s")
    t.join(10)
    assert "kvblk/z" in [i["Key"] for i in items], f"recurse wake-up: {items!r}"
    assert int(index4) > int(index), "recurse index grows"


# ---- sessions and locks -------------------------------------------------------------------


def sessions(ctx: Ctx) -> None:
    c = ctx.client()
    sid = c.session.create(name="s1", ttl=15, behavior="delete", lock_delay=1, checks=[])
    assert isinstance(sid, str) and len(sid) == 36 and uuid.UUID(sid), f"session id {sid!r}"
    index, info = c.session.info(sid)
    assert info is not None, "session/info of a new session"
    eq(info["ID"], sid, "ID")
    eq(info["Name"], "s1", "Name")
    eq(info["Node"], ctx.node, "Node defaults to the agent's node")
    eq(info["Behavior"], "delete", "Behavior")
    eq(duration_seconds(info["TTL"]), 15.0, f"TTL ({info['TTL']!r})")
    eq(info["LockDelay"], 1_000_000_000, "LockDelay is a Go duration in nanoseconds")
    checks = list(info.get("Checks") or []) + list(info.get("NodeChecks") or [])
    eq(checks, [], "checks=[] takes out the default serfHealth check")
    assert int(index) > 0, "X-Consul-Index on session/info"
    _, listed = c.session.list()
    assert sid in [s["ID"] for s in listed], f"session/list has {sid}: {listed!r}"
    _, on_node = c.session.node(ctx.node)
    assert sid in [s["ID"] for s in on_node], f"session/node/{ctx.node} has {sid}"
    renewed = c.session.renew(sid)
    eq(renewed["ID"], sid, "renew returns the session")
    eq(duration_seconds(renewed["TTL"]), 15.0, "renewed TTL")
    eq(c.session.destroy(sid), True, "destroy returns true")
    eq(c.session.info(sid)[1], None, "info of a destroyed session")
    assert sid not in [s["ID"] for s in c.session.list()[1]], "destroyed session still listed"
    raises(ctx.consul.NotFound, lambda: c.session.renew(sid))
    eq(c.session.info(str(uuid.uuid4()))[1], None, "info of an unknown session")


def session_defaults(ctx: Ctx) -> None:
    c = ctx.client()
    sid = c.session.create()
    _, info = c.session.info(sid)
    eq(info["Behavior"], "release", "default Behavior")
    eq(info["LockDelay"], 15_000_000_000, "default LockDelay (15s, in ns)")
    eq(info["TTL"], "", "no TTL by default")
    checks = list(info.get("Checks") or []) + list(info.get("NodeChecks") or [])
    assert "serfHealth" in checks, f"default session checks include serfHealth: {info!r}"
    eq(info["Name"], "", "default Name")
    sid2 = c.session.create(name="named", checks=["serfHealth"], lock_delay=0)
    _, info2 = c.session.info(sid2)
    eq(info2["LockDelay"], 0, "lock_delay=0 (sent as '0s')")
    checks = list(info2.get("Checks") or []) + list(info2.get("NodeChecks") or [])
    assert "serfHealth" in checks, f"explicit serfHealth: {info2!r}"


def session_checks(ctx: Ctx) -> None:
    """A session tied to a service's check: refused while the check is critical, invalidated
    (its locks released) when the check turns critical."""
    c = ctx.client()
    Check = ctx.consul.Check
    c.agent.service.register("sess-svc", service_id="sess-svc1", port=7000, check=Check.ttl("30s"))
    cid = "service:sess-svc1"
    eventually(
        lambda: cid in [x["CheckID"] for x in c.health.node(ctx.node)[1]],
        10,
        "the service check in the catalog",
    )
    msg = raises(
        ctx.consul.ConsulException,
        lambda: c.session.create(checks=["serfHealth", cid]),
    )
    assert "critical" in msg, f"refusal names the critical check: {msg!r}"
    c.agent.check.ttl_pass(cid)
    eventually(
        lambda: (
            [x["Status"] for x in c.health.node(ctx.node)[1] if x["CheckID"] == cid] == ["passing"]
        ),
        10,
        "the service check passing in the catalog",
    )
    sid = c.session.create(checks=["serfHealth", cid], lock_delay=0)
    eq(c.kv.put("sc/lock", "me", acquire=sid), True, "acquire with a check-bound session")
    c.agent.check.ttl_fail(cid)
    eventually(lambda: c.session.info(sid)[1] is None, 10, "the session invalidated")
    _, d = c.kv.get("sc/lock")
    assert d.get("Session") in (None, ""), f"lock released on invalidation: {d!r}"


def lock(ctx: Ctx) -> None:
    c = ctx.client()
    s1 = c.session.create(name="one", lock_delay=0)
    s2 = c.session.create(name="two", lock_delay=0)
    eq(c.kv.put("lk/a", "s1", acquire=s1), True, "acquire a free lock")
    _, d = c.kv.get("lk/a")
    eq(d["Session"], s1, "Session of the holder")
    eq(d["LockIndex"], 1, "LockIndex after the first acquire")
    eq(d["Value"], b"s1", "value written with acquire")
    eq(c.kv.put("lk/a", "s2", acquire=s2), False, "acquire of a held lock")
    eq(c.kv.get("lk/a")[1]["Value"], b"s1", "value unchanged by a refused acquire")
    eq(c.kv.put("lk/a", "s1b", acquire=s1), True, "the holder re-acquires")
    _, d = c.kv.get("lk/a")
    eq((d["Value"], d["LockIndex"]), (b"s1b", 1), "re-acquire updates value, not LockIndex")
    eq(c.kv.put("lk/a", "x", release=s2), False, "release by a non-holder")
    eq(c.kv.put("lk/a", "rel", release=s1), True, "release by the holder")
    _, d = c.kv.get("lk/a")
    assert d.get("Session") in (None, ""), f"no Session after release: {d!r}"
    eq((d["Value"], d["LockIndex"]), (b"rel", 1), "value and LockIndex after release")
    eq(c.kv.put("lk/a", "s2", acquire=s2), True, "acquire after release")
    eq(c.kv.get("lk/a")[1]["LockIndex"], 2, "LockIndex counts acquisitions")
    c.session.destroy(s2)
    _, d = c.kv.get("lk/a")
    assert d is not None, "behavior=release keeps the key when the session goes"
    assert d.get("Session") in (None, ""), f"lock freed when its session is destroyed: {d!r}"
    s3 = c.session.create(behavior="delete", lock_delay=0)
    eq(c.kv.put("lk/ephemeral", "e", acquire=s3), True, "acquire with behavior=delete")
    c.session.destroy(s3)
    eq(c.kv.get("lk/ephemeral")[1], None, "behavior=delete deletes the key with the session")
    raises(
        ctx.consul.ConsulException,
        lambda: c.kv.put("lk/b", "x", acquire=str(uuid.uuid4())),
    )
    eq(c.kv.get("lk/b")[1], None, "no key written by an acquire with an unknown session")


def lock_delay(ctx: Ctx) -> None:
    c = ctx.client()
    holder = c.session.create(lock_delay=3)
    other = c.session.create(lock_delay=0)
    eq(c.kv.put("ld/k", "h", acquire=holder), True, "acquire")
    c.session.destroy(holder)  # an invalidation: the lock-delay applies
    eq(c.kv.put("ld/k", "o", acquire=other), False, "acquire inside the lock-delay window")
    eventually(
        lambda: c.kv.put("ld/k", "o", acquire=other), 8, "acquire once the lock-delay has passed"
    )
    # An explicit release is not an invalidation: no lock-delay.
    holder2 = c.session.create(lock_delay=10)
    eq(c.kv.put("ld/k2", "h", acquire=holder2), True, "acquire k2")
    eq(c.kv.put("ld/k2", "h", release=holder2), True, "release k2")
    eq(c.kv.put("ld/k2", "o", acquire=other), True, "acquire right after a release")


def patroni(ctx: Ctx) -> None:
    """Patroni's Consul DCS: a TTL session without node checks, behavior=delete, a 1 ms
    lock-delay; leader and member keys acquired with it; reads with ?consistent; renew."""
    c = ctx.client(consistency="consistent")
    base = "service/pg-demo/"
    sid = c.session.create(
        name="pg-demo-node1", checks=[], lock_delay=0.001, behavior="delete", ttl=15.0
    )
    _, info = c.session.info(sid)
    eq(info["LockDelay"], 1_000_000, "lock_delay=0.001 ('0.001s') is 1 ms")
    eq(duration_seconds(info["TTL"]), 15.0, f"TTL 15.0s ({info['TTL']!r})")
    eq(c.kv.put(base + "initialize", "7001", cas=0), True, "initialize key with cas=0")
    eq(c.kv.put(base + "initialize", "7002", cas=0), False, "a second initialize is refused")
    cfg = json.dumps({"ttl": 30, "loop_wait": 10})
    eq(c.kv.put(base + "config", cfg, cas=0), True, "config")
    member = json.dumps({"conn_url": "postgres://127.0.0.1:5432/postgres", "role": "master"})
    eq(c.kv.put(base + "members/node1", member, acquire=sid), True, "member key")
    eq(c.kv.put(base + "leader", "node1", acquire=sid), True, "take the leader key")
    c.kv.put(base + "optime/leader", "67108960")
    index, items = c.kv.get(base, recurse=True, consistency="consistent")
    by_key = {i["Key"]: i for i in items}
    eq(
        sorted(by_key),
        [base + k for k in ("config", "initialize", "leader", "members/node1", "optime/leader")],
        "the cluster's keys",
    )
    eq(by_key[base + "leader"]["Session"], sid, "leader key held by our session")
    eq(by_key[base + "leader"]["Value"], b"node1", "leader value")
    eq(json.loads(by_key[base + "members/node1"]["Value"])["role"], "master", "member data")
    _, leader = c.kv.get(base + "leader", consistency="stale")
    eq(leader["Session"], sid, "leader read with ?stale")
    renewed = c.session.renew(sid)
    eq(renewed["ID"], sid, "renew")
    # A second member cannot take the leader key while the session lives.
    sid2 = c.session.create(
        name="pg-demo-node2", checks=[], lock_delay=0.001, behavior="delete", ttl=15.0
    )
    eq(c.kv.put(base + "leader", "node2", acquire=sid2), False, "node2 cannot take the lock")
    # Watching the leader key (Patroni's loop_wait): a blocking read returns on timeout.
    t0 = time.monotonic()
    _index2, _ = c.kv.get(base + "leader", index=index, wait="1s")
    assert time.monotonic() - t0 < 5, "blocking read of the leader key"
    # Config update with cas on its ModifyIndex.
    cfg_item = by_key[base + "config"]
    new_cfg = json.dumps({"ttl": 30, "loop_wait": 5})
    eq(c.kv.put(base + "config", new_cfg, cas=cfg_item["ModifyIndex"]), True, "config cas")
    # Patroni's delete_leader: a cas delete of the leader key at its ModifyIndex.
    _, leader = c.kv.get(base + "leader")
    eq(c.kv.delete(base + "leader", cas=leader["ModifyIndex"]), True, "delete the leader key")
    eq(c.kv.put(base + "leader", "node2", acquire=sid2), True, "node2 takes the free key")
    # The first node's session dies: its member key (behavior=delete) goes with it.
    c.session.destroy(sid)
    _, items = c.kv.get(base, recurse=True)
    keys = sorted(i["Key"] for i in items)
    assert base + "members/node1" not in keys, f"ephemeral member key deleted: {keys}"
    assert base + "leader" in keys, "node2's leader key stays"


def session_ttl_expiry(ctx: Ctx) -> None:
    """A TTL session that is not renewed is invalidated no sooner than its TTL (Consul allows
    up to twice the TTL); one renewed in time lives on."""
    c = ctx.client()
    dying = c.session.create(ttl=10, behavior="delete", checks=[], lock_delay=0)
    kept = c.session.create(ttl=10, behavior="delete", checks=[], lock_delay=0)
    t0 = time.monotonic()
    eq(c.kv.put("ttl/dying", "x", acquire=dying), True, "acquire (dying)")
    eq(c.kv.put("ttl/kept", "x", acquire=kept), True, "acquire (kept)")
    gone_at = None
    last_renew = t0
    while time.monotonic() - t0 < 30:
        if time.monotonic() - last_renew > 3:
            c.session.renew(kept)
            last_renew = time.monotonic()
        if c.kv.get("ttl/dying")[1] is None:
            gone_at = time.monotonic() - t0
            break
        time.sleep(0.2)
    assert gone_at is not None, "the unrenewed TTL session was never invalidated (30s)"
    assert gone_at >= 9.5, f"invalidated after {gone_at:.1f}s, before its 10s TTL"
    assert gone_at <= 25, f"invalidated only after {gone_at:.1f}s (TTL 10s, at most 2x)"
    eq(c.session.info(dying)[1], None, "the expired session is gone")
    assert c.kv.get("ttl/kept")[1] is not None, "the renewed session's key survives"
    assert c.session.info(kept)[1] is not None, "the renewed session survives"


# ---- agent, health, catalog -----------------------------------------------------------------


def agent_info(ctx: Ctx) -> None:
    c = ctx.client()
    me = c.agent.self()
    # Consul 1.x's sections; no "xDS": Consul has it only while its gRPC (Envoy xDS) server
    # listens, and senate has none (ports.grpc is accepted with a no-effect warning)
    eq(
        set(me),
        {"Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"},
        "agent/self sections",
    )
    eq(me["Config"]["NodeName"], ctx.node, "Config.NodeName")
    eq(me["Config"]["Datacenter"], "dc1", "Config.Datacenter")
    eq(me["Config"]["Server"], True, "Config.Server of a -dev agent")
    eq(me["Member"]["Name"], ctx.node, "Member.Name")
    eq(me["Member"]["Addr"], ctx.ip, "Member.Addr")
    members = c.agent.members()
    eq([m["Name"] for m in members], [ctx.node], "agent/members names")
    m = members[0]
    eq((m["Addr"], m["Port"], m["Status"]), (ctx.ip, 8301, 1), "LAN member Addr/Port/Status")
    eq((m["Tags"]["role"], m["Tags"]["dc"]), ("consul", "dc1"), "member tags role/dc")
    wan = c.agent.members(wan=True)
    eq([w["Name"] for w in wan], [f"{ctx.node}.dc1"], "WAN member name is node.dc")
    eq(wan[0]["Port"], 8302, "WAN port")
    eq(c.agent.services().get("nope"), None, "agent/services is a dict")
    assert isinstance(c.agent.checks(), dict), "agent/checks is a dict"
    # force-leave of a node no pool knows: Consul 1.x's 500, never a silent success.
    # python-consul 1.1.0 still sends it as a GET, which Consul 1.x (and senate) answer 405.
    text = raises(ctx.consul.ConsulException, lambda: c.agent.force_leave("no-such-node"))
    if ctx.lib == "python-consul":
        assert "method GET not allowed" in text, text
    else:
        assert "agent: No node found with name 'no-such-node'" in text, text


def agent_local_state(ctx: Ctx) -> None:
    """What the agent itself holds in 1.x: only what was registered with it. The consul service
    and serfHealth are the leader's catalog entries, not the agent's; agent/services fills in
    Tags [], Meta {} and the default Weights."""
    c = ctx.client()
    eq(sorted(c.agent.services()), [], "agent/services of a fresh -dev agent (no 'consul')")
    eq(sorted(c.agent.checks()), [], "agent/checks of a fresh -dev agent (no serfHealth)")
    c.agent.service.register("plain", service_id="plain1", port=1234)
    svc = c.agent.services()["plain1"]
    eq(svc["Tags"], [], "Tags of a service registered without tags")
    eq(svc["Meta"], {}, "Meta of a service registered without meta")
    eq(svc["Weights"], {"Passing": 1, "Warning": 1}, "default Weights")
    eq(svc["EnableTagOverride"], False, "EnableTagOverride")


def agent_service_ttl(ctx: Ctx) -> None:
    c = ctx.client()
    Check = ctx.consul.Check
    ok = c.agent.service.register(
        "web",
        service_id="web1",
        address="127.0.0.1",
        port=8080,
        tags=["v1"],
        check=Check.ttl("10s"),
    )
    eq(ok, True, "service register")
    svc = c.agent.services()["web1"]
    eq(
        (svc["ID"], svc["Service"], svc["Tags"], svc["Address"], svc["Port"]),
        ("web1", "web", ["v1"], "127.0.0.1", 8080),
        "agent/services entry",
    )
    chk = c.agent.checks()["service:web1"]
    eq(chk["Status"], "critical", "a new TTL check starts critical")
    eq((chk["ServiceID"], chk["ServiceName"]), ("web1", "web"), "check's service")
    eq(chk["Node"], ctx.node, "check's Node")
    eq(c.agent.check.ttl_pass("service:web1", "all good"), True, "ttl_pass")
    chk = c.agent.checks()["service:web1"]
    eq((chk["Status"], chk["Output"]), ("passing", "all good"), "after ttl_pass")
    eq(c.agent.check.ttl_warn("service:web1", "hmm"), True, "ttl_warn")
    eq(c.agent.checks()["service:web1"]["Status"], "warning", "after ttl_warn")
    eq(c.agent.check.ttl_fail("service:web1", "down"), True, "ttl_fail")
    eq(c.agent.checks()["service:web1"]["Status"], "critical", "after ttl_fail")
    # An unknown check ID is an error: 404 "Unknown check ID" (Consul >= 1.9; the client's
    # False) or 500 "does not have associated TTL" (older; the client raises).
    try:
        unknown = c.agent.check.ttl_pass("no-such-check")
    except ctx.consul.ConsulException:
        unknown = False
    eq(unknown, False, "ttl_pass of an unknown check ID")
    # A standalone TTL check, with notes.
    eq(
        c.agent.check.register("mem", Check.ttl("30s"), check_id="mem1", notes="memory"),
        True,
        "check register",
    )
    mem = c.agent.checks()["mem1"]
    eq((mem["Name"], mem["Notes"], mem["Status"]), ("mem", "memory", "critical"), "mem1")
    eq(mem["ServiceID"], "", "a node check has no ServiceID")
    eq(c.agent.check.deregister("mem1"), True, "check deregister")
    assert "mem1" not in c.agent.checks(), "deregistered check gone"
    # The registration reaches the catalog (anti-entropy).
    eventually(
        lambda: [s["ServiceID"] for s in c.catalog.service("web")[1]] == ["web1"],
        10,
        "web1 in catalog/service/web",
    )
    eq(c.agent.service.deregister("web1"), True, "service deregister")
    assert "web1" not in c.agent.services(), "deregistered service gone"
    assert "service:web1" not in c.agent.checks(), "its check goes with it"
    eventually(lambda: c.catalog.service("web")[1] == [], 10, "web1 gone from the catalog")


def agent_maintenance(ctx: Ctx) -> None:
    c = ctx.client()
    c.agent.service.register("maint", service_id="maint1", port=9000)
    eq(c.agent.maintenance(True, "upgrading"), True, "node maintenance on")
    chk = c.agent.checks()["_node_maintenance"]
    eq((chk["Status"], chk["Notes"]), ("critical", "upgrading"), "_node_maintenance check")
    eventually(
        lambda: c.health.service("maint", passing=True)[1] == [],
        10,
        "no passing instance while the node is in maintenance",
    )
    eq(c.agent.maintenance(False), True, "node maintenance off")
    assert "_node_maintenance" not in c.agent.checks(), "maintenance check removed"
    eq(c.agent.service.maintenance("maint1", True, "fixing"), True, "service maintenance on")
    chk = c.agent.checks()["_service_maintenance:maint1"]
    eq((chk["Status"], chk["ServiceID"]), ("critical", "maint1"), "service maintenance check")
    eq(chk["Notes"], "fixing", "service maintenance reason")
    eq(c.agent.service.maintenance("maint1", False), True, "service maintenance off")
    assert "_service_maintenance:maint1" not in c.agent.checks(), "service maint check removed"
    eventually(
        lambda: (
            [e["Service"]["ID"] for e in c.health.service("maint", passing=True)[1]] == ["maint1"]
        ),
        10,
        "passing again after maintenance",
    )


def health(ctx: Ctx) -> None:
    c = ctx.client()
    Check = ctx.consul.Check
    c.agent.service.register("api", service_id="api1", port=81, tags=["v1"], check=Check.ttl("30s"))
    c.agent.service.register("api", service_id="api2", port=82, tags=["v2"], check=Check.ttl("30s"))
    c.agent.check.ttl_pass("service:api1")

    def passing_ids() -> list[str]:
        return sorted(e["Service"]["ID"] for e in c.health.service("api", passing=True)[1])

    eventually(lambda: passing_ids() == ["api1"], 10, "?passing returns only api1")
    index, entries = c.health.service("api")
    eq(sorted(e["Service"]["ID"] for e in entries), ["api1", "api2"], "all instances")
    e1 = next(e for e in entries if e["Service"]["ID"] == "api1")
    eq((e1["Node"]["Node"], e1["Node"]["Address"]), (ctx.node, ctx.ip), "entry Node")
    eq((e1["Service"]["Service"], e1["Service"]["Port"]), ("api", 81), "entry Service")
    eq(e1["Service"]["Tags"], ["v1"], "entry Service.Tags")
    eq(
        sorted(x["CheckID"] for x in e1["Checks"]),
        ["serfHealth", "service:api1"],
        "entry Checks: the node's and the service's",
    )
    _, v2 = c.health.service("api", tag="v2")
    eq([e["Service"]["ID"] for e in v2], ["api2"], "?tag=v2")
    eq(c.health.service("api", tag="v2", passing=True)[1], [], "?tag=v2&passing")
    eq(c.health.service("no-such-service")[1], [], "unknown service: empty list")
    _, checks = c.health.checks("api")
    eq(sorted(x["CheckID"] for x in checks), ["service:api1", "service:api2"], "health/checks")
    _, crit = c.health.state("critical")
    eq([x["CheckID"] for x in crit], ["service:api2"], "health/state/critical")
    _, passing = c.health.state("passing")
    ids = sorted(x["CheckID"] for x in passing)
    eq(ids, ["serfHealth", "service:api1"], "health/state/passing")
    _, anyc = c.health.state("any")
    eq(len(anyc), 3, "health/state/any")
    _, node_checks = c.health.node(ctx.node)
    serf = [x for x in node_checks if x["CheckID"] == "serfHealth"]
    eq([x["Status"] for x in serf], ["passing"], "health/node serfHealth")
    # A blocking health query wakes when a check changes.
    index, _ = c.health.service("api", passing=True)

    def flip() -> None:
        time.sleep(0.3)
        ctx.client().agent.check.ttl_pass("service:api2")

    t = threading.Thread(target=flip)
    t.start()
    deadline = time.monotonic() + 10
    ids = []
    while time.monotonic() < deadline and ids != ["api1", "api2"]:
        index, entries = c.health.service("api", passing=True, index=index, wait="5s")
        ids = sorted(e["Service"]["ID"] for e in entries)
    t.join(10)
    eq(ids, ["api1", "api2"], "blocking ?passing query sees api2 turn passing")


def catalog_read(ctx: Ctx) -> None:
    c = ctx.client()
    eq(c.catalog.datacenters(), ["dc1"], "catalog/datacenters")
    index, nodes = c.catalog.nodes()
    assert int(index) > 0, "X-Consul-Index of catalog/nodes"
    eq([(n["Node"], n["Address"]) for n in nodes], [(ctx.node, ctx.ip)], "catalog/nodes")
    _, services = eventually(
        lambda: (r := c.catalog.services()) and "consul" in r[1] and r, 10, "the consul service"
    )
    eq(services, {"consul": []}, "catalog/services of a fresh -dev agent")
    _, consul_svc = c.catalog.service("consul")
    eq(len(consul_svc), 1, "one consul instance")
    s = consul_svc[0]
    eq((s["Node"], s["Address"]), (ctx.node, ctx.ip), "consul instance node")
    eq((s["ServiceID"], s["ServiceName"], s["ServicePort"]), ("consul", "consul", 8300), "consul")
    _, node = c.catalog.node(ctx.node)
    eq(node["Node"]["Node"], ctx.node, "catalog/node Node")
    eq(node["Node"]["Address"], ctx.ip, "catalog/node Address")
    assert "consul" in node["Services"], f"catalog/node Services: {node['Services']!r}"
    eq(c.catalog.node("no-such-node")[1], None, "catalog/node of an unknown node")
    eq(c.catalog.service("no-such-service")[1], [], "catalog/service of an unknown service")


def catalog_register(ctx: Ctx) -> None:
    c = ctx.client()
    ok = c.catalog.register(
        "ext1",
        "127.77.200.1",
        service={"Service": "db", "ID": "db1", "Port": 5432, "Tags": ["primary"]},
        check={
            "Node": "ext1",
            "CheckID": "db-alive",
            "Name": "db alive",
            "Status": "passing",
            "ServiceID": "db1",
        },
    )
    eq(ok, True, "catalog/register")
    _, nodes = c.catalog.nodes()
    eq(sorted(n["Node"] for n in nodes), sorted([ctx.node, "ext1"]), "nodes with ext1")
    _, db = c.catalog.service("db")
    eq(len(db), 1, "one db instance")
    d = db[0]
    eq(
        (d["Node"], d["Address"], d["ServiceID"], d["ServiceName"], d["ServicePort"]),
        ("ext1", "127.77.200.1", "db1", "db", 5432),
        "catalog/service/db",
    )
    eq(d["ServiceTags"], ["primary"], "ServiceTags")
    eq([x["ServiceID"] for x in c.catalog.service("db", tag="primary")[1]], ["db1"], "?tag")
    eq(c.catalog.service("db", tag="replica")[1], [], "?tag with no match")
    _, services = c.catalog.services()
    eq(services.get("db"), ["primary"], "catalog/services has db's tags")
    _, node = c.catalog.node("ext1")
    eq(node["Node"]["Address"], "127.77.200.1", "catalog/node/ext1 Address")
    eq(list(node["Services"]), ["db1"], "catalog/node/ext1 Services")
    eq(node["Services"]["db1"]["Port"], 5432, "catalog/node Services Port")
    _, healthy = c.health.service("db", passing=True)
    eq([e["Service"]["ID"] for e in healthy], ["db1"], "health of the registered check")
    eq([x["CheckID"] for x in healthy[0]["Checks"]], ["db-alive"], "only ext1's own check")
    eq(c.catalog.deregister("ext1", service_id="db1"), True, "deregister the service")
    eq(c.catalog.service("db")[1], [], "db gone")
    _, node = c.catalog.node("ext1")
    eq(node["Services"], {}, "ext1 has no services left")
    eq(c.catalog.deregister("ext1"), True, "deregister the node")
    eq(c.catalog.node("ext1")[1], None, "ext1 gone")
    eq([n["Node"] for n in c.catalog.nodes()[1]], [ctx.node], "back to one node")


def register_with_meta(ctx: Ctx, node: str, address: str, service: dict, meta: dict) -> None:
    """catalog/register with NodeMeta in the body, as Consul reads it: python-consul 1.1.0
    has no node_meta argument, and py-consul's sends it as ?node-meta=, which Consul's
    register ignores too, so its users PUT the body themselves."""
    body = {"Node": node, "Address": address, "Service": service, "NodeMeta": meta}
    req = urllib.request.Request(
        f"http://{ctx.host}:{ctx.port}/v1/catalog/register",
        data=json.dumps(body).encode(),
        method="PUT",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        ok = json.loads(resp.read())
    eq(ok, True, f"catalog/register {node} with NodeMeta")


def node_meta(ctx: Ctx) -> None:
    c = ctx.client()
    cache1 = {"Service": "cache", "ID": "cache1", "Port": 6379}
    register_with_meta(ctx, "rack1-node", "127.77.200.2", cache1, {"rack": "r1", "env": "test"})
    cache2 = {"Service": "cache", "ID": "cache2", "Port": 6379}
    register_with_meta(ctx, "rack2-node", "127.77.200.3", cache2, {"rack": "r2", "env": "test"})
    _, r1 = c.catalog.nodes(node_meta={"rack": "r1"})
    eq([n["Node"] for n in r1], ["rack1-node"], "catalog/nodes?node-meta=rack:r1")
    eq(r1[0]["Meta"], {"rack": "r1", "env": "test"}, "node Meta")
    _, both = c.catalog.nodes(node_meta={"env": "test"})
    eq(sorted(n["Node"] for n in both), ["rack1-node", "rack2-node"], "node-meta=env:test")
    _, none = c.catalog.nodes(node_meta={"rack": "r9"})
    eq(none, [], "node-meta with no match")
    _, svcs = c.catalog.services(node_meta={"rack": "r2"})
    eq(svcs, {"cache": []}, "catalog/services?node-meta=rack:r2")
    _, h = c.health.service("cache", node_meta={"rack": "r2"})
    eq([e["Service"]["ID"] for e in h], ["cache2"], "health/service?node-meta=rack:r2")
    _, h = c.health.service("cache")
    eq(sorted(e["Service"]["ID"] for e in h), ["cache1", "cache2"], "both without node-meta")


# ---- events, txn, status, coordinates, operator ----------------------------------------------


def events(ctx: Ctx) -> None:
    c = ctx.client()
    fired = c.event.fire("deploy", "v1")
    eq(fired["Name"], "deploy", "fire returns the event")
    assert uuid.UUID(fired["ID"]), f"event ID {fired['ID']!r}"
    eq(fired["Payload"], b64("v1"), "fire response Payload (base64)")
    eq(fired["Version"], 1, "event Version")
    c.event.fire("other", "x")
    c.event.fire("targeted", "t", node="^no-such-node$")
    c.event.fire("marker", "m")

    def listed() -> Any:
        _, evs = c.event.list()
        names = [e["Name"] for e in evs]
        return "marker" in names and evs

    evs = eventually(listed, 10, "the marker event listed")
    names = [e["Name"] for e in evs]
    assert "deploy" in names and "other" in names, f"event/list names: {names}"
    assert "targeted" not in names, "an event filtered to another node is not stored here"
    dep = next(e for e in evs if e["Name"] == "deploy")
    eq(dep["ID"], fired["ID"], "listed event ID")
    eq(dep["Payload"], b"v1", "listed Payload (decoded by the client)")
    assert dep["LTime"] > 0, "listed event LTime"
    index, only = c.event.list(name="deploy")
    eq([e["Name"] for e in only], ["deploy"], "event/list?name=deploy")
    assert int(index) != 0, f"event/list X-Consul-Index: {index!r}"


def txn(ctx: Ctx) -> None:
    c = ctx.client()
    r = c.txn.put(
        [
            {"KV": {"Verb": "set", "Key": "tx/a", "Value": b64("1")}},
            {"KV": {"Verb": "set", "Key": "tx/b", "Value": b64("2"), "Flags": 7}},
        ]
    )
    eq(r.get("Errors"), None, "no Errors")
    eq([x["KV"]["Key"] for x in r["Results"]], ["tx/a", "tx/b"], "Results keys")
    eq([x["KV"]["Value"] for x in r["Results"]], [None, None], "a set's result has no Value")
    eq(c.kv.get("tx/b")[1]["Flags"], 7, "flags set by txn")
    r = c.txn.put([{"KV": {"Verb": "get", "Key": "tx/a"}}])
    eq(r["Results"][0]["KV"]["Value"], b64("1"), "txn get returns the base64 value")
    a = c.kv.get("tx/a")[1]
    r = c.txn.put(
        [
            {"KV": {"Verb": "cas", "Key": "tx/a", "Value": b64("3"), "Index": a["ModifyIndex"]}},
            {"KV": {"Verb": "delete", "Key": "tx/b"}},
        ]
    )
    # A delete yields no result entry; only the cas does.
    eq([x["KV"]["Key"] for x in r["Results"]], ["tx/a"], "cas + delete results")
    eq(c.kv.get("tx/a")[1]["Value"], b"3", "cas in txn")
    eq(c.kv.get("tx/b")[1], None, "delete in txn")
    # A failing operation rolls the whole transaction back (409 with Errors).
    msg = raises(
        ctx.consul.ConsulException,
        lambda: c.txn.put(
            [
                {"KV": {"Verb": "set", "Key": "tx/c", "Value": b64("c")}},
                {"KV": {"Verb": "cas", "Key": "tx/a", "Value": b64("x"), "Index": 1}},
            ]
        ),
    )
    assert "409" in msg and "Errors" in msg, f"a failed txn is a 409 with Errors: {msg!r}"
    body = json.loads(msg.split(" ", 1)[1])
    eq([e["OpIndex"] for e in body["Errors"]], [1], "Errors name the failing OpIndex")
    eq(c.kv.get("tx/c")[1], None, "rolled back: tx/c not written")
    eq(c.kv.get("tx/a")[1]["Value"], b"3", "rolled back: tx/a unchanged")


def status(ctx: Ctx) -> None:
    c = ctx.client()
    eq(c.status.leader(), ctx.server_addr, "status/leader")
    eq(c.status.peers(), [ctx.server_addr], "status/peers")


def coordinates(ctx: Ctx) -> None:
    c = ctx.client()
    dcs = c.coordinate.datacenters()
    eq({d["Datacenter"] for d in dcs}, {"dc1"}, "coordinate/datacenters")
    # One entry per network area: the WAN (servers as node.dc); Consul >= 1.8 also lists the
    # LAN area (short node names).
    wan = [d for d in dcs if d["AreaID"] == "wan"]
    eq(len(wan), 1, f"one WAN area entry: {dcs!r}")
    coords = wan[0]["Coordinates"]
    eq([x["Node"] for x in coords], [f"{ctx.node}.dc1"], "WAN coordinates of the server")
    for lan in (d for d in dcs if d["AreaID"] == "lan"):
        eq([x["Node"] for x in lan["Coordinates"]], [ctx.node], "LAN area coordinates")
    vec = coords[0]["Coord"]
    assert {"Vec", "Error", "Adjustment", "Height"} <= set(vec), f"Coord fields: {vec!r}"
    eq(len(vec["Vec"]), 8, "Vivaldi coordinate dimensionality")
    index, nodes = c.coordinate.nodes()
    assert isinstance(nodes, list), f"coordinate/nodes is a list: {nodes!r}"
    assert int(index) >= 0, "coordinate/nodes index"


def operator(ctx: Ctx) -> None:
    c = ctx.client()
    cfg = c.operator.raft_config()
    servers = cfg["Servers"]
    eq(len(servers), 1, "one raft server")
    s = servers[0]
    eq((s["Node"], s["Address"]), (ctx.node, ctx.server_addr), "raft server Node/Address")
    eq((s["Leader"], s["Voter"]), (True, True), "raft server Leader/Voter")
    # Consul 1.x (raft protocol 3): the server's ID is its node ID; Index is always 0
    eq(s["ID"], c.agent.self()["Config"]["NodeID"], "raft server ID is the node ID")
    eq(s["ProtocolVersion"], "3", "raft server ProtocolVersion")
    eq(cfg["Index"], 0, "raft configuration Index")
    if hasattr(c.operator, "keyring_list"):  # py-consul: no gossip encryption, Consul's 500s
        text = raises(ctx.consul.ConsulException, c.operator.keyring_list)
        assert "WAN error: 1/1 nodes reported failure" in text, text
        assert "Keyring is empty (encryption not enabled)" in text, text
        key = "8CooQRX1+VK7MsQQK6lx2LhumpSfQzUjE63HdAu2hgA="
        text = raises(ctx.consul.ConsulException, lambda: c.operator.keyring_install(key=key))
        assert "No keyring to modify (encryption not enabled)" in text, text


COMMON: dict[str, Group] = {
    "kv_basic": kv_basic,
    "kv_empty_and_flags": kv_empty_and_flags,
    "kv_recurse_keys": kv_recurse_keys,
    "kv_cas": kv_cas,
    "kv_blocking": kv_blocking,
    "sessions": sessions,
    "session_defaults": session_defaults,
    "session_checks": session_checks,
    "lock": lock,
    "lock_delay": lock_delay,
    "patroni": patroni,
    "session_ttl_expiry": session_ttl_expiry,
    "agent_info": agent_info,
    "agent_local_state": agent_local_state,
    "agent_service_ttl": agent_service_ttl,
    "agent_maintenance": agent_maintenance,
    "health": health,
    "catalog_read": catalog_read,
    "catalog_register": catalog_register,
    "node_meta": node_meta,
    "events": events,
    "txn": txn,
    "status": status,
    "coordinates": coordinates,
    "operator": operator,
}


def main(consul: Any, lib: str, groups: dict[str, Group], argv: list[str]) -> int:
    """`script HOST:PORT NODE GROUP [GROUP...]` (or `--list`): runs the groups in order, stops at
    the first failure with its traceback; exit 0 when all passed."""
    if argv[1:2] == ["--list"]:
        print("\n".join(groups))
        return 0
    if len(argv) < 4:
        print(f"usage: {argv[0]} HOST:PORT NODE GROUP [GROUP...] | --list", file=sys.stderr)
        return 2
    host, _, port = argv[1].rpartition(":")
    ctx = Ctx(consul, lib, host, int(port), argv[2])
    for name in argv[3:]:
        if name not in groups:
            print(f"unknown group {name!r}; groups: {', '.join(groups)}", file=sys.stderr)
            return 2
        t0 = time.monotonic()
        try:
            groups[name](ctx)
        except Exception as exc:
            traceback.print_exc()
            print(f"FAIL {lib} {name}: {type(exc).__name__}: {exc}", flush=True)
            return 1
        print(f"ok {lib} {name} ({time.monotonic() - t0:.1f}s)", flush=True)
    return 0
