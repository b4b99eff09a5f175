"""The raft wire: messages round-trip; malformed, oversized or unknown frames close only that
connection and are logged, and the server keeps serving."""

from __future__ import annotations

import asyncio
import logging

import pytest
from raft_harness import Cluster, put, wait_for

from agent.codec import RPCType, encode_frame
from agent.raft.messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    InstallSnapshot,
    RequestVote,
    ServerInfo,
    SnapshotMeta,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)
from agent.raft.wire import WireError, decode, encode

SERVERS = (ServerInfo("a:1", "a:1", "Voter"), ServerInfo("b:1", "b:1", "Nonvoter"))


@pytest.mark.parametrize(
    "msg",
    [
        RequestVote(3, "a:1", "b:1", 10, 2, pre_vote=True),
        VoteResponse(3, "b:1", "a:1", True, False),
        AppendEntries(
            3,
            "a:1",
            "b:1",
            4,
            2,
            (
                Entry(5, 3, EntryKind.COMMAND, b"\x00"),
                Entry(6, 3, EntryKind.CONFIGURATION, servers=SERVERS),
            ),
            5,
            7,
            1.5,
        ),
        AppendResponse(3, "b:1", "a:1", False, 0, 4, 2, 1, 7, 1.5),
        InstallSnapshot(3, "a:1", "b:1", SnapshotMeta(9, 3, SERVERS), 0, b"abc", False, 1, 2.0),
        SnapshotResponse(3, "b:1", "a:1", 9, 3, False, 1, 2.0),
        TimeoutNow(3, "a:1", "b:1"),
    ],
)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg)) == msg  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "obj",
    [
        {"not": "a list"},
        [],
        [99, 1, 2],
        [1, "term", "a", "b", 1, 1, False, False],
        [3, 1, "a", "b", 0, 0, [[1, 1, 9, b"", []]], 0, 0, 0.0],
        [4, 1, "a", "b"],
    ],
)
def test_malformed_messages_are_refused(obj: object) -> None:
    with pytest.raises(WireError):
        decode(obj)


async def test_bad_frames_close_the_connection_not_the_server(
    cluster3: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await cluster3.wait_leader()
    host, port = cluster3.addresses[0].rsplit(":", 1)
    bad = [
        encode_frame({"Version": 1, "ID": "x"}) + encode_frame(["garbage"]),
        encode_frame({"Version": 1, "ID": "x"}) + b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1",
        (200_000_000).to_bytes(4, "big") + b"zz",
        encode_frame({"Version": 99}),
    ]
    with caplog.at_level(logging.ERROR, logger="raft"):
        for payload in bad:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(bytes([RPCType.RAFT]) + payload)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed by the server
            writer.close()
    assert sum("failed to decode incoming command" in r.message for r in caplog.records) == 4
    await leader.apply(put("still", b"works"))
    await wait_for(lambda: all(f.data.get("still") == b"works" for f in cluster3.fsms))
