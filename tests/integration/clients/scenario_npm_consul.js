// node-consul (the npm package `consul`, 2.x) as its users call it, against a running agent.
//
//   NODE_PATH=.venv/clients/npm/node_modules node scenario_npm_consul.js HOST:PORT NODE GROUP...
//
// Exits 0 when every named group passed, 1 with the failing assertion otherwise. Expected
// values are Consul 1.x's documented behaviour (the same as scenario_common.py's).
"use strict";

const assert = require("assert");
const EventEmitter = require("events");
const consulModule = require("consul");
// consul 2.x exports the Consul class itself; later releases also name it
const Consul = consulModule.Consul || consulModule;

let ctx;

function client(opts) {
  return new Consul({ host: ctx.host, port: ctx.port, ...(opts || {}) });
}

// node-consul resolves a `false` body (a refused cas/acquire) to undefined: a refusal is falsy.

// A papi context that makes every call resolve to [response, data].
function withRes() {
  const e = new EventEmitter();
  e.includeResponse = true;
  return e;
}

function index(res) {
  return BigInt(res.headers["x-consul-index"]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await cond();
    if (last) return last;
    if (Date.now() >= deadline) {
      throw new assert.AssertionError({
        message: `timed out after ${timeoutMs}ms waiting for ${what}; last: ${JSON.stringify(last)}`,
      });
    }
    await sleep(100);
  }
}

