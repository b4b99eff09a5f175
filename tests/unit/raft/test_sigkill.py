"""SIGKILL at an arbitrary instant loses no acknowledged entry (paper §5.1 persistence,
§5.4 safety): three OS processes on 127.0.0.1-3; the leader is killed -9 mid-stream, a new
leader carries on, and every entry either leader acknowledged is in a majority of the LMDB logs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path

from agent.raft.log_store import LMDBLogStore

SCRIPT = Path(__file__).with_name("raft_node_proc.py")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def test_sigkill_of_the_leader_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    addrs = [f"127.0.0.{i}:{_free_port(f'127.0.0.{i}')}" for i in (1, 2, 3)]
    procs: list[asyncio.subprocess.Process] = []
    acked: dict[int, tuple[int, str]] = {}  # log index -> (process, data)
    readers: list[asyncio.Task[None]] = []

    async def read(i: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            parts = raw.decode().split()
            if parts and parts[0] == "ACK":
                acked[int(parts[1])] = (i, parts[2])

    async def wait_acks(n: int, by: set[int], timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while sum(1 for p, _ in acked.values() if p in by) < n:
            assert loop.time() < deadline, f"only {len(acked)} acks from {by}"
            await asyncio.sleep(0.02)

    try:
        for i in range(3):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SCRIPT),
                str(i),
                ",".join(addrs),
                str(tmp_path / f"n{i}"),
                stdout=asyncio.subprocess.PIPE,
            )
            procs.append(proc)
            readers.append(asyncio.create_task(read(i, proc)))
        await wait_acks(300, {0, 1, 2})
        leader = acked[max(acked)][0]
        procs[leader].send_signal(signal.SIGKILL)  # mid-stream: writes in flight
        await procs[leader].wait()
        survivors = {0, 1, 2} - {leader}
        await wait_acks(300, survivors)
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGKILL)
            await p.wait()
        for t in readers:
            await t
        logs = []
        for i in range(3):
            store = LMDBLogStore(tmp_path / f"n{i}" / "raft")
            logs.append({e.index: e.data for e in store.load()[1]})
            store.close()
        for index, (_, data) in acked.items():
            holders = sum(1 for log in logs if log.get(index) == data.encode())
            assert holders >= 2, f"acknowledged entry {index} ({data}) is on {holders} disks"
        assert any(p != leader for p, _ in acked.values())
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGKILL)
                await p.wait()
        for t in readers:
            t.cancel()
