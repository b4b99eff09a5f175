"""Framing of the TCP protocols: round trips, and bad frames refused without a crash."""

import asyncio

import pytest

from agent.codec import FrameError, encode_frame, read_frame


async def _feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_frame_round_trip() -> None:
    reader = await _feed(encode_frame({"Op": "set", "Value": b"\x00\xff"}) + encode_frame([1, 2]))
    assert await read_frame(reader) == {"Op": "set", "Value": b"\x00\xff"}
    assert await read_frame(reader) == [1, 2]
    with pytest.raises(EOFError):
        await read_frame(reader)


async def test_oversized_frame_refused() -> None:
    reader = await _feed((10_000).to_bytes(4, "big") + b"x" * 10)
    with pytest.raises(FrameError, match="exceeds limit"):
        await read_frame(reader, max_size=1000)


async def test_truncated_and_garbage_frames() -> None:
    with pytest.raises(FrameError, match="truncated"):
        await read_frame(await _feed(b"\x00\x00\x00\x09abc"))
    with pytest.raises(FrameError, match="malformed"):
        await read_frame(await _feed(b"\x00\x00\x00\x01\xc1"))


async def test_large_frames_share_one_budget() -> None:
    """Connections announcing huge frames cost the process at most LARGE_FRAMES.budget: the
    announcement that would pass it is refused before any of its body is buffered."""
    import struct

    from agent import codec

    size = codec.LARGE_FRAMES.budget // 2 + 1
    first = asyncio.StreamReader()
    first.feed_data(struct.pack(">I", size))  # announced, body still to come
    pending = asyncio.ensure_future(codec.read_frame(first, max_size=size))
    await asyncio.sleep(0)
    assert codec.LARGE_FRAMES.in_flight == size
    second = asyncio.StreamReader()
    second.feed_data(struct.pack(">I", size))
    with pytest.raises(codec.FrameError, match="refused"):
        await codec.read_frame(second, max_size=size)
    # small frames are never held back by the budget
    small = asyncio.StreamReader()
    small.feed_data(codec.encode_frame({"ok": 1}))
    assert await codec.read_frame(small) == {"ok": 1}
    first.feed_eof()  # the peer goes away mid-body: its share comes back
    with pytest.raises(codec.FrameError, match="truncated"):
        await pending
    assert codec.LARGE_FRAMES.in_flight == 0
