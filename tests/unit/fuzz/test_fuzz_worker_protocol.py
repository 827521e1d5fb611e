"""Fuzzing the worker frame decoder: a worker runs user code, so the server must survive any bytes from it.

Whatever arrives, `split_frames` and `decode` answer with frames and messages or with ProtocolError,
never with another exception (which would escape the server's protocol callback).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moorage.worker.protocol import (
    Invoke,
    LoadFailed,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    Reply,
    decode,
    encode,
    split_frames,
)

FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = [Invoke.kind, Reply.kind, Ready.kind, LoadFailed.kind, Ping.kind, Pong.kind, 0, 7, 255]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


def decodes_or_refuses(frame: bytes) -> None:
    try:
        message = decode(frame)
    except ProtocolError:
        return
    assert message.kind == frame[0]


@FAST
@given(st.binary(max_size=300))
@example(b"\x03" + b"[" * 100_000)  # deeper than the interpreter's recursion limit
@example(b'\x04{"error": 1}')
@example(b"\x03null")
def test_random_frames_decode_or_are_a_protocol_error(frame: bytes) -> None:
    decodes_or_refuses(frame)


@FAST
@given(st.sampled_from(KINDS), st.binary(max_size=64))
def test_each_kind_with_a_random_payload_decodes_or_is_a_protocol_error(kind: int, payload: bytes) -> None:
    decodes_or_refuses(bytes([kind]) + payload)


@FAST
@given(st.sampled_from([Ready.kind, LoadFailed.kind]), json_values)
def test_control_messages_with_any_json_decode_or_are_a_protocol_error(kind: int, value: object) -> None:
    decodes_or_refuses(bytes([kind]) + json.dumps(value).encode())


@FAST
@given(st.binary(max_size=400))
def test_split_frames_takes_whole_frames_or_refuses(data: bytes) -> None:
    buffer = bytearray(data)
    try:
        frames = split_frames(buffer)
    except ProtocolError:
        return
    assert sum(4 + len(frame) for frame in frames) + len(buffer) == len(data)
    for frame in frames:
        if frame:
            decodes_or_refuses(frame)


@FAST
@given(
    st.integers(0, 2**64 - 1),
    st.binary(max_size=64),
    st.none() | st.text(st.characters(max_codepoint=255), max_size=20),
    st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3),
)
def test_invoke_frames_round_trip(
    request_id: int, body: bytes, content_type: str | None, headers: list[tuple[str, str]]
) -> None:
    message = Invoke(request_id, body, content_type, None, tuple(headers))
    wire = b"".join(encode(message))
    (frame,) = split_frames(bytearray(wire))
    decoded = decode(frame)
    assert isinstance(decoded, Invoke)
    assert (decoded.request_id, decoded.body, decoded.content_type) == (request_id, body, content_type)
    assert decoded.headers == tuple(
        (
            name.encode("latin-1", "replace").decode("latin-1"),
            value.encode("latin-1", "replace").decode("latin-1"),
        )
        for name, value in headers
    )
