"""Consul 0.7's CLI RPC (port 8400): a msgpack stream of request headers and bodies.

Theory of operation: a client sends `{"Command", "Seq"}` followed, for commands that take one,
by a body; the server answers `{"Seq", "Error"}` followed, for commands that return one, by a
body. `handshake` with `{"Version": 1}` must come first. `monitor` keeps answering under its
Seq (one `{"Log": line}` per log line) until `stop` names that Seq or the connection closes.
The server side (`CLIRPCServer`) uses only `AgentAPI`; the client is `agent.client.RPCClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgpack

from agent.acl.resolver import Access
from agent.api import STATUS_NAMES, AgentAPI, JoinError

log = logging.getLogger("agent.rpc")

PROTOCOL_VERSION = 1
MAX_BUFFER = 1 << 20
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR")

#: Commands whose request carries a body after the header.
COMMANDS_WITH_BODY = frozenset(
    {"handshake", "force-leave", "join", "monitor", "stop", "install-key", "use-key", "remove-key"}
)
COMMANDS = COMMANDS_WITH_BODY | {
    "members-lan",
    "members-wan",
    "leave",
    "stats",
    "reload",
    "list-keys",
}

ERR_HANDSHAKE_REQUIRED = "Handshake required"
ERR_DUPLICATE_HANDSHAKE = "Handshake already performed"
ERR_UNSUPPORTED_VERSION = "Unsupported version"
ERR_UNSUPPORTED_COMMAND = "Unsupported command"
ERR_MONITOR_EXISTS = "Monitor already exists"
ERR_BAD_REQUEST = "Malformed request"

_KEYRING_OPS = {
    "list-keys": "list",
    "install-key": "install",
    "use-key": "use",
    "remove-key": "remove",
}


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)


def encode_addr(addr: str) -> bytes:
    """An IP address as Go's net.IP bytes (4 bytes for IPv4, 16 for IPv6)."""
    try:
        return ipaddress.ip_address(addr).packed
    except ValueError:
        return addr.encode()


def decode_addr(raw: Any) -> str:
    if isinstance(raw, str):
        # Consul's RPC packs net.IP as a msgpack raw string; readers decode it with
        # surrogateescape, which gives back the exact bytes.
        raw = raw.encode("utf-8", "surrogateescape")
    if isinstance(raw, bytes | bytearray):
        b = bytes(raw)
        if len(b) == 16 and b[:12] == b"\x00" * 10 + b"\xff\xff":
            b = b[12:]
        if len(b) in (4, 16):
            return str(ipaddress.ip_address(b))
        return b.decode(errors="replace")
    return str(raw)


def member_to_rpc(m: dict[str, Any]) -> dict[str, Any]:
    status = m.get("Status", 0)
    return {
        "Name": m.get("Name", ""),
        "Addr": encode_addr(str(m.get("Addr", ""))),
        "Port": int(m.get("Port", 0)),
        "Tags": dict(m.get("Tags") or {}),
        "Status": STATUS_NAMES.get(status, str(status)) if isinstance(status, int) else status,
        "ProtocolMin": int(m.get("ProtocolMin", 0)),
        "ProtocolMax": int(m.get("ProtocolMax", 0)),
        "ProtocolCur": int(m.get("ProtocolCur", 0)),
        "DelegateMin": int(m.get("DelegateMin", 0)),
        "DelegateMax": int(m.get("DelegateMax", 0)),
        "DelegateCur": int(m.get("DelegateCur", 0)),
    }


