"""Values no sane client sends, which must still get S3's answer rather than a 500 or a broken
document: ranges with thousands of digits (security probe 2, #31) and keys holding characters that
XML 1.0 cannot carry (#28)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from moorage.s3.errors import InvalidRange
from moorage.s3.ranges import ByteRange, parse_copy_range, parse_range
from moorage.s3.xml import error_document, node, render

HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"bytes=0-{HUGE}", ByteRange(0, 9)),  # a last byte past the end means "to the end"
        (f"bytes=-{HUGE}", ByteRange(0, 9)),  # a suffix longer than the object is all of it
        (f"bytes=3-{'0' * 5000}7", ByteRange(3, 7)),  # leading zeros are only zeros
        (f"bytes={'0' * 5000}2-", ByteRange(2, 9)),
        (f"bytes={HUGE}-3", None),  # last before first: ignored, as RFC 9110 says
    ],
)
def test_ranges_with_thousands_of_digits_are_read_as_s3_reads_them(
    header: str, expected: ByteRange | None
) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", "bytes=10000000000000000000-"])
def test_a_first_byte_thousands_of_digits_long_is_unsatisfiable(header: str) -> None:
    with pytest.raises(InvalidRange) as caught:
        parse_range(header, 10)
    assert caught.value.status == 416
    assert ("Content-Range", "bytes */10") in caught.value.headers


def test_unicode_digits_are_not_a_range() -> None:
    assert parse_range("bytes=\u0663-", 10) is None  # ARABIC-INDIC DIGIT THREE: int() would take it


@pytest.mark.parametrize("header", [f"bytes=0-{HUGE}", f"bytes={HUGE}-{HUGE}"])
def test_a_copy_range_thousands_of_digits_long_is_invalid(header: str) -> None:
    with pytest.raises(InvalidRange):
        parse_copy_range(header, 10)


XML_INVALID = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\ufffe", "\uffff", "\ud800"]


@pytest.mark.parametrize("char", XML_INVALID, ids=[f"U+{ord(c):04X}" for c in XML_INVALID])
def test_a_key_xml_cannot_carry_still_renders_a_well_formed_document(char: str) -> None:
    body = render(node("ListBucketResult", node("Contents", ("Key", f"a{char}b")), ("Prefix", char)))
    root = ET.fromstring(body)
    assert [element.text for element in root.iter() if element.text] == ["a\ufffdb", "\ufffd"]


def test_every_character_xml_can_carry_comes_back_exactly() -> None:
    key = "tab\there\nline\rreturn \u0085\u2028 &<>\"' \U0001f600 \ud7ff\ue000\ufffd"
    assert ET.fromstring(render(node("Contents", ("Key", key)), namespace=False)).findtext("Key") == key


def test_an_error_that_echoes_such_a_key_is_well_formed() -> None:
    body = error_document(
        "NoSuchKey", "The specified key does not exist.", "/bkt/a\x00b", "RID", [("Key", "a\x00b")]
    )
    root = ET.fromstring(body)
    assert (root.findtext("Code"), root.findtext("Key"), root.findtext("Resource")) == (
        "NoSuchKey",
        "a\ufffdb",
        "/bkt/a\ufffdb",
    )