async function rejects(promise, what) {
  try {
    const got = await promise;
    throw new assert.AssertionError({
      message: `${what}: expected an error, got ${JSON.stringify(got)}`,
    });
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

const eq = (a, b, what) => assert.deepStrictEqual(a, b, what);

const groups = {
  async kv_basic() {
    const c = client();
    const [res, missing] = await c.kv.get({ key: "kvb/missing", ctx: withRes() });
    eq(missing, undefined, "get of a missing key");
    eq(res.statusCode, 404, "a missing key is a 404");
    assert(index(res) > 0n, "X-Consul-Index on a 404");
    eq(await c.kv.set("kvb/a", "1"), true, "set returns true");
    const d = await c.kv.get("kvb/a");
    eq([d.Key, d.Value, d.Flags, d.LockIndex], ["kvb/a", "1", 0, 0], "entry fields");
    eq(d.CreateIndex, d.ModifyIndex, "CreateIndex == ModifyIndex on create");
    await c.kv.set("kvb/a", "2");
    const d2 = await c.kv.get("kvb/a");
    eq(d2.Value, "2", "overwrite");
    assert(d2.ModifyIndex > d.ModifyIndex, "ModifyIndex grows");
    const buf = Buffer.from([0, 1, 2, 255]);
    await c.kv.set("kvb/bin", buf);
    eq((await c.kv.get({ key: "kvb/bin", buffer: true })).Value, buf, "binary value");
    await c.kv.set("kvb/raw", '{"a": 1}');
    const raw = await c.kv.get({ key: "kvb/raw", raw: true });
    eq(raw.toString(), '{"a": 1}', "?raw returns the bare value");
    eq(await c.kv.del("kvb/a"), true, "del returns true");
    eq(await c.kv.get("kvb/a"), undefined, "deleted");
  },

  async kv_empty_and_flags() {
    const c = client();
    eq(await c.kv.set("kve/empty", ""), true, "set an empty value");
    const d = await c.kv.get("kve/empty");
    assert(d !== undefined, "a key with an empty value exists");
    eq(d.Value, null, "an empty value is JSON null");
    await c.kv.set({ key: "kve/flags", value: "x", flags: 42 });
    eq((await c.kv.get("kve/flags")).Flags, 42, "flags");
  },

  async kv_recurse_keys() {
    const c = client();
    for (const [k, v] of [
      ["kvr/a", "1"],
      ["kvr/b", "2"],
      ["kvr/c/d", "3"],
    ]) {
      await c.kv.set(k, v);
    }
    const items = await c.kv.get({ key: "kvr/", recurse: true });
    eq(
      items.map((i) => [i.Key, i.Value]),
      [
        ["kvr/a", "1"],
        ["kvr/b", "2"],
        ["kvr/c/d", "3"],
      ],
      "recurse",
    );
    eq(await c.kv.keys("kvr/"), ["kvr/a", "kvr/b", "kvr/c/d"], "keys");
    eq(await c.kv.keys({ key: "kvr/", separator: "/" }), ["kvr/a", "kvr/b", "kvr/c/"], "separator");
    eq(await c.kv.get({ key: "kvr-none/", recurse: true }), undefined, "empty prefix");
    eq(await c.kv.del({ key: "kvr/", recurse: true }), true, "recursive delete");
    eq(await c.kv.get({ key: "kvr/", recurse: true }), undefined, "all gone");
  },

  async kv_cas() {
    const c = client();
    eq(await c.kv.set({ key: "kvc/k", value: "a", cas: 0 }), true, "cas=0 creates");
    eq(Boolean(await c.kv.set({ key: "kvc/k", value: "b", cas: 0 })), false, "cas=0 on an existing key");
    const d = await c.kv.get("kvc/k");
    eq(Boolean(await c.kv.set({ key: "kvc/k", value: "b", cas: d.ModifyIndex + 100 })), false, "bad cas");
    eq(await c.kv.set({ key: "kvc/k", value: "b", cas: d.ModifyIndex }), true, "good cas");
    const d2 = await c.kv.get("kvc/k");
    eq(Boolean(await c.kv.del({ key: "kvc/k", cas: d.ModifyIndex })), false, "stale cas delete");
    eq(await c.kv.del({ key: "kvc/k", cas: d2.ModifyIndex }), true, "cas delete");
  },

  async kv_blocking() {
    const c = client();
    await c.kv.set("kvblk/k", "v0");
    const [res] = await c.kv.get({ key: "kvblk/k", ctx: withRes() });
    const idx = index(res);
    const t0 = Date.now();
    const [res2] = await c.kv.get({ key: "kvblk/k", index: idx.toString(), wait: "1s", ctx: withRes() });
    const elapsed = Date.now() - t0;
    assert(elapsed >= 900 && elapsed < 4000, `wait=1s returned after ${elapsed}ms`);
    eq(index(res2), idx, "same index after a timed-out blocking query");
    // consul.watch, the library's blocking-query loop.
    const watch = c.watch({ method: c.kv.get, options: { key: "kvblk/w", wait: "5s" } });
    const seen = [];
    watch.on("change", (data) => seen.push(data ? data.Value : null));
    const errors = [];
    watch.on("error", (err) => errors.push(err.message));
    try {
      await eventually(() => seen.length >= 1, 5000, "the watch's first answer");
      await c.kv.set("kvblk/w", "one");
      await eventually(() => seen.includes("one"), 5000, "the watch seeing 'one'");
      await c.kv.set("kvblk/w", "two");
      await eventually(() => seen.includes("two"), 5000, "the watch seeing 'two'");
    } finally {
      watch.end();
    }
    eq(errors, [], "watch errors");
  },

  async sessions() {
    const c = client();
    const { ID: sid } = await c.session.create({
      name: "s1",
      ttl: "15s",
      behavior: "delete",
      lockdelay: "1s",
      checks: [],
    });
    assert(/^[0-9a-f-]{36}$/.test(sid), `session id ${sid}`);
    const info = await c.session.info(sid);
    eq([info.ID, info.Name, info.Node, info.Behavior, info.TTL], [sid, "s1", ctx.node, "delete", "15s"], "info");
    eq(info.LockDelay, 1000000000, "LockDelay in ns");
    const checks = [...(info.Checks || []), ...(info.NodeChecks || [])];
    eq(checks, [], "checks: [] drops serfHealth");
    assert((await c.session.list()).some((s) => s.ID === sid), "session/list");
    assert((await c.session.node(ctx.node)).some((s) => s.ID === sid), "session/node");
    const renewed = await c.session.renew(sid);
    eq(renewed[0].ID, sid, "renew returns [session]");
    await c.session.destroy(sid);
    eq(await c.session.info(sid), undefined, "info of a destroyed session");
    const err = await rejects(c.session.renew(sid), "renew of a destroyed session");
    eq(err.response && err.response.statusCode, 404, "renew of a destroyed session is a 404");
  },

  async lock() {
    const c = client();
    const { ID: s1 } = await c.session.create({ lockdelay: "0s" });
    const { ID: s2 } = await c.session.create({ lockdelay: "0s" });
    eq(await c.kv.set({ key: "lk/a", value: "s1", acquire: s1 }), true, "acquire");
    const d = await c.kv.get("lk/a");
    eq([d.Session, d.LockIndex], [s1, 1], "held");
    eq(Boolean(await c.kv.set({ key: "lk/a", value: "s2", acquire: s2 })), false, "contended acquire");
    eq(await c.kv.set({ key: "lk/a", value: "r", release: s1 }), true, "release");
    const d2 = await c.kv.get("lk/a");
    assert(!d2.Session, `released: ${JSON.stringify(d2)}`);
    eq(await c.kv.set({ key: "lk/a", value: "s2", acquire: s2 }), true, "acquire after release");
    eq((await c.kv.get("lk/a")).LockIndex, 2, "LockIndex 2");
    const { ID: s3 } = await c.session.create({ behavior: "delete", lockdelay: "0s" });
    await c.kv.set({ key: "lk/eph", value: "e", acquire: s3 });
    await c.session.destroy(s3);
    eq(await c.kv.get("lk/eph"), undefined, "behavior=delete removes the key");
  },

  async agent_info() {
    const c = client();
    const me = await c.agent.self();
    eq([me.Config.NodeName, me.Config.Datacenter, me.Member.Name], [ctx.node, "dc1", ctx.node], "self");
    const members = await c.agent.members();
    eq(members.map((m) => [m.Name, m.Addr, m.Port, m.Status]), [[ctx.node, ctx.host, 8301, 1]], "members");
    const wan = await c.agent.members({ wan: true });
    eq(wan.map((m) => m.Name), [`${ctx.node}.dc1`], "WAN members");
  },

  async agent_local_state() {
    const c = client();
    eq(Object.keys(await c.agent.service.list()), [], "agent/services of a fresh agent (no consul)");
    eq(Object.keys(await c.agent.check.list()), [], "agent/checks of a fresh agent (no serfHealth)");
    await c.agent.service.register({ name: "plain", id: "plain1", port: 1234 });
    const svc = (await c.agent.service.list()).plain1;
    eq([svc.Tags, svc.Meta, svc.Weights], [[], {}, { Passing: 1, Warning: 1 }], "Tags/Meta/Weights");
  },

  async agent_service_ttl() {
    const c = client();
    await c.agent.service.register({
      name: "web",
      id: "web1",
      address: "127.0.0.1",
      port: 8080,
      tags: ["v1"],
      meta: { version: "1" },
      check: { ttl: "10s", notes: "ttl check" },
    });
    const svc = (await c.agent.service.list()).web1;
    eq([svc.ID, svc.Service, svc.Tags, svc.Address, svc.Port], ["web1", "web", ["v1"], "127.0.0.1", 8080], "service");
    eq(svc.Meta, { version: "1" }, "Meta");
    let chk = (await c.agent.check.list())["service:web1"];
    eq(chk.Status, "critical", "a TTL check starts critical");
    await c.agent.check.pass({ id: "service:web1", note: "fine" });
    chk = (await c.agent.check.list())["service:web1"];
    eq([chk.Status, chk.Output], ["passing", "fine"], "after pass");
    await c.agent.check.warn("service:web1");
    eq((await c.agent.check.list())["service:web1"].Status, "warning", "after warn");
    await c.agent.check.fail("service:web1");
    eq((await c.agent.check.list())["service:web1"].Status, "critical", "after fail");
    await c.agent.check.register({ name: "mem", id: "mem1", ttl: "30s", notes: "memory" });
    eq((await c.agent.check.list()).mem1.Notes, "memory", "standalone check");
    await c.agent.check.deregister("mem1");
    await eventually(
      async () => (await c.catalog.service.nodes("web")).length === 1,
      10000,
      "web1 in the catalog",
    );
    await c.agent.service.deregister("web1");
    eq((await c.agent.service.list()).web1, undefined, "deregistered");
  },

  async agent_maintenance() {
    const c = client();
    await c.agent.service.register({ name: "maint", id: "maint1", port: 9000 });
    await c.agent.maintenance({ enable: true, reason: "upgrading" });
    const chk = (await c.agent.check.list())._node_maintenance;
    eq([chk.Status, chk.Notes], ["critical", "upgrading"], "node maintenance");
    await c.agent.maintenance(false);
    eq((await c.agent.check.list())._node_maintenance, undefined, "node maintenance off");
    await c.agent.service.maintenance({ id: "maint1", enable: true, reason: "fix" });
    const s = (await c.agent.check.list())["_service_maintenance:maint1"];
    eq([s.Status, s.ServiceID, s.Notes], ["critical", "maint1", "fix"], "service maintenance");
    await c.agent.service.maintenance({ id: "maint1", enable: false });
    eq((await c.agent.check.list())["_service_maintenance:maint1"], undefined, "off");
  },

  async health() {
    const c = client();
    await c.agent.service.register({ name: "api", id: "api1", port: 81, tags: ["v1"], check: { ttl: "30s" } });
    await c.agent.service.register({ name: "api", id: "api2", port: 82, tags: ["v2"], check: { ttl: "30s" } });
    await c.agent.check.pass("service:api1");
    await eventually(
      async () => {
        const e = await c.health.service({ service: "api", passing: true });
        return e.length === 1 && e[0].Service.ID === "api1";
      },
      10000,
      "only api1 passing",
    );
    const all = await c.health.service("api");
    eq(all.map((e) => e.Service.ID).sort(), ["api1", "api2"], "all instances");
    const e1 = all.find((e) => e.Service.ID === "api1");
    eq([e1.Node.Node, e1.Node.Address], [ctx.node, ctx.host], "entry Node");
    eq(e1.Checks.map((x) => x.CheckID).sort(), ["serfHealth", "service:api1"], "entry Checks");
    eq((await c.health.service({ service: "api", tag: "v2" })).map((e) => e.Service.ID), ["api2"], "tag");
    eq((await c.health.checks("api")).length, 2, "health/checks");
    eq((await c.health.state("critical")).map((x) => x.CheckID), ["service:api2"], "state critical");
    const node = await c.health.node(ctx.node);
    eq(node.filter((x) => x.CheckID === "serfHealth").map((x) => x.Status), ["passing"], "health/node");
  },

  async catalog_read() {
    const c = client();
    eq(await c.catalog.datacenters(), ["dc1"], "datacenters");
    const nodes = await c.catalog.node.list();
    eq(nodes.map((n) => [n.Node, n.Address]), [[ctx.node, ctx.host]], "nodes");
    const services = await eventually(
      async () => {
        const s = await c.catalog.service.list();
        return "consul" in s && s;
      },
      10000,
      "the consul service",
    );
    eq(services, { consul: [] }, "services");
    const consulSvc = await c.catalog.service.nodes("consul");
    eq(consulSvc.map((s) => [s.Node, s.ServicePort]), [[ctx.node, 8300]], "consul instance");
    const node = await c.catalog.node.services(ctx.node);
    eq(node.Node.Node, ctx.node, "catalog/node");
    assert("consul" in node.Services, "catalog/node Services");
  },

  async catalog_register() {
    const c = client();
    await c.catalog.register({
      node: "ext1",
      address: "127.77.200.1",
      nodemeta: { rack: "r1" },
      service: { service: "db", id: "db1", port: 5432, tags: ["primary"], meta: { role: "p" } },
      check: { node: "ext1", checkid: "db-alive", name: "db alive", status: "passing", serviceid: "db1" },
    });
    const db = await c.catalog.service.nodes("db");
    eq(
      db.map((d) => [d.Node, d.Address, d.ServiceID, d.ServicePort, d.ServiceTags]),
      [["ext1", "127.77.200.1", "db1", 5432, ["primary"]]],
      "catalog/service/db",
    );
    eq(db[0].ServiceMeta, { role: "p" }, "ServiceMeta");
    eq(db[0].NodeMeta, { rack: "r1" }, "NodeMeta");
    const byMeta = await c.catalog.node.list({ "node-meta": "rack:r1" });
    eq(byMeta.map((n) => n.Node), ["ext1"], "?node-meta=rack:r1");
    const filtered = await c.catalog.node.list({ filter: 'Meta.rack == "r1"' });
    eq(filtered.map((n) => n.Node), ["ext1"], "?filter on Meta");
    const healthy = await c.health.service({ service: "db", passing: true });
    eq(healthy.map((e) => e.Service.ID), ["db1"], "health of the registered check");
    await c.catalog.deregister({ node: "ext1", serviceid: "db1" });
    eq(await c.catalog.service.nodes("db"), [], "service deregistered");
    await c.catalog.deregister("ext1");
    eq((await c.catalog.node.list()).map((n) => n.Node), [ctx.node], "node deregistered");
  },

  async events() {
    const c = client();
    const fired = await c.event.fire("deploy", "v1");
    // The library decodes the base64 Payload of the fire response, as of event/list's.
    eq([fired.Name, fired.Payload], ["deploy", "v1"], "fire");
    await c.event.fire("marker", "m");
    const evs = await eventually(
      async () => {
        const l = await c.event.list();
        return l.some((e) => e.Name === "marker") && l;
      },
      10000,
      "the marker event",
    );
    const dep = evs.find((e) => e.Name === "deploy");
    eq([dep.ID, dep.Payload], [fired.ID, "v1"], "listed event");
    eq((await c.event.list("deploy")).map((e) => e.Name), ["deploy"], "?name=");
  },

  async txn() {
    const c = client();
    const b64 = (s) => Buffer.from(s).toString("base64");
    const r = await c.transaction.create([
      { KV: { Verb: "set", Key: "tx/a", Value: b64("1") } },
      { KV: { Verb: "get", Key: "tx/a" } },
    ]);
    eq(r.Errors, null, "no Errors");
    eq(r.Results.map((x) => x.KV.Key), ["tx/a", "tx/a"], "Results");
    eq(r.Results[1].KV.Value, b64("1"), "get in txn");
    const err = await rejects(
      c.transaction.create([
        { KV: { Verb: "set", Key: "tx/b", Value: b64("b") } },
        { KV: { Verb: "cas", Key: "tx/a", Value: b64("x"), Index: 1 } },
      ]),
      "a failing txn",
    );
    eq(err.response && err.response.statusCode, 409, "a failed txn is a 409");
    eq(await c.kv.get("tx/b"), undefined, "rolled back");
  },

  async status() {
    const c = client();
    eq(await c.status.leader(), `${ctx.host}:8300`, "leader");
    eq(await c.status.peers(), [`${ctx.host}:8300`], "peers");
  },
};

async function main(argv) {
  if (argv[2] === "--list") {
    console.log(Object.keys(groups).join("\n"));
    return 0;
  }
  if (argv.length < 5) {
    console.error(`usage: ${argv[1]} HOST:PORT NODE GROUP [GROUP...] | --list`);
    return 2;
  }
  const addr = argv[2];
  const colon = addr.lastIndexOf(":");
  ctx = { host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)), node: argv[3] };
  for (const name of argv.slice(4)) {
    if (!(name in groups)) {
      console.error(`unknown group ${name}; groups: ${Object.keys(groups).join(", ")}`);
      return 2;
    }
    const t0 = Date.now();
    try {
      await groups[name]();
    } catch (err) {
      console.log(err && err.stack ? err.stack : err);
      console.log(`FAIL node-consul ${name}: ${err && err.message ? err.message : err}`);
      return 1;
    }
    console.log(`ok node-consul ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  }
  return 0;
}

main(process.argv).then(
  (code) => process.exit(code),
  (err) => {
    console.log(err);
    process.exit(1);
  },
);
