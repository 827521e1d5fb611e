"""Pagination tokens for the log operations: opaque to clients, stateless for the server.

- GetLogEvents: `f/<position>` and `b/<position>` (CloudWatch's tokens start the same way), where the
  position is a stream position (stable across rotations). At the end of a stream the forward token
  comes back unchanged, which is how CloudWatch tells a reader it has caught up.
- FilterLogEvents: every searched stream's position, so the next page resumes each where it stopped.
- DescribeLogGroups / DescribeLogStreams: where the next page starts in the listing's order.

A token we could not have issued is an InvalidParameterException, as CloudWatch answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Literal

from moorage.logs.errors import InvalidParameterException

__all__ = [
    "decode_event_token",
    "decode_filter_token",
    "decode_page_token",
    "encode_event_token",
    "encode_filter_token",
    "encode_page_token",
]

Direction = Literal["f", "b"]

_EVENT_TOKEN = re.compile(r"(?P<direction>[fb])/(?P<position>\d{1,20})")
_INVALID = "The specified nextToken is invalid."
_MAX_POSITION = 1 << 63  # a file offset; a larger one would overflow the seek it feeds


def encode_event_token(direction: Direction, position: int) -> str:
    return f"{direction}/{position:020d}"


def decode_event_token(token: str) -> tuple[Direction, int]:
    match = _EVENT_TOKEN.fullmatch(token)
    if match is None:
        raise InvalidParameterException(_INVALID)
    direction: Direction = "f" if match["direction"] == "f" else "b"
    return direction, int(match["position"])


def _encode(payload: object) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: a forged, deeply nested token
        raise InvalidParameterException(_INVALID) from None


def encode_filter_token(positions: dict[str, int]) -> str:
    return _encode({"p": positions})


def decode_filter_token(token: str) -> dict[str, int]:
    payload = _decode(token)
    positions = payload.get("p") if isinstance(payload, dict) else None
    if not isinstance(positions, dict) or not all(
        isinstance(name, str) and type(position) is int and 0 <= position < _MAX_POSITION
        for name, position in positions.items()
    ):
        raise InvalidParameterException(_INVALID)
    return positions


def encode_page_token(after: str | None = None, skip: int | None = None) -> str:
    """A listing's next page: after a name (listings in name order) or after `skip` items."""
    return _encode({"a": after} if after is not None else {"s": skip})


def decode_page_token(token: str) -> tuple[str | None, int]:
    """(the name to start after, or None; how many items to skip)."""
    payload = _decode(token)
    if isinstance(payload, dict) and len(payload) == 1:
        after, skip = payload.get("a"), payload.get("s")
        if isinstance(after, str):
            return after, 0
        if isinstance(skip, int) and not isinstance(skip, bool) and skip >= 0:
            return None, skip
    raise InvalidParameterException(_INVALID)