def keyring_to_rpc(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """/v1/operator/keyring replies -> Consul 0.7's keyringResponse (Keys, Messages, Info)."""
    keys: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    info: list[dict[str, Any]] = []
    for r in replies:
        pool = "WAN" if r.get("WAN") else "LAN"
        dc = r.get("Datacenter", "")
        for key, count in (r.get("Keys") or {}).items():
            keys.append({"Datacenter": dc, "Pool": pool, "Key": key, "Count": int(count)})
        for node, msg in (r.get("Messages") or {}).items():
            messages.append({"Datacenter": dc, "Pool": pool, "Node": node, "Message": msg})
        info.append(
            {
                "Datacenter": dc,
                "Pool": pool,
                "NumNodes": int(r.get("NumNodes", 0)),
                "Error": r.get("Error", "") or "",
            }
        )
    return {"Keys": keys, "Messages": messages, "Info": info}


class _Conn:
    """One CLI RPC client connection."""

    def __init__(
        self, agent: AgentAPI, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.agent = agent
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors="surrogateescape",
            strict_map_key=False,
            max_buffer_size=MAX_BUFFER,
        )
        self.handshaken = False
        self.token: str | None = None
        self.monitors: dict[int, asyncio.Task[None]] = {}

    async def next_obj(self) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            data = await self.reader.read(65536)
            if not data:
                raise EOFError
            self.unpacker.feed(data)

    def send(self, seq: int, error: str, body: Any = None, with_body: bool = False) -> None:
        out = pack({"Seq": seq, "Error": error})
        if with_body:
            out += pack(body)
        self.writer.write(out)

    async def serve(self) -> None:
        try:
            while True:
                header = await self.next_obj()
                if not isinstance(header, dict) or not isinstance(header.get("Command"), str):
                    log.error("rpc: malformed request header from CLI client: %r", header)
                    return
                seq = header.get("Seq", 0)
                seq = seq if isinstance(seq, int) else 0
                command = header["Command"]
                body = await self.next_obj() if command in COMMANDS_WITH_BODY else None
                await self.dispatch(command, seq, body)
                await self.writer.drain()
        except (EOFError, ConnectionError):
            pass
        except (msgpack.UnpackException, ValueError) as exc:
            log.error("rpc: malformed msgpack from CLI client: %s", exc)
        finally:
            for task in self.monitors.values():
                task.cancel()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def dispatch(self, command: str, seq: int, body: Any) -> None:
        if command not in COMMANDS:
            self.send(seq, ERR_UNSUPPORTED_COMMAND)
            return
        if command == "handshake":
            version = body.get("Version") if isinstance(body, dict) else None
            if self.handshaken:
                self.send(seq, ERR_DUPLICATE_HANDSHAKE)
            elif version != PROTOCOL_VERSION:
                self.send(seq, ERR_UNSUPPORTED_VERSION)
            else:
                self.handshaken = True
                token = body.get("Token") if isinstance(body, dict) else None
                self.token = token if isinstance(token, str) and token else None
                self.send(seq, "")
            return
        if not self.handshaken:
            self.send(seq, ERR_HANDSHAKE_REQUIRED)
            return
        if command in COMMANDS_WITH_BODY and not isinstance(body, dict):
            self.send(seq, ERR_BAD_REQUEST)
            return
        assert body is None or isinstance(body, dict)
        try:
            await self.run_command(command, seq, body or {})
        except Exception as exc:  # the agent's error text goes back to the CLI
            self.send(seq, str(exc) or type(exc).__name__, *self._empty_body(command))

    @staticmethod
    def _empty_body(command: str) -> tuple[Any, bool]:
        if command in ("members-lan", "members-wan"):
            return {"Members": []}, True
        if command == "join":
            return {"Num": 0}, True
        if command == "stats":
            return {}, True
        if command in _KEYRING_OPS:
            return {"Keys": [], "Messages": [], "Info": []}, True
        return None, False

    async def _access(self) -> Access:
        token = self.token if self.token is not None else self.agent.tokens.user_token()
        return await self.agent.resolve_token(token)

    async def _allowed(self, command: str) -> Access:
        """The ACLs of each command, as the HTTP endpoints behind them check them; raises
        RPCError ("Permission denied: ...") for a token that may not."""
        acc = await self._access()
        node = self.agent.node_name
        if command in ("join", "leave", "reload"):
            acc.need("agent", "write", node)
        elif command in ("stats", "monitor"):
            acc.need("agent", "read", node)
        elif command == "force-leave":
            acc.need("operator", "write")
        elif command == "list-keys":
            acc.need("keyring", "read")
        elif command in _KEYRING_OPS:
            acc.need("keyring", "write")
        return acc

    async def run_command(self, command: str, seq: int, body: dict[str, Any]) -> None:
        agent = self.agent
        acc = await self._allowed(command) if command != "stop" else None
        if command in ("members-lan", "members-wan"):
            wan = command == "members-wan"
            members = agent.members(wan=wan)
            if acc is not None:
                members, _ = acc.filter(
                    members,
                    "node",
                    lambda m: str(m["Name"]).rsplit(".", 1)[0] if wan else str(m["Name"]),
                )
            self.send(seq, "", {"Members": [member_to_rpc(m) for m in members]}, True)
        elif command == "join":
            addrs = body.get("Existing") or []
            if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
                self.send(seq, ERR_BAD_REQUEST, {"Num": 0}, True)
                return
            try:
                num = await agent.join(list(addrs), wan=bool(body.get("WAN")))
            except JoinError as exc:
                self.send(seq, str(exc), {"Num": 0}, True)
                return
            self.send(seq, "", {"Num": num}, True)
        elif command == "force-leave":
            # "Prune" is senate's: `senate force-leave -prune` over the 0.7 RPC
            await agent.force_leave(str(body.get("Node", "")), prune=body.get("Prune") is True)
            self.send(seq, "")
        elif command == "leave":
            await agent.leave()
            self.send(seq, "")
        elif command == "stats":
            self.send(seq, "", agent.stats(), True)
        elif command == "reload":
            await agent.reload()
            self.send(seq, "")
        elif command == "monitor":
            self.start_monitor(
                seq, str(body.get("LogLevel", "INFO")).upper(), body.get("LogJSON") is True
            )
        elif command == "stop":
            target = body.get("Stop")
            task = self.monitors.pop(target, None) if isinstance(target, int) else None
            if task is not None:
                task.cancel()
            self.send(seq, "")
        else:
            op = _KEYRING_OPS[command]
            key = str(body.get("Key", "")) if op != "list" else None
            replies = await agent.keyring(op, key)
            # Per-pool failures travel in Info[].Error, as Consul's; the header's Error is only
            # for a keyring operation that could not run at all.
            self.send(seq, "", keyring_to_rpc(replies), True)

    def start_monitor(self, seq: int, level: str, log_json: bool = False) -> None:
        if level not in LOG_LEVELS:
            self.send(seq, f"Unknown log level: {level}")
            return
        if seq in self.monitors:
            self.send(seq, ERR_MONITOR_EXISTS)
            return
        stream = self.agent.log_stream(level, log_json)
        self.send(seq, "")
        self.monitors[seq] = asyncio.create_task(self._stream(seq, stream))

    async def _stream(self, seq: int, stream: AsyncIterator[str]) -> None:
        try:
            async for line in stream:
                self.send(seq, "", {"Log": line.rstrip("\n")}, True)
                await self.writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


class CLIRPCServer:
    """Serves the CLI RPC for one agent on client_addr:8400."""

    def __init__(self, agent: AgentAPI) -> None:
        self.agent = agent
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await _Conn(self.agent, reader, writer).serve()
        except asyncio.CancelledError:
            # stop() cancels open connections; ending quietly keeps asyncio's stream callback
            # from logging the cancellation as an error.
            pass
        finally:
            self._conns.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            conns = list(self._conns)
            for task in conns:
                task.cancel()
            await asyncio.gather(*conns, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
