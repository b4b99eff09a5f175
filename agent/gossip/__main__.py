"""`python -m agent.gossip`: a gossip-only agent (one LAN pool), for process tests and the
benchmark until the full `senate agent` exists.

    python -m agent.gossip -node n1 -bind 127.0.0.2 -ctl /tmp/n1.sock [-join 127.0.0.3]
        [-port 8301] [-profile lan|wan|local] [-encrypt KEY] [-data-dir DIR] [-dc dc1]
        [-tag k=v ...] [-log-level info]

The control socket (-ctl, a unix socket) speaks one-line requests, one JSON line replies:
    members                 -> [{"Name", "Addr", "Port", "Status", "Tags"}, ...]
    event NAME [PAYLOAD]    -> {"ok": true}          (coalesce=false, as `serf event`)
    events                  -> [{"Name", "Payload", "LTime", "Time"}, ...]  (Time = wall clock)
    member-events           -> [{"Type", "Name", "Time"}, ...]
    join ADDR...            -> {"joined": n} or {"error": "..."}
    stats                   -> the serf stats map and the drop counters
    leave                   -> {"ok": true}, then the process exits 0
SIGTERM shuts down without leaving (as a crash would look, minus the timeout); SIGINT leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.gossip.config import Profile
from agent.gossip.consul import lan_merge_check
from agent.gossip.keyring import Keyring, KeyringError
from agent.gossip.runner import GossipPool, JoinError
from agent.gossip.serf_types import Member, MemberEvent, Query, UserEvent, UserEventError
from agent.logfmt import LEVEL_BY_NAME, ConsulFormatter

log = logging.getLogger("agent")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent.gossip", description=__doc__.split("\n")[0])
    p.add_argument("-node", required=True, help="node name")
    p.add_argument("-bind", default="127.0.0.1", help="address to bind UDP and TCP on")
    p.add_argument("-port", type=int, default=8301, help="gossip port (default 8301)")
    p.add_argument("-advertise", default="", help="address to advertise (default: -bind)")
    p.add_argument("-join", action="append", default=[], help="address to join at start")
    p.add_argument("-profile", default="lan", choices=["lan", "wan", "local"])
    p.add_argument("-encrypt", default="", help="base64 gossip encryption key")
    p.add_argument("-data-dir", default="", help="keeps serf/local.snapshot for rejoin")
    p.add_argument("-dc", default="dc1", help="datacenter (tag dc; joins across dcs refused)")
    p.add_argument("-tag", action="append", default=[], help="extra tag key=value")
    p.add_argument("-ctl", default="", help="unix socket for the control line protocol")
    p.add_argument("-log-level", default="info", choices=sorted(LEVEL_BY_NAME))
    args = p.parse_args(argv)
    if not 0 < args.port < 65536:
        p.error(f"invalid -port {args.port}: must be 1-65535")
    for tag in args.tag:
        if "=" not in tag:
            p.error(f"invalid -tag {tag!r}: expected key=value")
    return args


def dc_merge_check(dc: str) -> Callable[[list[Member]], str | None]:
    """Consul's lanMergeDelegate: refuse members of another datacenter."""
    return lan_merge_check(dc)


class GossipAgent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.user_events: list[dict[str, Any]] = []
        self.member_events: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        tags = {"dc": args.dc, "role": "node"}
        tags.update(dict(t.split("=", 1) for t in args.tag))
        keyring = Keyring.from_base64([args.encrypt]) if args.encrypt else None
        snapshot = Path(args.data_dir) / "serf" / "local.snapshot" if args.data_dir else None
        self.pool = GossipPool(
            name="lan",
            node_name=args.node,
            bind_addr=args.bind,
            bind_port=args.port,
            advertise_addr=args.advertise or args.bind,
            advertise_port=args.port,
            tags=tags,
            profile=Profile.named(args.profile),
            keyring=keyring,
            snapshot_path=snapshot,
            merge_check=dc_merge_check(args.dc),
            on_event=self.on_event,
        )

    def on_event(self, event: MemberEvent | UserEvent | Query) -> None:
        now = time.time()
        if isinstance(event, UserEvent):
            self.user_events.append(
                {
                    "Name": event.name,
                    "Payload": event.payload.decode("utf-8", "replace"),
                    "LTime": event.ltime,
                    "Time": now,
                }
            )
        elif isinstance(event, MemberEvent):
            for m in event.members:
                self.member_events.append({"Type": event.type, "Name": m.name, "Time": now})

    async def command(self, line: str) -> Any:
        words = line.split()
        if not words:
            return {"error": "empty command"}
        cmd, rest = words[0], words[1:]
        if cmd == "members":
            return [
                {"Name": m.name, "Addr": m.addr, "Port": m.port, "Status": m.status, "Tags": m.tags}
                for m in self.pool.members()
            ]
        if cmd == "event":
            if not rest:
                return {"error": "usage: event NAME [PAYLOAD]"}
            payload = " ".join(rest[1:]).encode()
            try:
                self.pool.user_event(rest[0], payload, coalesce=False)
            except UserEventError as exc:
                return {"error": str(exc)}
            return {"ok": True}
        if cmd == "events":
            return self.user_events
        if cmd == "member-events":
            return self.member_events
        if cmd == "join":
            try:
                return {"joined": await self.pool.join(rest)}
            except JoinError as exc:
                return {"error": str(exc)}
        if cmd == "stats":
            return {**self.pool.stats(), **{k: v for k, v in self.pool.metrics.items()}}
        if cmd == "leave":
            await self.pool.leave()
            self.done.set()
            return {"ok": True}
        return {"error": f"unknown command {cmd!r}"}

    async def serve_ctl(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    text = line.decode("utf-8").strip()
                    reply = await self.command(text)
                except UnicodeDecodeError:
                    reply = {"error": "command is not UTF-8"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def run(self) -> int:
        await self.pool.start()
        loop = asyncio.get_running_loop()
        leave_on_exit = False

        def on_signal(leave: bool) -> None:
            nonlocal leave_on_exit
            leave_on_exit = leave
            self.done.set()

        loop.add_signal_handler(signal.SIGTERM, on_signal, False)
        loop.add_signal_handler(signal.SIGINT, on_signal, True)
        server = None
        if self.args.ctl:
            with contextlib.suppress(FileNotFoundError):
                Path(self.args.ctl).unlink()
            server = await asyncio.start_unix_server(self.serve_ctl, self.args.ctl)
        code = 0
        if self.args.join:
            try:
                n = await self.pool.join(self.args.join)
                log.info("(LAN) joined: %d", n)
            except JoinError as exc:
                log.error("(LAN) join failed: %s", exc)
                code = 1
                self.done.set()
        await self.done.wait()
        if leave_on_exit:
            await self.pool.leave()
        await self.pool.shutdown()
        if server is not None:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                Path(self.args.ctl).unlink()
        return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(ConsulFormatter())
    logging.basicConfig(level=LEVEL_BY_NAME[args.log_level], handlers=[handler])
    try:
        agent = GossipAgent(args)
    except KeyringError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    try:
        return int(runner(agent.run()))
    except OSError as exc:
        print(f"Error starting agent: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
