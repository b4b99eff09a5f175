"""One RaftNode in its own OS process, for the SIGKILL test.

    python raft_node_proc.py <index> <addr,addr,addr> <data_dir>

When it leads, it proposes `<index>:<n>` commands from 8 concurrent proposers and prints
`ACK <log index> <data>` (flushed) for each one raft acknowledged. Runs until killed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from agent.mux import PortMux
from agent.raft.config import RaftConfig
from agent.raft.runner import NotLeaderError, RaftNode, ServerInfo


class IndexFSM:
    def apply(self, index: int, term: int, data: bytes) -> Any:
        return index

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


async def main(index: int, addrs: list[str], data_dir: Path) -> None:
    logging.getLogger("raft").setLevel(logging.ERROR)
    addr = addrs[index]
    host, port = addr.rsplit(":", 1)
    mux = PortMux()
    await mux.start(host, int(port))
    node = RaftNode(
        node_id=addr,
        address=addr,
        data_dir=data_dir,
        fsm=IndexFSM(),
        mux=mux,
        config=RaftConfig.dev(),
    )
    await node.bootstrap([ServerInfo(a, a, "Voter") for a in addrs])
    await node.start()
    print("READY", flush=True)
    counter = 0

    async def proposer() -> None:
        nonlocal counter
        while True:
            if not node.is_leader():
                await asyncio.sleep(0.01)
                continue
            counter += 1
            data = f"{index}:{counter}".encode()
            try:
                log_index = await node.apply(data, timeout=2.0)
            except (NotLeaderError, TimeoutError):
                continue
            sys.stdout.write(f"ACK {log_index} {data.decode()}\n")
            sys.stdout.flush()

    await asyncio.gather(*(proposer() for _ in range(8)))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2].split(","), Path(sys.argv[3])))
