"""The worker-protocol messages of one streamed answer, framed like every other message.

Same framing as worker/protocol.py (4-byte length, 1-byte kind, payload), kinds of their own (16-21) so
a plain request's frames stay byte for byte what they were. The exchange, for one request:

    server → worker   StreamOpen(id, window)    just before the Invoke: this request may stream, and the
                                                worker may send `window` parts before waiting for credit
    server → worker   Invoke(id, ...)
    worker → server   StreamHead(id, status, content type, headers, first part)
    worker → server   StreamPart(id, bytes) ... one per item the handler yields, while credit lasts
    server → worker   StreamCredit(id, n)       n more parts may be sent (the client took some)
    server → worker   StreamCancel(id)          the client left: stop the generator
    worker → server   StreamEnd(id, how, message, µs)

A request whose handler does not stream is answered with its ordinary Reply, StreamOpen or not.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from moorage.worker.protocol import (
    _LENGTH,
    MAX_FRAME,
    ProtocolError,
    _Cursor,
    _put_headers,
    _put_str,
)

__all__ = [
    "STREAM_KINDS",
    "EndHow",
    "StreamCancel",
    "StreamCredit",
    "StreamEnd",
    "StreamHead",
    "StreamMessage",
    "StreamOpen",
    "StreamPart",
    "decode_stream",
    "encode_stream",
]

_ID = struct.Struct("!Q")
_ID_COUNT = struct.Struct("!QI")
_HEAD = struct.Struct("!QHI")  # request id, status, handler time to the first part in µs
_END = struct.Struct("!QBI")  # request id, how it ended, handler time in µs


class EndHow:
    """How a stream ended (StreamEnd.how)."""

    DONE: Final = 0  # the generator was exhausted
    FAILED: Final = 1  # the handler raised after the first part; `message` is its text
    CANCELLED: Final = 2  # the server asked (the client left); the generator was closed
    BROKEN: Final = 3  # the worker itself could not go on (an item it cannot send); `message` says why


@dataclass(frozen=True)
class StreamOpen:
    kind: ClassVar[int] = 16
    request_id: int
    window: int


@dataclass(frozen=True)
class StreamCredit:
    kind: ClassVar[int] = 17
    request_id: int
    parts: int


@dataclass(frozen=True)
class StreamCancel:
    kind: ClassVar[int] = 18
    request_id: int


@dataclass(frozen=True)
class StreamHead:
    kind: ClassVar[int] = 19
    request_id: int
    status: int
    body: bytes  # the first part
    content_type: str | None = None
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    model_us: int = 0


@dataclass(frozen=True)
class StreamPart:
    kind: ClassVar[int] = 20
    request_id: int
    body: bytes


@dataclass(frozen=True)
class StreamEnd:
    kind: ClassVar[int] = 21
    request_id: int
    how: int
    message: str = ""
    model_us: int = 0


StreamMessage = StreamOpen | StreamCredit | StreamCancel | StreamHead | StreamPart | StreamEnd
STREAM_KINDS: Final = frozenset(
    kind.kind for kind in (StreamOpen, StreamCredit, StreamCancel, StreamHead, StreamPart, StreamEnd)
)


def encode_stream(message: StreamMessage) -> list[bytes]:
    """Frame a stream message as a list of byte strings (a part's bytes last, uncopied)."""
    parts: list[bytes] = [b"", bytes((message.kind,))]
    if isinstance(message, StreamOpen):
        parts.append(_ID_COUNT.pack(message.request_id, message.window))
    elif isinstance(message, StreamCredit):
        parts.append(_ID_COUNT.pack(message.request_id, message.parts))
    elif isinstance(message, StreamCancel):
        parts.append(_ID.pack(message.request_id))
    elif isinstance(message, StreamHead):
        parts.append(_HEAD.pack(message.request_id, message.status, min(message.model_us, 0xFFFFFFFF)))
        _put_str(parts, message.content_type)
        _put_str(parts, message.reason)
        _put_headers(parts, message.headers)
        parts.append(message.body)
    elif isinstance(message, StreamPart):
        parts.append(_ID.pack(message.request_id))
        parts.append(message.body)
    else:
        parts.append(_END.pack(message.request_id, message.how, min(message.model_us, 0xFFFFFFFF)))
        parts.append(message.message.encode("utf-8", "replace"))
    length = sum(len(p) for p in parts)
    if length > MAX_FRAME:
        raise ProtocolError(f"stream message of {length} bytes exceeds the frame limit")
    parts[0] = _LENGTH.pack(length)
    return parts


def decode_stream(kind: int, view: memoryview) -> StreamMessage:
    """Parse a stream frame's content after its kind byte; struct.error or ValueError when malformed."""
    cursor = _Cursor(view, 0)
    if kind == StreamOpen.kind:
        return StreamOpen(*_ID_COUNT.unpack(cursor.take(_ID_COUNT.size)))
    if kind == StreamCredit.kind:
        return StreamCredit(*_ID_COUNT.unpack(cursor.take(_ID_COUNT.size)))
    if kind == StreamCancel.kind:
        return StreamCancel(*_ID.unpack(cursor.take(_ID.size)))
    if kind == StreamHead.kind:
        request_id, status, model_us = _HEAD.unpack(cursor.take(_HEAD.size))
        content_type, reason = cursor.string(), cursor.string()
        headers = cursor.headers()
        return StreamHead(request_id, status, cursor.rest(), content_type, reason, headers, model_us)
    if kind == StreamPart.kind:
        (request_id,) = _ID.unpack(cursor.take(_ID.size))
        return StreamPart(request_id, cursor.rest())
    if kind == StreamEnd.kind:
        request_id, how, model_us = _END.unpack(cursor.take(_END.size))
        return StreamEnd(request_id, how, cursor.rest().decode("utf-8", "replace"), model_us)
    raise ValueError(f"{kind} is not a stream frame kind")
