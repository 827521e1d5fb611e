"""Byte ranges: the `Range` header of GetObject and `x-amz-copy-source-range` of UploadPartCopy.

s3transfer downloads objects above its threshold (8 MiB) as parallel `Range: bytes=a-b` GETs (spec §6.2),
so these rules decide whether a large model download reassembles correctly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moorage.s3.errors import InvalidArgument, InvalidRange

__all__ = ["ByteRange", "parse_copy_range", "parse_range"]

_SPEC = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# Any offset with more digits than this lies past every object (the largest is 5 TiB, 13 digits), so
# it is read as "past the end" without int(), which refuses strings over 4300 digits (a 500 before:
# security probe 2, #31) and would spend quadratic time on long ones.
_MAX_DIGITS = 18
_PAST_ANY_END = 10**_MAX_DIGITS


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def _offset(digits: str) -> int:
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else _PAST_ANY_END


def _unsatisfiable(header: str, size: int) -> InvalidRange:
    return InvalidRange(
        "The requested range is not satisfiable",
        fields=(("RangeRequested", header), ("ActualObjectSize", str(size))),
        headers=(("Content-Range", f"bytes */{size}"),),
    )


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range to serve, or None for the whole object.

    As RFC 9110 allows, a header that cannot be parsed is ignored (the whole object is sent), and so
    is a request for several ranges, which S3 does not serve either. A well-formed range that lies
    wholly past the end raises InvalidRange (416).
    """
    if header is None:
        return None
    match = _SPEC.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = _offset(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = _offset(first)
    end = _offset(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size)
    return ByteRange(start, min(end, size - 1))


def parse_copy_range(header: str, size: int) -> ByteRange:
    """UploadPartCopy's source range: always `bytes=first-last`, and wholly inside the source."""
    match = _SPEC.fullmatch(header.strip())
    if match is None or not match.group(1) or not match.group(2):
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and "
            "last are the zero-based offsets of the first and last bytes to copy",
            fields=(("ArgumentName", "x-amz-copy-source-range"), ("ArgumentValue", header)),
        )
    start, end = _offset(match.group(1)), _offset(match.group(2))
    if end < start or end >= size:
        raise InvalidRange(
            f"Range specified is not valid for source object of size: {size}",
            fields=(("RangeRequested", header), ("ActualObjectSize", str(size))),
        )
    return ByteRange(start, end)
