"""Frames between server and worker: every message survives the round trip, garbage is refused."""

from __future__ import annotations

import pytest

from moorage.worker.protocol import (
    REPLY_TOO_LARGE,
    Invoke,
    LoadFailed,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    Reply,
    WorkerSpec,
    decode,
    encode,
    split_frames,
)

MESSAGES: list[Message] = [
    Invoke(
        7,
        b"\x00body\xff" * 3,
        "application/json",
        None,
        (("X-Amzn-SageMaker-Custom-Attributes", "a=1"),),
        4,
        2,
    ),
    Invoke(8, b"", None, "*/*"),
    Reply(7, 200, b"[[1.0]]", "application/json", None, (("X-Amzn-SageMaker-Custom-Attributes", "b=2"),)),
    Reply(9, 500, b"", None, "Response too large", (), REPLY_TOO_LARGE),
    Ready(pid=123, load_seconds=1.5, device="cpu"),
    LoadFailed(error="ValueError: nope", detail="Traceback ..."),
    Ping(42),
    Pong(42),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    buffer = bytearray(b"".join(encode(message)))
    frames = split_frames(buffer)
    assert buffer == b""
    assert [decode(frame) for frame in frames] == [message]


def test_partial_frames_wait_for_the_rest() -> None:
    data = b"".join(encode(MESSAGES[0])) + b"".join(encode(MESSAGES[2]))
    buffer = bytearray(data[:10])
    assert split_frames(buffer) == []
    buffer += data[10:]
    assert [decode(f) for f in split_frames(buffer)] == [MESSAGES[0], MESSAGES[2]]


def test_reply_flags_say_when_the_body_was_too_large() -> None:
    assert Reply(1, 500, b"", flags=REPLY_TOO_LARGE).too_large
    assert not Reply(1, 200, b"x").too_large


@pytest.mark.parametrize("frame", [b"", b"\x63", b"\x01\x00\x00", b"\x03{not json", b'\x04{"error": 1}'])
def test_garbage_is_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(frame)


def test_a_huge_length_prefix_is_refused_before_buffering() -> None:
    with pytest.raises(ProtocolError):
        split_frames(bytearray(b"\xff\xff\xff\xff\x01"))


def test_worker_spec_round_trips_through_json() -> None:
    spec = WorkerSpec(
        endpoint="e",
        variant="v",
        instance_id="i-1",
        worker_index=0,
        model_dir="/m",
        code_dir=None,
        deps_dir="/d",
        program="inference",
        environment={"A": "b"},
        gpu_id=1,
    )
    assert WorkerSpec.from_json(spec.to_json()) == spec
