"""Bucket operations and listings: ListBuckets, Create/Head/DeleteBucket, GetBucketLocation, ListObjects(V2).

The SageMaker SDK's `default_bucket()` is ListBuckets, then HeadBucket and CreateBucket when the bucket
is missing (spec §6.2, §6.4); `aws s3 ls` is ListObjectsV2 with a delimiter and encoding-type=url.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from collections.abc import Callable

from moorage.httpd import Response
from moorage.s3.context import Call, owner, xml_response
from moorage.s3.errors import BucketAlreadyOwnedByYou, IllegalLocationConstraintException, InvalidArgument
from moorage.s3.files import offload
from moorage.s3.listing import Page, Position, decode_token, encode_token, marker_position
from moorage.s3.names import check_bucket_name
from moorage.s3.receive import verify_small_body
from moorage.s3.records import ObjectInfo
from moorage.s3.xml import iso_time, node, parse_location_constraint, url_encode

__all__ = [
    "create_bucket",
    "delete_bucket",
    "get_bucket_location",
    "head_bucket",
    "list_buckets",
    "list_objects",
    "list_objects_v2",
]

_MAX_CONFIGURATION_BYTES = 64 * 1024


async def list_buckets(call: Call) -> Response:
    prefix = call.query.get("prefix", "")
    limit = call.int_param("max-buckets", 10000, minimum=1, maximum=10000)
    after = ""
    if token := call.query.get("continuation-token"):
        try:
            after = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise InvalidArgument(
                "The continuation token provided is incorrect",
                fields=(("ArgumentName", "continuation-token"), ("ArgumentValue", token)),
            ) from None
    buckets = await offload(call.store.list_buckets, prefix=prefix, after=after, limit=limit + 1)
    more = len(buckets) > limit
    buckets = buckets[:limit]
    next_token = base64.urlsafe_b64encode(buckets[-1].name.encode()).decode("ascii") if more else None
    root = node(
        "ListAllMyBucketsResult",
        owner(),
        node(
            "Buckets",
            [
                node(
                    "Bucket",
                    ("Name", bucket.name),
                    ("CreationDate", iso_time(bucket.created)),
                    ("BucketRegion", bucket.region),
                )
                for bucket in buckets
            ],
        ),
        ("ContinuationToken", next_token),
        ("Prefix", prefix or None),
    )
    return xml_response(root)


async def create_bucket(call: Call) -> Response:
    check_bucket_name(call.bucket)
    body = await call.request.body(_MAX_CONFIGURATION_BYTES)
    verify_small_body(call.request, body)
    constraint = parse_location_constraint(body)
    if constraint is not None and constraint != call.region:
        raise IllegalLocationConstraintException(
            f"The {constraint} location constraint is incompatible for the region specific endpoint this "
            "request was sent to."
        )
    try:
        await offload(call.store.create_bucket, call.bucket, call.region)
    except BucketAlreadyOwnedByYou:
        # S3's legacy rule: in us-east-1, creating a bucket you already own succeeds (the SageMaker SDK
        # relies on it when two sessions create the default bucket at once); elsewhere it is a 409.
        if call.region != "us-east-1":
            raise
    return Response(200, b"", [("Location", f"/{call.bucket}")])


async def head_bucket(call: Call) -> Response:
    bucket = await offload(call.store.get_bucket, call.bucket)
    return Response(200, b"", [("x-amz-bucket-region", bucket.region), ("x-amz-access-point-alias", "false")])


async def delete_bucket(call: Call) -> Response:
    await offload(call.store.delete_bucket, call.bucket)
    return Response(204)


async def get_bucket_location(call: Call) -> Response:
    bucket = await offload(call.store.get_bucket, call.bucket)
    root = ET.Element("LocationConstraint")
    # us-east-1 is reported as an empty constraint, for historical reasons.
    root.text = "" if bucket.region == "us-east-1" else bucket.region
    return xml_response(root)


def _encoder(call: Call) -> Callable[[str], str]:
    encoding = call.query.get("encoding-type")
    if encoding is None:
        return lambda value: value
    if encoding.lower() != "url":
        raise InvalidArgument(
            "Invalid Encoding Method specified in Request",
            fields=(("ArgumentName", "encoding-type"), ("ArgumentValue", encoding)),
        )
    return url_encode


def _contents(page: Page[ObjectInfo], encode: Callable[[str], str], with_owner: bool) -> list[ET.Element]:
    entries = []
    for _, info in page.contents:
        checksum = info.checksum
        entries.append(
            node(
                "Contents",
                ("Key", encode(info.key)),
                ("LastModified", iso_time(info.last_modified)),
                ("ETag", info.quoted_etag),
                ("ChecksumAlgorithm", checksum.algorithm if checksum else None),
                ("ChecksumType", checksum.type if checksum else None),
                ("Size", info.size),
                ("StorageClass", "STANDARD"),
                owner() if with_owner else None,
            )
        )
    return entries


def _common_prefixes(page: Page[ObjectInfo], encode: Callable[[str], str]) -> list[ET.Element]:
    return [
        node("CommonPrefixes", ("Prefix", encode(prefix.decode("utf-8", "surrogatepass"))))
        for prefix in page.common_prefixes
    ]


async def list_objects_v2(call: Call) -> Response:
    encode = _encoder(call)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    max_keys = call.int_param("max-keys", 1000, maximum=1000)
    token = call.query.get("continuation-token")
    start_after = call.query.get("start-after")
    start: Position | None
    if token is not None:
        start = decode_token(token)
    else:
        marker = start_after.encode("utf-8", "surrogatepass") if start_after else None
        start = marker_position(marker, prefix.encode("utf-8", "surrogatepass"), delimiter.encode())
    page = await offload(
        call.store.list_objects,
        call.bucket,
        prefix=prefix,
        delimiter=delimiter,
        start=start,
        max_keys=max_keys,
    )
    with_owner = call.query.get("fetch-owner", "false").lower() == "true"
    root = node(
        "ListBucketResult",
        ("Name", call.bucket),
        ("Prefix", encode(prefix)),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("MaxKeys", max_keys),
        ("EncodingType", "url" if "encoding-type" in call.query else None),
        ("KeyCount", len(page.contents) + len(page.common_prefixes)),
        ("IsTruncated", page.truncated),
        ("ContinuationToken", token),
        ("NextContinuationToken", encode_token(page.next_position) if page.next_position else None),
        ("StartAfter", encode(start_after) if start_after else None),
        _contents(page, encode, with_owner),
        _common_prefixes(page, encode),
    )
    return xml_response(root)


async def list_objects(call: Call) -> Response:
    """ListObjects (v1): the same listing, resumed by `marker`; NextMarker only with a delimiter, as on S3."""
    encode = _encoder(call)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    max_keys = call.int_param("max-keys", 1000, maximum=1000)
    marker = call.query.get("marker", "")
    start = marker_position(
        marker.encode("utf-8", "surrogatepass") if marker else None,
        prefix.encode("utf-8", "surrogatepass"),
        delimiter.encode(),
    )
    page = await offload(
        call.store.list_objects,
        call.bucket,
        prefix=prefix,
        delimiter=delimiter,
        start=start,
        max_keys=max_keys,
    )
    next_marker = None
    if page.truncated and delimiter and page.last is not None:
        next_marker = encode(page.last.decode("utf-8", "surrogatepass"))
    root = node(
        "ListBucketResult",
        ("Name", call.bucket),
        ("Prefix", encode(prefix)),
        ("Marker", encode(marker)),
        ("NextMarker", next_marker),
        ("MaxKeys", max_keys),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("EncodingType", "url" if "encoding-type" in call.query else None),
        ("IsTruncated", page.truncated),
        _contents(page, encode, with_owner=True),
        _common_prefixes(page, encode),
    )
    return xml_response(root)
