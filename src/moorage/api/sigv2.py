"""S3's legacy query-string signature (SigV2), accepted for presigned URLs only.

`aws s3 presign` and boto3's `generate_presigned_url` still sign S3 URLs this way when pointed at a
custom endpoint (`?AWSAccessKeyId=…&Signature=…&Expires=…`), and people paste those URLs into curl.
The signature is an HMAC-SHA1 over the method, Content-MD5, Content-Type, the absolute expiry time,
the request's x-amz-* headers and the resource (the path as sent, plus the subresources S3 signs).
Signed requests (the Authorization header) must use SigV4 (`api.sigv4`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

__all__ = ["QUERY_PARAMETERS", "sign", "string_to_sign"]

QUERY_PARAMETERS = frozenset({"AWSAccessKeyId", "Signature", "Expires"})

# The query parameters that are part of the signed resource (the list S3's SigV2 defines).
_SUBRESOURCES = frozenset(
    {"accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory", "lifecycle",
     "location", "logging", "metrics", "notification", "object-lock", "partNumber", "policy",
     "replication", "requestPayment", "response-cache-control", "response-content-disposition",
     "response-content-encoding", "response-content-language", "response-content-type",
     "response-expires", "restore", "select", "select-type", "storageClass", "tagging", "torrent",
     "uploadId", "uploads", "versionId", "versioning", "versions", "website"}
)  # fmt: skip


def _resource(raw_path: str, query_string: str) -> str:
    """The path plus the subresources, each named as the S3 router will read it.

    The router percent-decodes query names (`Request.query`), so `%75ploadId` *is* `uploadId` to it;
    the name is decoded the same way here, or an encoded subresource would ride unsigned on a URL
    signed for another operation (security probe 2, #21). botocore never encodes these names, so the
    URLs it signs are unchanged.
    """
    pairs: list[tuple[str, str | None]] = []
    for part in query_string.split("&"):
        raw_name, equals, value = part.partition("=")
        name = unquote_plus(raw_name)
        if name in _SUBRESOURCES:
            pairs.append((name, unquote(value) if equals else None))
    path = _bucket_path(raw_path)
    if not pairs:
        return path
    pairs.sort(key=lambda pair: pair[0])
    return path + "?" + "&".join(name if value is None else f"{name}={value}" for name, value in pairs)


def _bucket_path(raw_path: str) -> str:
    """A bucket is signed as `/bucket/` (S3's canonical resource, and what botocore signs for a
    path-style `/bucket` URL); without the slash, every presigned ListObjects URL failed as issued."""
    bucket = raw_path.removeprefix("/")
    return f"/{bucket}/" if bucket and "/" not in bucket else raw_path


def string_to_sign(
    method: str, headers: Iterable[tuple[str, str]], expires: str, raw_path: str, query_string: str
) -> str:
    standard = {"content-md5": "", "content-type": ""}
    amz: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in standard:
            standard[lowered] = value.strip()
        elif lowered.startswith("x-amz-"):
            amz.setdefault(lowered, []).append(value.strip())
    lines = [method.upper(), standard["content-md5"], standard["content-type"], expires]
    lines += [f"{name}:{','.join(values)}" for name, values in sorted(amz.items())]
    lines.append(_resource(raw_path, query_string))
    return "\n".join(lines)


def sign(secret: str, string: str) -> str:
    digest = hmac.digest(secret.encode("utf-8"), string.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest).decode("ascii")
