"""CBOR (RFC 8949) as the Smithy RPC v2 CBOR protocol uses it: the wire format botocore speaks to CloudWatch.

Only what that protocol needs: maps with text keys, arrays, text and byte strings, integers, floats
(half, single, double), booleans, null, and tag 1 (epoch-seconds timestamps); definite and indefinite
lengths on input, definite lengths on output. Decoding a request body is the client's input, so every
failure is a SerializationException (400), nesting is bounded (`MAX_DEPTH`), and no declared length is
believed beyond the bytes actually present (a 5-byte body cannot make us allocate 4 GiB).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moorage.errors import SerializationException

__all__ = ["MAX_DEPTH", "Tagged", "decode", "encode"]

MAX_DEPTH = 64
_BREAK = object()


@dataclass(frozen=True)
class Tagged:
    """A tagged data item (tag 1: `value` is epoch seconds)."""

    tag: int
    value: Any


def decode(data: bytes) -> Any:
    """The one data item in `data`; tag 1 comes back as `Tagged(1, seconds)`."""
    reader = _Reader(data)
    try:
        value = reader.item(0)
    except (IndexError, struct.error, UnicodeDecodeError) as error:
        raise SerializationException(f"The request body is not valid CBOR: {error}") from None
    if value is _BREAK:
        raise SerializationException("The request body is not valid CBOR: a stray break code.")
    if reader.pos != len(data):
        raise SerializationException("The request body is not valid CBOR: bytes follow its one data item.")
    return value


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise SerializationException("The request body is not valid CBOR: it ends inside a data item.")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def argument(self, info: int) -> int | None:
        """The head's argument; None for the indefinite-length marker (31)."""
        if info < 24:
            return info
        if info == 31:
            return None
        if info > 27:
            raise SerializationException(
                f"The request body is not valid CBOR: reserved additional info {info}."
            )
        return int.from_bytes(self.take(1 << (info - 24)), "big")

    def item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SerializationException(
                f"The request body nests CBOR items more than {MAX_DEPTH} levels deep."
            )
        head = self.take(1)[0]
        major, info = head >> 5, head & 0x1F
        if major == 7:
            return self._simple(info)
        argument = self.argument(info)
        if major == 0:
            return _definite(argument)
        if major == 1:
            return -1 - _definite(argument)
        if major in (2, 3):
            raw = self._string(major, argument, depth)
            return raw if major == 2 else raw.decode("utf-8")
        if major == 4:
            return self._array(argument, depth)
        if major == 5:
            return self._map(argument, depth)
        # major 6: a tag; tag 1 is a timestamp, others carry their item through unchanged
        tag = _definite(argument)
        value = self.item(depth + 1)
        return Tagged(1, float(value)) if tag == 1 and isinstance(value, int | float) else value

    def _simple(self, info: int) -> Any:
        if info == 20:
            return False
        if info == 21:
            return True
        if info in (22, 23):
            return None
        if info == 25:
            return struct.unpack(">e", self.take(2))[0]
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        if info == 31:
            return _BREAK
        raise SerializationException(
            f"The request body is not valid CBOR: simple value {info} is not used here."
        )

    def _string(self, major: int, length: int | None, depth: int) -> bytes:
        if length is not None:
            return self.take(length)
        chunks: list[bytes] = []
        while True:
            head = self.take(1)[0]
            if head == 0xFF:
                return b"".join(chunks)
            if head >> 5 != major:
                raise SerializationException("The request body is not valid CBOR: a mixed indefinite string.")
            chunks.append(self.take(_definite(self.argument(head & 0x1F))))

    def _array(self, length: int | None, depth: int) -> list[Any]:
        items: list[Any] = []
        while length is None or len(items) < length:
            value = self.item(depth + 1)
            if value is _BREAK:
                if length is None:
                    return items
                raise SerializationException("The request body is not valid CBOR: a break inside an array.")
            items.append(value)
        return items

    def _map(self, length: int | None, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        count = 0
        while length is None or count < length:
            key = self.item(depth + 1)
            if key is _BREAK and length is None:
                return result
            if not isinstance(key, str):
                raise SerializationException(
                    "The request body is not valid CBOR here: map keys must be text."
                )
            value = self.item(depth + 1)
            if value is _BREAK:
                raise SerializationException("The request body is not valid CBOR: a map key without a value.")
            result[key] = value
            count += 1
        return result


def _definite(argument: int | None) -> int:
    if argument is None:
        raise SerializationException(
            "The request body is not valid CBOR: an indefinite length where none is allowed."
        )
    return argument


def encode(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """`value` as CBOR; `default` turns any other object into one of the supported ones (or a Tagged)."""
    out = bytearray()
    _encode(out, value, default)
    return bytes(out)


def _head(out: bytearray, major: int, argument: int) -> None:
    if argument < 24:
        out.append(major << 5 | argument)
    elif argument < 1 << 8:
        out += bytes((major << 5 | 24, argument))
    elif argument < 1 << 16:
        out.append(major << 5 | 25)
        out += argument.to_bytes(2, "big")
    elif argument < 1 << 32:
        out.append(major << 5 | 26)
        out += argument.to_bytes(4, "big")
    else:
        out.append(major << 5 | 27)
        out += argument.to_bytes(8, "big")


def _encode(out: bytearray, value: Any, default: Callable[[Any], Any] | None) -> None:
    if value is None:
        out.append(0xF6)
    elif value is True or value is False:
        out.append(0xF5 if value else 0xF4)
    elif isinstance(value, int):
        if value >= 0:
            _head(out, 0, value)
        else:
            _head(out, 1, -1 - value)
    elif isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            out.append(0xF9)
            out += struct.pack(">e", value)
        else:
            out.append(0xFB)
            out += struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        _head(out, 3, len(raw))
        out += raw
    elif isinstance(value, bytes | bytearray):
        _head(out, 2, len(value))
        out += value
    elif isinstance(value, list | tuple):
        _head(out, 4, len(value))
        for item in value:
            _encode(out, item, default)
    elif isinstance(value, dict):
        _head(out, 5, len(value))
        for key, item in value.items():
            _encode(out, str(key), default)
            _encode(out, item, default)
    elif isinstance(value, Tagged):
        _head(out, 6, value.tag)
        _encode(out, value.value, default)
    elif default is not None:
        _encode(out, default(value), None)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as CBOR")
