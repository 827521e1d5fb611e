"""The stream frames: each kind survives the worker protocol's framing, and stays apart from the others."""

from __future__ import annotations

import pytest

from moorage.streaming.frames import (
    EndHow,
    StreamCancel,
    StreamCredit,
    StreamEnd,
    StreamHead,
    StreamMessage,
    StreamOpen,
    StreamPart,
    encode_stream,
)
from moorage.worker.protocol import Invoke, ProtocolError, decode, encode, split_frames

MESSAGES: list[StreamMessage] = [
    StreamOpen(7, 16),
    StreamCredit(7, 8),
    StreamCancel(7),
    StreamHead(
        7,
        200,
        b"first",
        "text/plain; charset=utf-8",
        None,
        (("X-Amzn-SageMaker-Custom-Attributes", "a=1"),),
        42,
    ),
    StreamHead(8, 206, b"", None, "Partial", (), 0),
    StreamPart(7, b"\x00\xff" * 1000),
    StreamPart(7, b""),
    StreamEnd(7, EndHow.FAILED, "ran out of ideas: é", 123456),
    StreamEnd(7, EndHow.DONE),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_each_stream_message_round_trips_through_the_protocol(message: StreamMessage) -> None:
    buffer = bytearray(b"".join(encode_stream(message)))
    (frame,) = split_frames(buffer)
    assert decode(frame) == message


def test_stream_frames_interleave_with_ordinary_ones() -> None:
    invoke = Invoke(9, b"{}", "application/json")
    buffer = bytearray(
        b"".join([*encode_stream(StreamOpen(9, 4)), *encode(invoke), *encode_stream(StreamCancel(9))])
    )
    assert [decode(frame) for frame in split_frames(buffer)] == [StreamOpen(9, 4), invoke, StreamCancel(9)]


def test_a_truncated_stream_frame_is_a_protocol_error() -> None:
    frame = b"".join(encode_stream(StreamCredit(1, 2)))[4:]
    with pytest.raises(ProtocolError):
        decode(frame[:-1])
