"""Listing pages over an in-memory key list: S3's delimiter, max-keys and resume rules."""

from __future__ import annotations

import bisect
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.s3.errors import InvalidArgument
from moorage.s3.listing import (
    Page,
    Position,
    decode_token,
    encode_token,
    list_page,
    marker_position,
    prefix_upper_bound,
)


def _fetcher(keys: list[bytes], prefix: bytes) -> Callable[[Position, int], list[tuple[bytes, None]]]:
    ordered = sorted(set(keys))

    def fetch(position: Position, limit: int) -> list[tuple[bytes, None]]:
        bound = max(position.bound, prefix)
        inclusive = position.inclusive or bound != position.bound
        start = bisect.bisect_left(ordered, bound) if inclusive else bisect.bisect_right(ordered, bound)
        out: list[tuple[bytes, None]] = []
        for key in ordered[start:]:
            if not key.startswith(prefix):
                if key > prefix:
                    break
                continue
            out.append((key, None))
            if len(out) == limit:
                break
        return out

    return fetch


def _all_pages(keys: list[bytes], prefix: bytes, delimiter: bytes, max_keys: int) -> list[Page[None]]:
    fetch = _fetcher(keys, prefix)
    pages: list[Page[None]] = []
    start: Position | None = marker_position(None, prefix, delimiter)
    for _ in range(len(keys) + 2):  # every page but the last reports something new
        page = list_page(fetch, prefix=prefix, delimiter=delimiter, start=start, max_keys=max_keys)
        pages.append(page)
        if not page.truncated:
            return pages
        assert page.next_position is not None
        start = decode_token(encode_token(page.next_position))  # through the wire form
    raise AssertionError("the listing never finished")


def _expected(keys: list[bytes], prefix: bytes, delimiter: bytes) -> tuple[list[bytes], list[bytes]]:
    contents: list[bytes] = []
    prefixes: set[bytes] = set()
    for key in sorted(set(keys)):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if delimiter and delimiter in rest:
            prefixes.add(prefix + rest[: rest.index(delimiter) + len(delimiter)])
        else:
            contents.append(key)
    return contents, sorted(prefixes)


KEYS = st.lists(st.text(alphabet="ab/ñ", min_size=1, max_size=6).map(str.encode), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    keys=KEYS,
    prefix=st.sampled_from([b"", b"a", b"a/", b"b/a"]),
    delimiter=st.sampled_from([b"", b"/", b"b", b"/a"]),
    max_keys=st.integers(1, 5),
)
def test_pages_report_every_key_and_prefix_once_in_order(
    keys: list[bytes], prefix: bytes, delimiter: bytes, max_keys: int
) -> None:
    pages = _all_pages(keys, prefix, delimiter, max_keys)
    contents = [key for page in pages for key, _ in page.contents]
    prefixes = [common for page in pages for common in page.common_prefixes]
    assert (contents, sorted(prefixes)) == _expected(keys, prefix, delimiter)
    assert len(prefixes) == len(set(prefixes))
    for page in pages:
        assert len(page.contents) + len(page.common_prefixes) <= max_keys
    assert all(page.truncated for page in pages[:-1])


def test_a_common_prefix_counts_once_and_is_skipped_whole() -> None:
    keys = [b"a/1", b"a/2", b"a/3", b"b", b"c/1"]
    page = list_page(_fetcher(keys, b""), prefix=b"", delimiter=b"/", start=Position(b"", True), max_keys=2)
    assert ([key for key, _ in page.contents], page.common_prefixes) == ([b"b"], [b"a/"])
    assert page.truncated and page.last == b"b"


def test_max_keys_zero_is_an_empty_untruncated_page() -> None:
    page = list_page(_fetcher([b"a"], b""), prefix=b"", delimiter=b"", start=Position(b"", True), max_keys=0)
    assert (page.contents, page.truncated) == ([], False)


def test_marker_positions() -> None:
    assert marker_position(None, b"p/", b"/") == Position(b"p/", True)
    assert marker_position(b"a", b"p/", b"/") == Position(b"p/", True)  # before the prefix
    assert marker_position(b"p/x", b"p/", b"/") == Position(b"p/x", False)
    # A marker that is a common prefix (v1's NextMarker) resumes after everything under it.
    assert marker_position(b"p/x/", b"p/", b"/") == Position(b"p/x0", True)
    assert marker_position(b"p/x/", b"p/", b"") == Position(b"p/x/", False)


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound(b"a/") == b"a0"
    assert prefix_upper_bound(b"a\xff") == b"b"
    assert prefix_upper_bound(b"\xff\xff") is None
    assert prefix_upper_bound(b"") is None


@pytest.mark.parametrize("token", ["", "!!", "AgA=", "not base64 at all"])
def test_bad_tokens(token: str) -> None:
    with pytest.raises(InvalidArgument):
        decode_token(token)


def test_token_round_trip() -> None:
    for position in (Position(b"", True), Position("ñ/ü".encode(), False), Position(b"\xff", True)):
        assert decode_token(encode_token(position)) == position
