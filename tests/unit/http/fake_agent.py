"""A fake AgentAPI backed by dicts: enough of Consul's server RPCs to drive the HTTP API,
the CLI RPC server and the CLI commands without a cluster."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.api import JoinError, RPCError
from agent.http.app import make_app
from agent.local import rexec
from agent.rpc_cli import CLIRPCServer


@dataclass
class FakeAgent:
    node_name: str = "server1"
    datacenter: str = "mydc"
    is_server: bool = True
    index: int = 10
    kv: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    leader: str = "10.12.10.37:8300"
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    member_list: list[dict[str, Any]] = field(default_factory=list)
    joined: list[tuple[list[str], bool]] = field(default_factory=list)
    left: bool = False
    force_left: list[str] = field(default_factory=list)
    reloaded: int = 0
    keys: dict[str, int] = field(default_factory=lambda: {"pUqJrVyVRj5jsiYEkM/tFQ==": 2})
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    fsm_state: bytes = b"fsm-state-bytes"
    restored: list[bytes] = field(default_factory=list)
    coords: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.member_list:
            self.member_list = [
                member("server1", "10.12.10.37", "consul"),
                member("ceph-debug", "10.12.10.61", "node"),
            ]

    # --- server RPC -----------------------------------------------------------------------

    def meta(self, **body: Any) -> dict[str, Any]:
        return {"Index": self.index, "KnownLeader": bool(self.leader), "LastContact": 0.0, **body}

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        self.calls.append((method, args))
        if not self.leader and not args.get("AllowStale"):
            raise RPCError("No cluster leader")
        if args.get("Datacenter") not in (None, self.datacenter):
            raise RPCError(f"No path to datacenter: {args['Datacenter']}")
        handler = getattr(self, "rpc_" + method.replace(".", "_"), None)
        if handler is None:
            raise RPCError(f"rpc: can't find method {method}")
        min_index = args.get("MinQueryIndex") or 0
        if min_index and self.index <= min_index:
            # a blocking query: wait for any write (the fake has one index for everything)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + float(args.get("MaxQueryTime") or 300)
            while self.index <= min_index and loop.time() < deadline:
                await asyncio.sleep(0.005)
        return handler(args)

    def rpc_KVS_Apply(self, args: dict[str, Any]) -> Any:
        op, ent = args["Op"], args["DirEnt"]
        key = ent["Key"]
        cur = self.kv.get(key)
        if op in ("set", "cas", "lock", "unlock"):
            if op == "cas" and (cur["ModifyIndex"] if cur else 0) != ent["ModifyIndex"]:
                return False
            held_by_other = cur and cur["Session"] and cur["Session"] != ent["Session"]
            if op == "lock" and (ent["Session"] not in self.sessions or held_by_other):
                return False
            if op == "unlock" and (not cur or cur["Session"] != ent["Session"]):
                return False
            self.index += 1
            new = {
                "LockIndex": (cur["LockIndex"] if cur else 0)
                + (op == "lock" and not (cur and cur["Session"] == ent["Session"])),
                "Key": key,
                "Flags": ent["Flags"],
                "Value": ent["Value"],
                "Session": ent["Session"] if op == "lock" else (cur["Session"] if cur else ""),
                "CreateIndex": cur["CreateIndex"] if cur else self.index,
                "ModifyIndex": self.index,
            }
            if op == "unlock":
                new["Session"] = ""
            self.kv[key] = new
            return True
        if op == "delete":
            self.kv.pop(key, None)
        elif op == "delete-cas":
            if not cur or cur["ModifyIndex"] != ent["ModifyIndex"]:
                return False
            del self.kv[key]
        elif op == "delete-tree":
            for k in [k for k in self.kv if k.startswith(key)]:
                del self.kv[k]
        self.index += 1
        return True

    def rpc_KVS_Get(self, args: dict[str, Any]) -> Any:
        e = self.kv.get(args["Key"])
        return self.meta(Entries=[dict(e)] if e else None)

    def rpc_KVS_List(self, args: dict[str, Any]) -> Any:
        entries = [dict(v) for k, v in sorted(self.kv.items()) if k.startswith(args["Key"])]
        return self.meta(Entries=entries or None)

    def rpc_KVS_ListKeys(self, args: dict[str, Any]) -> Any:
        prefix, sep = args["Prefix"], args["Seperator"]
        keys: list[str] = []
        for k in sorted(self.kv):
            if not k.startswith(prefix):
                continue
            if sep:
                pos = k.find(sep, len(prefix))
                if pos >= 0:
                    k = k[: pos + len(sep)]
            if not keys or keys[-1] != k:
                keys.append(k)
        return self.meta(Keys=keys)

    def rpc_Txn_Apply(self, args: dict[str, Any]) -> Any:
        results = []
        for op in args["Ops"]:
            kv = op["KV"]
            verb = kv["Verb"]
            if verb == "get":
                e = self.kv.get(kv["DirEnt"]["Key"])
                if e is None:
                    return {"Results": None, "Errors": [{"OpIndex": 0, "What": "key not found"}]}
                results.append({"KV": dict(e)})
            else:
                self.rpc_KVS_Apply({"Op": verb, "DirEnt": kv["DirEnt"]})
                results.append({"KV": dict(self.kv.get(kv["DirEnt"]["Key"], {}))})
        return {"Results": results, "Errors": None, "Index": self.index}

    def rpc_Status_Leader(self, args: dict[str, Any]) -> Any:
        return self.leader

    def rpc_Status_Peers(self, args: dict[str, Any]) -> Any:
        return [self.leader]

    def rpc_Operator_RaftGetConfiguration(self, args: dict[str, Any]) -> Any:
        return {
            "Servers": [
                {
                    "ID": self.leader,
                    "Node": "server1",
                    "Address": self.leader,
                    "Leader": True,
                    "Voter": True,
                },
                {
                    "ID": "10.12.10.38:8300",
                    "Node": "server2",
                    "Address": "10.12.10.38:8300",
                    "Leader": False,
                    "Voter": True,
                },
            ],
            "Index": 5,
        }

    def rpc_Operator_RaftRemovePeerByAddress(self, args: dict[str, Any]) -> Any:
        if args["Address"] != "10.12.10.38:8300":
            raise RPCError(f'address "{args["Address"]}" was not found in the Raft configuration')
        return None

    def rpc_Snapshot_Save(self, args: dict[str, Any]) -> Any:
        return self.meta(Data=self.fsm_state, Term=2, Index=self.index)

    def rpc_Snapshot_Restore(self, args: dict[str, Any]) -> Any:
        self.restored.append(args["Data"])
        return None

    def rpc_Session_Apply(self, args: dict[str, Any]) -> Any:
        sess = args["Session"]
        if args["Op"] == "create":
            sid = str(uuid.uuid4())
            self.index += 1
            self.sessions[sid] = {**sess, "ID": sid, "CreateIndex": self.index}
            return sid
        gone = self.sessions.pop(sess["ID"], None)
        if gone is not None:  # Consul: the session's locks are released (or deleted)
            self.index += 1
            for key, entry in list(self.kv.items()):
                if entry["Session"] == sess["ID"]:
                    if gone.get("Behavior") == "delete":
                        del self.kv[key]
                    else:
                        self.kv[key] = {**entry, "Session": "", "ModifyIndex": self.index}
        return True

    def rpc_Session_Get(self, args: dict[str, Any]) -> Any:
        s = self.sessions.get(args["Session"])
        return self.meta(Sessions=[s] if s else [])

    def rpc_Session_List(self, args: dict[str, Any]) -> Any:
        return self.meta(Sessions=list(self.sessions.values()))

    def rpc_Session_Renew(self, args: dict[str, Any]) -> Any:
        s = self.sessions.get(args["Session"])
        return self.meta(Sessions=[s] if s else [])

    def rpc_Catalog_ListDatacenters(self, args: dict[str, Any]) -> Any:
        return [self.datacenter]

    def rpc_Catalog_ListNodes(self, args: dict[str, Any]) -> Any:
        return self.meta(
            Nodes=[{"Node": m["Name"], "Address": m["Addr"]} for m in self.member_list]
        )

    def rpc_Health_ChecksInState(self, args: dict[str, Any]) -> Any:
        return self.meta(HealthChecks=None)

    def rpc_Health_NodeChecks(self, args: dict[str, Any]) -> Any:
        check = {
            "Node": args["Node"],
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": "passing",
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "CreateIndex": 3,
            "ModifyIndex": 3,
        }
        return self.meta(HealthChecks=[check])

    def rpc_Catalog_NodeServices(self, args: dict[str, Any]) -> Any:
        svc = {
            "ID": "consul",
            "Service": "consul",
            "Tags": [],
            "Address": "",
            "Port": 8300,
            "CreateIndex": 4,
            "ModifyIndex": 4,
        }
        node = {"Node": args["Node"], "Address": "10.12.10.37"}
        return self.meta(NodeServices={"Node": node, "Services": {"consul": svc}})

    def rpc_Coordinate_ListDatacenters(self, args: dict[str, Any]) -> Any:
        coords = [{"Node": f"{n}.{self.datacenter}", "Coord": c} for n, c in self.coords.items()]
        return [{"Datacenter": self.datacenter, "Coordinates": coords}]

    def rpc_Coordinate_ListNodes(self, args: dict[str, Any]) -> Any:
        return self.meta(Coordinates=[{"Node": n, "Coord": c} for n, c in self.coords.items()])

    # --- local agent ----------------------------------------------------------------------

    def members(self, wan: bool = False) -> list[dict[str, Any]]:
        if wan:
            return [
                {**m, "Name": f"{m['Name']}.{self.datacenter}", "Port": 8302}
                for m in self.member_list
                if m["Tags"]["role"] == "consul"
            ]
        return [dict(m) for m in self.member_list]

    async def join(self, addrs: list[str], wan: bool = False) -> int:
        self.joined.append((addrs, wan))
        good = [a for a in addrs if not a.startswith("10.99.")]
        if not good:
            raise JoinError(
                "1 error(s) occurred:\n\n* Failed to join "
                + addrs[0]
                + ": dial tcp "
                + addrs[0]
                + ":8301: i/o timeout"
            )
        return len(good)

    async def leave(self) -> None:
        self.left = True

    async def force_leave(self, node: str) -> None:
        self.force_left.append(node)

    def stats(self) -> dict[str, dict[str, str]]:
        return {
            "agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "1"},
            "build": {"prerelease": "", "revision": "'a9afa0c", "version": "0.7.2"},
            "consul": {"bootstrap": "true", "known_datacenters": "1", "leader": "true"},
        }

    def self_info(self) -> dict[str, Any]:
        return {
            "Config": {"NodeName": self.node_name, "Datacenter": self.datacenter},
            "Coord": self.coords.get(self.node_name),
            "Member": self.member_list[0],
        }

    async def reload(self) -> None:
        self.reloaded += 1

    async def log_stream(self, level: str) -> AsyncIterator[str]:
        for line in self.logs:
            yield line
        await asyncio.Event().wait()  # then stays open, as a real agent's stream does

    async def keyring(self, op: str, key: str | None = None) -> list[dict[str, Any]]:
        if op == "install" and key:
            self.keys[key] = 2
        elif op == "remove" and key:
            if key not in self.keys:
                return [
                    {
                        "WAN": False,
                        "Datacenter": self.datacenter,
                        "Messages": {},
                        "Keys": {},
                        "NumNodes": 2,
                        "Error": "key not found",
                    }
                ]
            del self.keys[key]
        return [
            {"WAN": True, "Datacenter": "", "Messages": {}, "Keys": dict(self.keys), "NumNodes": 1},
            {
                "WAN": False,
                "Datacenter": self.datacenter,
                "Messages": {},
                "Keys": dict(self.keys),
                "NumNodes": 2,
            },
        ]

    async def fire_event(
        self,
        name: str,
        payload: bytes,
        node_filter: str = "",
        service_filter: str = "",
        tag_filter: str = "",
    ) -> dict[str, Any]:
        event = {
            "ID": str(uuid.uuid4()),
            "Name": name,
            "Payload": payload,
            "NodeFilter": node_filter,
            "ServiceFilter": service_filter,
            "TagFilter": tag_filter,
            "Version": 1,
            "LTime": 0,
        }
        self.events.append(event)
        if name == rexec.EVENT_NAME:  # what the real agent does on a `_rexec` event
            task = asyncio.create_task(
                rexec.handle_remote_exec(self.rpc, self.node_name, self.datacenter, payload)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return event

    def user_events(self) -> list[dict[str, Any]]:
        return list(self.events)


def member(name: str, addr: str, role: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Addr": addr,
        "Port": 8301,
        "Tags": {"role": role, "dc": "mydc", "vsn": "2", "build": "0.7.2:'a9afa0c"},
        "Status": 1,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 4,
        "DelegateCur": 4,
    }


@dataclass
class Served:
    agent: Any  # FakeAgent, or another stand-in with what the endpoints under test need
    http_addr: str
    rpc_addr: str
    loop: asyncio.AbstractEventLoop


@contextmanager
def serve_in_thread(
    agent: Any,
    *,
    middlewares: Sequence[Any] = (),
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> Iterator[Served]:
    """Run the HTTP API and the CLI RPC for `agent` on 127.0.0.1 in a background loop;
    `middlewares` go first in the app, `on_stop` runs in the loop before the servers stop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        app = make_app(agent)
        app.middlewares[:0] = middlewares
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        rpc = CLIRPCServer(agent)  # type: ignore[arg-type]
        await rpc.start("127.0.0.1", 0)
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        state.update(runner=runner, rpc=rpc, http_port=sock.getsockname()[1])

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(10), "fake agent servers did not start"
    try:
        yield Served(
            agent,
            f"127.0.0.1:{state['http_port']}",
            f"127.0.0.1:{state['rpc'].port}",
            loop,
        )
    finally:

        async def stop() -> None:
            if on_stop is not None:
                await on_stop()
            await state["rpc"].stop()
            await state["runner"].cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
