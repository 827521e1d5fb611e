"""Object operations: PutObject, GetObject (ranges, conditions), HeadObject, CopyObject, DeleteObject(s).

GetObject streams from disk in 1 MiB reads on an executor thread; s3transfer fetches models above
8 MiB as parallel ranged GETs (spec §6.2), each of which is one of these streams.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from moorage.httpd import Response, StreamingResponse
from moorage.s3 import conditions
from moorage.s3.checksums import ALGORITHMS, b64
from moorage.s3.conditions import HeaderGetter
from moorage.s3.context import Call, attributes_from_headers, http_date, object_headers, xml_response
from moorage.s3.errors import (
    InvalidArgument,
    InvalidPartNumber,
    InvalidRequest,
    NoSuchBucket,
    S3Error,
)
from moorage.s3.files import FileSink, offload
from moorage.s3.names import check_key, is_valid_bucket_name
from moorage.s3.ranges import ByteRange, parse_range
from moorage.s3.receive import receive_body, verify_small_body
from moorage.s3.records import ChecksumInfo, ObjectInfo
from moorage.s3.storage import Store
from moorage.s3.xml import iso_time, node, parse_delete

__all__ = [
    "MAX_OBJECT_BYTES",
    "READ_CHUNK",
    "FileChunks",
    "copy_object",
    "copy_source_into",
    "delete_object",
    "delete_objects",
    "get_object",
    "head_object",
    "parse_copy_source",
    "put_object",
]

MAX_OBJECT_BYTES = 5 * 1024**3  # S3's limit for one PutObject, one part, and one copy source
READ_CHUNK = 1024 * 1024
_MAX_XML_BYTES = 4 * 1024 * 1024


class FileChunks:
    """An open object file read as a stream of chunks; the descriptor is closed however it ends."""

    def __init__(self, fd: int, start: int, length: int) -> None:
        self._fd = fd
        self._offset = start
        self._remaining = length

    def __aiter__(self) -> FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0 or self._fd < 0:
            self.close()
            raise StopAsyncIteration
        data = await offload(os.pread, self._fd, min(READ_CHUNK, self._remaining), self._offset)
        if not data:
            self.close()
            raise OSError("an object file is shorter than its recorded size")
        self._offset += len(data)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # The server may drop a response without reading it (client gone): never leak the descriptor.
        self.close()


def _checksum_of_put(algorithm: str | None, digests: dict[str, bytes]) -> ChecksumInfo | None:
    if algorithm is None:
        return None
    return ChecksumInfo(algorithm, b64(digests[algorithm]), "FULL_OBJECT")


def _checksum_headers(checksum: ChecksumInfo | None) -> list[tuple[str, str]]:
    if checksum is None:
        return []
    return [
        (f"x-amz-checksum-{checksum.algorithm.lower()}", checksum.value),
        ("x-amz-checksum-type", checksum.type),
    ]


async def put_object(call: Call) -> Response:
    key = call.object_key
    check_key(key)
    attributes = attributes_from_headers(call)
    await offload(call.store.get_bucket, call.bucket)  # NoSuchBucket before a byte of the body is read
    received = await receive_body(call.request, call.store.new_temp_path(), max_size=MAX_OBJECT_BYTES)
    try:
        info = await offload(
            call.store.put_object,
            call.bucket,
            key,
            received.path,
            size=received.size,
            etag=received.md5_hex,
            attributes=attributes,
            checksum=_checksum_of_put(received.checksum_algorithm, received.checksums),
            if_match=call.header("if-match"),
            if_none_match=call.header("if-none-match"),
        )
    finally:
        received.path.unlink(missing_ok=True)
    return Response(200, b"", [("ETag", info.quoted_etag), *_checksum_headers(info.checksum)])


def _part_range(call: Call, info: ObjectInfo) -> ByteRange | None:
    """GET/HEAD ?partNumber=n: the bytes of that part of a multipart object."""
    raw = call.query["partNumber"]
    number = call.int_param("partNumber", 1, minimum=1, maximum=10000)
    if not info.part_sizes:
        if number != 1:
            raise InvalidPartNumber(
                "The requested partnumber is not satisfiable", fields=(("PartNumber", raw),)
            )
        return None
    if number > len(info.part_sizes):
        raise InvalidPartNumber("The requested partnumber is not satisfiable", fields=(("PartNumber", raw),))
    start = sum(info.part_sizes[: number - 1])
    return ByteRange(start, start + info.part_sizes[number - 1] - 1)


async def _open_for_read(store: Store, bucket: str, key: str) -> tuple[int, ObjectInfo]:
    """store.open_object on an executor thread, without leaking the descriptor if we are cancelled."""
    opening = asyncio.get_running_loop().run_in_executor(None, store.open_object, bucket, key)
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:

        def close_when_open(done: asyncio.Future[tuple[int, ObjectInfo]]) -> None:
            if not done.cancelled() and done.exception() is None:
                os.close(done.result()[0])

        opening.add_done_callback(close_when_open)
        raise


async def _read(call: Call, *, head: bool) -> Response | StreamingResponse:
    key = call.object_key
    fd = -1
    if head:
        info = await offload(call.store.head_object, call.bucket, key)
    else:
        fd, info = await _open_for_read(call.store, call.bucket, key)
    try:
        if not conditions.check_read(call.header, info):
            if fd >= 0:
                os.close(fd)
            return Response(
                304, b"", [("ETag", info.quoted_etag), ("Last-Modified", http_date(info.last_modified))]
            )
        extra: list[tuple[str, str]] = []
        if "partNumber" in call.query:
            byte_range = _part_range(call, info)
            if info.part_sizes:
                extra.append(("x-amz-mp-parts-count", str(len(info.part_sizes))))
        else:
            byte_range = parse_range(call.header("range"), info.size)
        headers = object_headers(call, info, whole=byte_range is None) + extra
        if byte_range is None:
            status, start, length = 200, 0, info.size
        else:
            status, start, length = 206, byte_range.start, byte_range.length
            headers.append(("Content-Range", byte_range.content_range(info.size)))
        if head:
            return Response(status, b"", [*headers, ("Content-Length", str(length))])
        return StreamingResponse(status, FileChunks(fd, start, length), headers, content_length=length)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


async def get_object(call: Call) -> Response | StreamingResponse:
    return await _read(call, head=False)


async def head_object(call: Call) -> Response | StreamingResponse:
    return await _read(call, head=True)


async def delete_object(call: Call) -> Response:
    await offload(call.store.delete_objects, call.bucket, [call.object_key])
    return Response(204)


async def delete_objects(call: Call) -> Response:
    body = await call.request.body(_MAX_XML_BYTES)
    verify_small_body(call.request, body)
    quiet, keys = parse_delete(body)
    valid: list[str] = []
    errors: list[tuple[str, S3Error]] = []
    for key in keys:
        try:
            check_key(key)
            valid.append(key)
        except S3Error as error:
            errors.append((key, error))
    await offload(call.store.delete_objects, call.bucket, valid)
    root = node(
        "DeleteResult",
        [] if quiet else [node("Deleted", ("Key", key)) for key in valid],
        [
            node("Error", ("Key", key), ("Code", error.code), ("Message", error.message))
            for key, error in errors
        ],
    )
    return xml_response(root)


def parse_copy_source(value: str) -> tuple[str, str]:
    """x-amz-copy-source: `bucket/key` or `/bucket/key`, URL-encoded, maybe with `?versionId=`."""
    raw, _, version = value.partition("?")
    if version:
        version_id = version.removeprefix("versionId=")
        if version_id != "null":
            raise InvalidArgument(
                "Invalid version id specified",
                fields=(("ArgumentName", "versionId"), ("ArgumentValue", version_id)),
            )
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        decoded = ""
    bucket, _, key = decoded.lstrip("/").partition("/")
    if not bucket or not key:
        raise InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            fields=(("ArgumentName", "x-amz-copy-source"), ("ArgumentValue", value)),
        )
    if not is_valid_bucket_name(bucket):
        raise NoSuchBucket(bucket)
    return bucket, key


CopyPlan = Callable[[ObjectInfo], tuple[ByteRange | None, frozenset[str]]]
"""Given the source as opened: which bytes to copy and which checksums to compute (may raise)."""


def copy_source_into(
    store: Store, source: tuple[str, str], conditions_of: HeaderGetter, temp: Path, plan: CopyPlan
) -> tuple[ObjectInfo, FileSink]:
    """Open a copy source, check its x-amz-copy-source-if-* conditions, copy it into a new file.

    One blocking job from open to close, so the source's descriptor never crosses threads and
    the conditions are checked against exactly the version that is copied.
    """
    fd, info = store.open_object(*source)
    try:
        conditions.check_copy_source(conditions_of, info)
        if info.size > MAX_OBJECT_BYTES:
            raise InvalidRequest(
                "The specified copy source is larger than the maximum allowable size for a copy source: "
                f"{MAX_OBJECT_BYTES}"
            )
        byte_range, algorithms = plan(info)
        start, length = (0, info.size) if byte_range is None else (byte_range.start, byte_range.length)
        sink = FileSink(temp, algorithms=algorithms)
        try:
            sink.copy_from(fd, start, length)
            sink.finish()
        except BaseException:
            sink.close()
            raise
        return info, sink
    finally:
        os.close(fd)


async def copy_object(call: Call) -> Response:
    key = call.object_key
    check_key(key)
    directive = (call.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgument(
            "Unknown metadata directive.",
            fields=(("ArgumentName", "x-amz-metadata-directive"), ("ArgumentValue", directive)),
        )
    requested = (call.header("x-amz-checksum-algorithm") or "").upper() or None
    if requested is not None and requested not in ALGORITHMS:
        raise InvalidRequest(f"Checksum algorithm {requested!r} is not supported.")
    source_location = parse_copy_source(call.header("x-amz-copy-source") or "")
    if source_location == (call.bucket, key) and directive == "COPY":
        raise InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing "
            "the object's metadata, storage class, website redirect location or encryption attributes."
        )
    replaced = attributes_from_headers(call) if directive == "REPLACE" else None
    await offload(call.store.get_bucket, call.bucket)

    def plan(source: ObjectInfo) -> tuple[ByteRange | None, frozenset[str]]:
        algorithm = requested
        if algorithm is None and source.checksum is not None and source.checksum.type == "FULL_OBJECT":
            algorithm = source.checksum.algorithm  # the copy keeps the source's full-object checksum
        return None, frozenset([algorithm] if algorithm else [])

    temp = call.store.new_temp_path()
    try:
        source, sink = await offload(copy_source_into, call.store, source_location, call.header, temp, plan)
        algorithm = next(iter(sink.checksums), None)
        info = await offload(
            call.store.put_object,
            call.bucket,
            key,
            temp,
            size=sink.size,
            etag=sink.md5.hexdigest(),
            attributes=replaced or source.attributes,
            checksum=_checksum_of_put(algorithm, sink.digests()),
            if_match=call.header("if-match"),
            if_none_match=call.header("if-none-match"),
        )
    finally:
        temp.unlink(missing_ok=True)
    checksum = info.checksum
    root = node(
        "CopyObjectResult",
        ("LastModified", iso_time(info.last_modified)),
        ("ETag", info.quoted_etag),
        (f"Checksum{checksum.algorithm}", checksum.value) if checksum else None,
        ("ChecksumType", checksum.type) if checksum else None,
    )
    return xml_response(root)
