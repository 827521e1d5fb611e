"""Range headers and conditional requests, as RFC 9110 and S3 define them."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import pytest

from moorage.s3.conditions import check_copy_source, check_read, check_write
from moorage.s3.errors import InvalidArgument, InvalidRange, NoSuchKey, PreconditionFailed
from moorage.s3.ranges import ByteRange, parse_copy_range, parse_range
from moorage.s3.records import ObjectAttributes, ObjectInfo


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=2-5", 10, ByteRange(2, 5)),
        ("bytes=5-", 10, ByteRange(5, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes=8-100", 10, ByteRange(8, 9)),
        ("bytes=5-2", 10, None),  # invalid: ignored
        ("bytes=0-1,4-5", 10, None),  # several ranges: ignored
        ("items=0-1", 10, None),
        ("bytes=-", 10, None),
        ("garbage", 10, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(InvalidRange) as error:
        parse_range(header, size)
    assert dict(error.value.headers)["Content-Range"] == f"bytes */{size}"


def test_content_range_and_length() -> None:
    assert ByteRange(2, 5).content_range(10) == "bytes 2-5/10"
    assert ByteRange(2, 5).length == 4


def test_copy_ranges() -> None:
    assert parse_copy_range("bytes=0-9", 10) == ByteRange(0, 9)
    with pytest.raises(InvalidRange):
        parse_copy_range("bytes=0-10", 10)
    for bad in ("bytes=5-", "bytes=-5", "0-5"):
        with pytest.raises(InvalidArgument):
            parse_copy_range(bad, 10)


INFO = ObjectInfo("b", "k", 1, "abc", 1_000_000.7, ObjectAttributes())
BEFORE = email.utils.formatdate(999_000, usegmt=True)
SAME = email.utils.formatdate(1_000_000, usegmt=True)
AFTER = email.utils.formatdate(1_001_000, usegmt=True)


def _headers(**values: str) -> Callable[[str], str | None]:
    lowered = {name.replace("_", "-").lower(): value for name, value in values.items()}
    return lowered.get


@pytest.mark.parametrize(
    ("headers", "serve"),
    [
        ({}, True),
        ({"If-Match": '"abc"'}, True),
        ({"If-Match": '"x", "abc"'}, True),
        ({"If-Match": "*"}, True),
        ({"If-None-Match": '"abc"'}, False),
        ({"If-None-Match": 'W/"abc"'}, False),
        ({"If-None-Match": '"x"'}, True),
        ({"If-Modified-Since": SAME}, False),  # whole seconds: 1_000_000.7 is not after 1_000_000
        ({"If-Modified-Since": BEFORE}, True),
        ({"If-Modified-Since": "not a date"}, True),
        ({"If-None-Match": '"x"', "If-Modified-Since": AFTER}, True),  # If-None-Match decides
        ({"If-Match": '"abc"', "If-Unmodified-Since": BEFORE}, True),  # If-Match decides
        ({"If-Unmodified-Since": AFTER}, True),
    ],
)
def test_check_read(headers: dict[str, str], serve: bool) -> None:
    assert check_read(_headers(**headers), INFO) is serve


@pytest.mark.parametrize("headers", [{"If-Match": '"x"'}, {"If-Unmodified-Since": BEFORE}])
def test_check_read_failures(headers: dict[str, str]) -> None:
    with pytest.raises(PreconditionFailed):
        check_read(_headers(**headers), INFO)


def test_copy_source_conditions() -> None:
    check_copy_source(_headers(**{"x-amz-copy-source-if-match": '"abc"'}), INFO)
    for headers in (
        {"x-amz-copy-source-if-match": '"x"'},
        {"x-amz-copy-source-if-none-match": '"abc"'},
        {"x-amz-copy-source-if-modified-since": AFTER},
        {"x-amz-copy-source-if-unmodified-since": BEFORE},
    ):
        with pytest.raises(PreconditionFailed):
            check_copy_source(_headers(**headers), INFO)


def test_check_write() -> None:
    check_write(None, "*", "k", None)
    check_write('"abc"', None, "k", INFO)
    with pytest.raises(PreconditionFailed):
        check_write(None, "*", "k", INFO)
    with pytest.raises(PreconditionFailed):
        check_write('"x"', None, "k", INFO)
    with pytest.raises(NoSuchKey):
        check_write('"abc"', None, "k", None)
