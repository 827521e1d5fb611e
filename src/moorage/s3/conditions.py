"""Conditional requests: If-Match / If-None-Match / If-(Un)Modified-Since on reads, copies and writes.

Evaluation follows RFC 9110 §13.2.2, which is also what S3 documents: If-Match decides before
If-Unmodified-Since, and If-None-Match before If-Modified-Since. Dates have whole-second precision.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable

from moorage.s3.errors import NoSuchKey, PreconditionFailed
from moorage.s3.records import ObjectInfo

__all__ = ["check_copy_source", "check_read", "check_write"]

HeaderGetter = Callable[[str], str | None]


def _etag_matches(header: str, etag: str) -> bool:
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        candidate = candidate.removeprefix("W/").strip('"')
        if candidate == etag:
            return True
    return False


def _date(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(header).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # an unparseable date is ignored, as RFC 9110 says


def check_read(get: HeaderGetter, info: ObjectInfo) -> bool:
    """True to serve the object, False for 304 Not Modified; PreconditionFailed (412) otherwise."""
    modified = int(info.last_modified)
    if_match = get("if-match")
    if if_match is not None:
        if not _etag_matches(if_match, info.etag):
            raise PreconditionFailed("If-Match")
    else:
        since = _date(get("if-unmodified-since"))
        if since is not None and modified > since:
            raise PreconditionFailed("If-Unmodified-Since")
    if_none_match = get("if-none-match")
    if if_none_match is not None:
        return not _etag_matches(if_none_match, info.etag)
    since = _date(get("if-modified-since"))
    return not (since is not None and modified <= since)


def check_copy_source(get: HeaderGetter, info: ObjectInfo) -> None:
    """CopyObject / UploadPartCopy conditions on the source: any that fails is a 412."""
    modified = int(info.last_modified)
    if_match = get("x-amz-copy-source-if-match")
    if if_match is not None and not _etag_matches(if_match, info.etag):
        raise PreconditionFailed("x-amz-copy-source-If-Match")
    if_none_match = get("x-amz-copy-source-if-none-match")
    if if_none_match is not None and _etag_matches(if_none_match, info.etag):
        raise PreconditionFailed("x-amz-copy-source-If-None-Match")
    since = _date(get("x-amz-copy-source-if-unmodified-since"))
    if if_match is None and since is not None and modified > since:
        raise PreconditionFailed("x-amz-copy-source-If-Unmodified-Since")
    since = _date(get("x-amz-copy-source-if-modified-since"))
    if if_none_match is None and since is not None and modified <= since:
        raise PreconditionFailed("x-amz-copy-source-If-Modified-Since")


def check_write(
    if_match: str | None, if_none_match: str | None, key: str, current: ObjectInfo | None
) -> None:
    """S3's conditional writes: `If-None-Match: *` (create only) and `If-Match: <etag>` (replace only)."""
    if if_none_match is not None and current is not None and _etag_matches(if_none_match, current.etag):
        raise PreconditionFailed("If-None-Match")
    if if_match is not None:
        if current is None:
            raise NoSuchKey(key)
        if not _etag_matches(if_match, current.etag):
            raise PreconditionFailed("If-Match")
