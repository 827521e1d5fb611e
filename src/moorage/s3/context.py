"""What every S3 handler receives (`Call`), and the response shapes they share.

Handlers are `async def handler(call: Call) -> Response | StreamingResponse`; they raise S3Error for
every failure, and `app.py` turns errors into S3's XML error document.
"""

from __future__ import annotations

import email.utils
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from moorage.httpd import Request, Response
from moorage.s3.errors import InvalidArgument, MetadataTooLarge
from moorage.s3.records import ObjectAttributes, ObjectInfo
from moorage.s3.storage import Store
from moorage.s3.xml import node, render

__all__ = [
    "OWNER_ID",
    "OWNER_NAME",
    "Call",
    "attributes_from_headers",
    "http_date",
    "object_headers",
    "owner",
    "xml_response",
]

# One account owns everything here; S3 reports a canonical user id and display name.
OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
OWNER_NAME = "moorage"

# Object headers S3 stores with an object and returns on GET/HEAD.
_STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
# GetObject's response-* query parameters override the stored values (presigned download links use them).
_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
_MAX_METADATA_BYTES = 2048


@dataclass(frozen=True)
class Call:
    request: Request
    store: Store
    region: str
    request_id: str
    bucket: str
    key: str | None
    query: dict[str, str]

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    @property
    def object_key(self) -> str:
        assert self.key is not None, "routed to an object handler without a key"
        return self.key

    def int_param(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise InvalidArgument(
                f"Provided {name} not an integer or within integer range",
                fields=(("ArgumentName", name), ("ArgumentValue", raw)),
            )
        return value if maximum is None else min(value, maximum)


def owner(tag: str = "Owner") -> ET.Element:
    return node(tag, ("ID", OWNER_ID), ("DisplayName", OWNER_NAME))


def http_date(epoch: float) -> str:
    return email.utils.formatdate(int(epoch), usegmt=True)


def xml_response(
    root: ET.Element, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, render(root), [("Content-Type", "application/xml"), *(headers or [])])


def attributes_from_headers(call: Call) -> ObjectAttributes:
    """What PutObject / CreateMultipartUpload / CopyObject(REPLACE) say about the new object."""
    content_type = call.header("content-type") or "binary/octet-stream"
    metadata = tuple(
        (name.lower()[len("x-amz-meta-") :], value)
        for name, value in call.request.headers.items()
        if name.lower().startswith("x-amz-meta-")
    )
    if sum(len(name) + len(value) for name, value in metadata) > _MAX_METADATA_BYTES:
        raise MetadataTooLarge(
            f"Your metadata headers exceed the maximum allowed metadata size of {_MAX_METADATA_BYTES} bytes."
        )
    stored: list[tuple[str, str]] = []
    for name in _STORED_HEADERS:
        value = call.header(name)
        if value is None:
            continue
        if name == "Content-Encoding":
            # aws-chunked is the framing of this one request, not a property of the object.
            codings = [
                c.strip() for c in value.split(",") if c.strip() and c.strip().lower() != "aws-chunked"
            ]
            if not codings:
                continue
            value = ",".join(codings)
        stored.append((name, value))
    return ObjectAttributes(content_type, metadata, tuple(stored))


def object_headers(call: Call, info: ObjectInfo, *, whole: bool) -> list[tuple[str, str]]:
    """GET/HEAD headers for an object; checksums only for the whole object and when asked for."""
    headers = [
        ("ETag", info.quoted_etag),
        ("Last-Modified", http_date(info.last_modified)),
        ("Accept-Ranges", "bytes"),
        ("Content-Type", info.content_type),
        *info.attributes.headers,
        *((f"x-amz-meta-{name}", value) for name, value in info.attributes.metadata),
    ]
    for parameter, header in _OVERRIDES.items():
        if (value := call.query.get(parameter)) is not None:
            headers = [(name, old) for name, old in headers if name != header] + [(header, value)]
    checksum = info.checksum
    if whole and checksum is not None and (call.header("x-amz-checksum-mode") or "").upper() == "ENABLED":
        # botocore validates a FULL_OBJECT checksum against the body it reads, and skips a composite one
        # ("<value>-<n>"); a ranged or per-part GET carries none, since it would not match that body.
        headers.append((f"x-amz-checksum-{checksum.algorithm.lower()}", checksum.value))
        headers.append(("x-amz-checksum-type", checksum.type))
    return headers
