"""One page of a bucket listing: prefix, delimiter (CommonPrefixes), max-keys and where to resume.

Pure logic over a `fetch` function that returns keys in S3's order (UTF-8 byte order), so that the
rules can be tested without a store. Keys are bytes throughout. A common prefix counts as one entry
toward max-keys and is skipped over in one step, as S3 does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from moorage.s3.errors import InvalidArgument

__all__ = [
    "Page",
    "Position",
    "decode_token",
    "encode_token",
    "list_page",
    "marker_position",
    "prefix_upper_bound",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Position:
    """Where a listing resumes: keys >= `bound` when `inclusive`, else keys > `bound`."""

    bound: bytes
    inclusive: bool


Fetch = Callable[[Position, int], Sequence[tuple[bytes, T]]]
"""(position, limit) → up to `limit` (key, item) pairs at or after position, within the prefix, ascending."""


@dataclass(frozen=True)
class Page(Generic[T]):
    contents: list[tuple[bytes, T]] = field(default_factory=list)
    common_prefixes: list[bytes] = field(default_factory=list)
    truncated: bool = False
    next_position: Position | None = None  # set when truncated
    last: bytes | None = None  # the last key or common prefix on the page (ListObjects v1's NextMarker)


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string that starts with `prefix` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _common_prefix(key: bytes, prefix: bytes, delimiter: bytes) -> bytes | None:
    if not delimiter:
        return None
    index = key.find(delimiter, len(prefix))
    return None if index < 0 else key[: index + len(delimiter)]


def _past(prefix: bytes) -> Position | None:
    upper = prefix_upper_bound(prefix)
    return None if upper is None else Position(upper, True)


def marker_position(marker: bytes | None, prefix: bytes, delimiter: bytes) -> Position | None:
    """Where a listing "after `marker`" starts (None: nothing can follow).

    A marker that is itself a common prefix (what ListObjects v1 returns as NextMarker when a page
    ends on one) stands for everything under it: those keys were already reported as that prefix.
    """
    if marker is None or marker < prefix:
        return Position(prefix, True)
    if marker.startswith(prefix) and _common_prefix(marker, prefix, delimiter) == marker:
        return _past(marker)
    return Position(marker, False)


def list_page(
    fetch: Fetch[T], *, prefix: bytes, delimiter: bytes, start: Position | None, max_keys: int
) -> Page[T]:
    contents: list[tuple[bytes, T]] = []
    prefixes: list[bytes] = []
    position = start
    last: bytes | None = None
    count = 0
    while position is not None and count < max_keys:
        batch = fetch(position, min(max_keys - count, 1000))
        if not batch:
            position = None
            break
        for key, item in batch:
            common = _common_prefix(key, prefix, delimiter)
            if common is not None:
                prefixes.append(common)
                last = common
                count += 1
                position = _past(common)
                break  # resume past everything under this prefix
            contents.append((key, item))
            last = key
            count += 1
            position = Position(key, False)
            if count == max_keys:
                break
    truncated = max_keys > 0 and position is not None and bool(fetch(position, 1))
    return Page(contents, prefixes, truncated, position if truncated else None, last)


def encode_token(position: Position) -> str:
    raw = (b"\x01" if position.inclusive else b"\x00") + position.bound
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if not raw or raw[0] not in (0, 1):
        raise InvalidArgument(
            "The continuation token provided is incorrect",
            fields=(("ArgumentName", "continuation-token"), ("ArgumentValue", token)),
        )
    return Position(raw[1:], raw[0] == 1)
