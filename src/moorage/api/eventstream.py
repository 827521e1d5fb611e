"""AWS event-stream framing, as InvokeEndpointWithResponseStream sends it (spec §4.5, §c.4, must-match 25).

One message:  [u32 total length][u32 headers length][u32 CRC32 of those 8 bytes]
              [headers][payload][u32 CRC32 of everything before it], all big-endian.
One header:   [u8 name length][name][u8 type = 7, a string][u16 value length][value].
"""

from __future__ import annotations

import json
import struct
import zlib

__all__ = ["exception_event", "payload_part"]

_STRING = 7


def _headers(pairs: tuple[tuple[str, str], ...]) -> bytes:
    out = bytearray()
    for name, value in pairs:
        raw_name, raw_value = name.encode(), value.encode()
        out += (
            struct.pack("!B", len(raw_name))
            + raw_name
            + struct.pack("!BH", _STRING, len(raw_value))
            + raw_value
        )
    return bytes(out)


def _message(headers: tuple[tuple[str, str], ...], payload: bytes) -> bytes:
    encoded = _headers(headers)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    head = prelude + struct.pack("!I", zlib.crc32(prelude))
    body = head + encoded + payload
    return body + struct.pack("!I", zlib.crc32(body))


def payload_part(data: bytes) -> bytes:
    """A PayloadPart event carrying raw model bytes; boto3 yields {"PayloadPart": {"Bytes": data}}."""
    return _message(
        (
            (":message-type", "event"),
            (":event-type", "PayloadPart"),
            (":content-type", "application/octet-stream"),
        ),
        data,
    )


def exception_event(kind: str, message: str, error_code: str | None = None) -> bytes:
    """An in-stream error such as ModelStreamError; boto3 raises EventStreamError with `message`.

    The payload is `{"Message", "ErrorCode"}` (ModelStreamError) or `{"Message"}` (InternalStreamFailure),
    the message cut to SageMaker's 2,048 characters (spec §c.4)."""
    fields = {"Message": message[:2048]}
    if error_code is not None:
        fields["ErrorCode"] = error_code
    return _message(
        ((":message-type", "exception"), (":exception-type", kind), (":content-type", "application/json")),
        json.dumps(fields).encode(),
    )
