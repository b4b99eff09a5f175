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
