"""Which bucket names and object keys S3 accepts.

Bucket names follow S3's general-purpose rules; since they also become directory names under the store's
root, the rules are what keep them path-safe (no "/", never "." or ".."). Keys never become paths.
"""

from __future__ import annotations

import ipaddress
import re

from moorage.s3.errors import InvalidBucketName, KeyTooLongError

__all__ = ["MAX_KEY_BYTES", "check_bucket_name", "check_key", "is_valid_bucket_name"]

MAX_KEY_BYTES = 1024

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def is_valid_bucket_name(name: str) -> bool:
    if not _BUCKET.fullmatch(name) or ".." in name:
        return False
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return True
    return False  # formatted like an IP address


def check_bucket_name(name: str) -> None:
    if not is_valid_bucket_name(name):
        raise InvalidBucketName(name)


def check_key(key: str) -> None:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise KeyTooLongError(f"Your key is too long (the maximum is {MAX_KEY_BYTES} bytes of UTF-8).")
