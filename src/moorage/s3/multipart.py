"""Multipart uploads: Create, UploadPart(Copy), Complete, Abort, ListParts, ListMultipartUploads.

s3transfer (boto3's upload_file, the aws CLI, the SageMaker SDK's repack upload) switches to multipart
above 8 MiB (spec §6.2) and asks for CRC32 checksums: CreateMultipartUpload carries
x-amz-checksum-algorithm, each UploadPart an x-amz-checksum-crc32 header, and Complete lists the part
checksums that UploadPart returned. S3's rules kept here: the multipart ETag is the MD5 of the parts'
binary MD5s followed by "-<count>"; parts are listed in ascending order; every part but the last is at
least 5 MiB.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from moorage.httpd import Request, Response
from moorage.s3.checksums import ALGORITHMS, FULL_OBJECT_ALGORITHMS, b64, composite_checksum
from moorage.s3.context import Call, attributes_from_headers, owner, xml_response
from moorage.s3.errors import (
    BadDigest,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    NoSuchUpload,
)
from moorage.s3.files import FileSink, offload
from moorage.s3.names import check_key
from moorage.s3.objects import MAX_OBJECT_BYTES, copy_source_into, parse_copy_source
from moorage.s3.ranges import ByteRange, parse_copy_range
from moorage.s3.receive import receive_body, requested_checksum, verify_small_body
from moorage.s3.records import ChecksumInfo, ObjectInfo, PartInfo, UploadInfo
from moorage.s3.storage import Store
from moorage.s3.xml import PartSpec, iso_time, node, parse_complete_upload, url_encode

__all__ = [
    "MIN_PART_BYTES",
    "abort_upload",
    "complete_upload",
    "create_upload",
    "list_parts",
    "list_uploads",
    "upload_part",
]

MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10000
_MAX_XML_BYTES = 8 * 1024 * 1024


def _upload_checksum(call: Call) -> tuple[str | None, str | None]:
    raw_algorithm = call.header("x-amz-checksum-algorithm")
    raw_type = call.header("x-amz-checksum-type")
    if raw_algorithm is None:
        if raw_type is not None:
            raise InvalidRequest("x-amz-checksum-type requires x-amz-checksum-algorithm")
        return None, None
    algorithm = raw_algorithm.strip().upper()
    if algorithm not in ALGORITHMS:
        raise InvalidRequest(f"Checksum algorithm {raw_algorithm!r} is not supported.")
    kind = (raw_type or ("FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE")).strip().upper()
    if kind not in ("COMPOSITE", "FULL_OBJECT"):
        raise InvalidRequest(f"Checksum type {raw_type!r} is not supported.")
    # Only CRCs combine into a full-object checksum; CRC64NVME exists only in that form.
    if (kind == "FULL_OBJECT" and algorithm not in FULL_OBJECT_ALGORITHMS) or (
        kind == "COMPOSITE" and algorithm == "CRC64NVME"
    ):
        raise InvalidRequest(
            f"The {kind} checksum type cannot be used with the {algorithm} checksum algorithm."
        )
    return algorithm, kind


async def create_upload(call: Call) -> Response:
    key = call.object_key
    check_key(key)
    attributes = attributes_from_headers(call)
    algorithm, kind = _upload_checksum(call)
    upload = await offload(call.store.create_upload, call.bucket, key, attributes, algorithm, kind)
    root = node(
        "InitiateMultipartUploadResult", ("Bucket", call.bucket), ("Key", key), ("UploadId", upload.upload_id)
    )
    headers = (
        []
        if algorithm is None
        else [("x-amz-checksum-algorithm", algorithm), ("x-amz-checksum-type", kind or "")]
    )
    return xml_response(root, headers=headers)


def _part_number(call: Call) -> int:
    raw = call.query.get("partNumber", "")
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PARTS:
        raise InvalidArgument(
            f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive",
            fields=(("ArgumentName", "partNumber"), ("ArgumentValue", raw)),
        )
    return number


async def _get_upload(call: Call) -> UploadInfo:
    return await offload(call.store.get_upload, call.bucket, call.object_key, call.query.get("uploadId", ""))


async def upload_part(call: Call) -> Response:
    number = _part_number(call)
    upload = await _get_upload(call)
    if call.header("x-amz-copy-source") is not None:
        return await _upload_part_copy(call, upload, number)
    received = await receive_body(
        call.request,
        call.store.new_temp_path(),
        max_size=MAX_OBJECT_BYTES,
        also_compute=[upload.checksum_algorithm],
    )
    algorithm = upload.checksum_algorithm
    try:
        part = await offload(
            call.store.put_part,
            upload,
            number,
            received.path,
            size=received.size,
            etag=received.md5_hex,
            checksum=b64(received.checksums[algorithm]) if algorithm else None,
        )
    finally:
        received.path.unlink(missing_ok=True)
    headers = [("ETag", f'"{part.etag}"')]
    echoed = received.checksum_algorithm or algorithm
    if echoed is not None:
        headers.append((f"x-amz-checksum-{echoed.lower()}", b64(received.checksums[echoed])))
    return Response(200, b"", headers)


async def _upload_part_copy(call: Call, upload: UploadInfo, number: int) -> Response:
    source_location = parse_copy_source(call.header("x-amz-copy-source") or "")
    copy_range = call.header("x-amz-copy-source-range")
    algorithm = upload.checksum_algorithm

    def plan(source: ObjectInfo) -> tuple[ByteRange | None, frozenset[str]]:
        byte_range = parse_copy_range(copy_range, source.size) if copy_range is not None else None
        return byte_range, frozenset([algorithm] if algorithm else [])

    temp = call.store.new_temp_path()
    try:
        _, sink = await offload(copy_source_into, call.store, source_location, call.header, temp, plan)
        part = await offload(
            call.store.put_part,
            upload,
            number,
            temp,
            size=sink.size,
            etag=sink.md5.hexdigest(),
            checksum=b64(sink.digests()[algorithm]) if algorithm else None,
        )
    finally:
        temp.unlink(missing_ok=True)
    root = node(
        "CopyPartResult",
        ("LastModified", iso_time(part.last_modified)),
        ("ETag", f'"{part.etag}"'),
        (f"Checksum{algorithm}", part.checksum) if algorithm else None,
    )
    return xml_response(root)


def _check_parts(upload: UploadInfo, specs: list[PartSpec], stored: list[PartInfo]) -> list[PartInfo]:
    """The stored parts that `specs` name, in order, after S3's checks on the list."""
    by_number = {part.part_number: part for part in stored}
    chosen: list[PartInfo] = []
    previous = 0
    for spec in specs:
        if spec.part_number <= previous:
            raise InvalidPartOrder(
                "The list of parts was not in ascending order. The parts list must be specified in order by "
                "part number.",
                fields=(("UploadId", upload.upload_id),),
            )
        previous = spec.part_number
        part = by_number.get(spec.part_number)
        mismatch = part is None or part.etag != spec.etag
        if part is not None and upload.checksum_algorithm is not None:
            listed = dict(spec.checksums).get(upload.checksum_algorithm)
            mismatch = mismatch or (listed is not None and listed != part.checksum)
        if mismatch or part is None:
            raise InvalidPart(
                "One or more of the specified parts could not be found.  The part may not have been "
                "uploaded, or the specified entity tag may not match the part's entity tag.",
                fields=(
                    ("UploadId", upload.upload_id),
                    ("PartNumber", str(spec.part_number)),
                    ("ETag", spec.etag),
                ),
            )
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART_BYTES:
            raise EntityTooSmall(
                "Your proposed upload is smaller than the minimum allowed size",
                fields=(
                    ("ProposedSize", str(part.size)),
                    ("MinSizeAllowed", str(MIN_PART_BYTES)),
                    ("PartNumber", str(part.part_number)),
                    ("ETag", part.etag),
                ),
            )
    return chosen


def _assemble(
    store: Store, upload: UploadInfo, parts: list[PartInfo], temp: Path, full: str | None
) -> FileSink:
    """Concatenate the parts into one fsynced file, computing a full-object checksum if asked."""
    sink = FileSink(temp, algorithms=frozenset([full] if full else []))
    try:
        for part in parts:
            try:
                sink.copy_file(store.part_path(upload, part))
            except FileNotFoundError:
                raise NoSuchUpload(upload.upload_id) from None  # aborted while being completed
        sink.finish()
    except BaseException:
        sink.close()
        raise
    return sink


async def _already_completed(call: Call, upload_id: str) -> ObjectInfo:
    found = await offload(call.store.completed_upload, call.bucket, call.object_key, upload_id)
    if found is None:
        raise NoSuchUpload(upload_id)
    return found


async def complete_upload(call: Call) -> Response:
    upload_id = call.query.get("uploadId", "")
    body = await call.request.body(_MAX_XML_BYTES)
    verify_small_body(call.request, body)
    specs = parse_complete_upload(body)
    try:
        upload = await _get_upload(call)
    except NoSuchUpload:
        # A retry of a Complete that succeeded but whose answer was lost: S3 answers it again.
        return _completed_response(call.request, await _already_completed(call, upload_id))
    parts = _check_parts(upload, specs, await offload(call.store.list_parts, upload))
    etag = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts), usedforsecurity=False).hexdigest()
    etag = f"{etag}-{len(parts)}"
    algorithm, kind = upload.checksum_algorithm, upload.checksum_type
    full = algorithm if kind == "FULL_OBJECT" else None
    temp = call.store.new_temp_path()
    try:
        sink = await offload(_assemble, call.store, upload, parts, temp, full)
        checksum: ChecksumInfo | None = None
        if algorithm is not None and full is not None:
            value = b64(sink.digests()[full])
            claimed_algorithm, claimed = requested_checksum(call.request)
            if claimed is not None and (claimed_algorithm != algorithm or claimed.strip() != value):
                raise BadDigest(
                    f"The {claimed_algorithm} you specified did not match the calculated checksum."
                )
            checksum = ChecksumInfo(algorithm, value, "FULL_OBJECT")
        elif algorithm is not None:
            digests = [base64.b64decode(part.checksum or "") for part in parts]
            checksum = ChecksumInfo(algorithm, composite_checksum(algorithm, digests), "COMPOSITE")
        info = await offload(
            call.store.put_object,
            call.bucket,
            call.object_key,
            temp,
            size=sink.size,
            etag=etag,
            attributes=upload.attributes,
            checksum=checksum,
            part_sizes=tuple(part.size for part in parts),
            if_match=call.header("if-match"),
            if_none_match=call.header("if-none-match"),
            finish_upload=upload.upload_id,
        )
    except NoSuchUpload:
        return _completed_response(call.request, await _already_completed(call, upload_id))
    finally:
        temp.unlink(missing_ok=True)
    return _completed_response(call.request, info)


def _completed_response(request: Request, info: ObjectInfo) -> Response:
    host = request.headers.get("host") or "localhost"
    checksum = info.checksum
    root = node(
        "CompleteMultipartUploadResult",
        ("Location", f"http://{host}/{info.bucket}/{url_encode(info.key)}"),
        ("Bucket", info.bucket),
        ("Key", info.key),
        ("ETag", info.quoted_etag),
        (f"Checksum{checksum.algorithm}", checksum.value) if checksum else None,
        ("ChecksumType", checksum.type) if checksum else None,
    )
    return xml_response(root)


async def abort_upload(call: Call) -> Response:
    await offload(call.store.abort_upload, call.bucket, call.object_key, call.query.get("uploadId", ""))
    return Response(204)


async def list_parts(call: Call) -> Response:
    upload = await _get_upload(call)
    max_parts = call.int_param("max-parts", 1000, maximum=1000)
    marker = call.int_param("part-number-marker", 0)
    parts = [part for part in await offload(call.store.list_parts, upload) if part.part_number > marker]
    page, truncated = parts[:max_parts], len(parts) > max_parts
    algorithm = upload.checksum_algorithm
    root = node(
        "ListPartsResult",
        ("Bucket", call.bucket),
        ("Key", upload.key),
        ("UploadId", upload.upload_id),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page[-1].part_number if page else marker),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
        [
            node(
                "Part",
                ("PartNumber", part.part_number),
                ("LastModified", iso_time(part.last_modified)),
                ("ETag", f'"{part.etag}"'),
                ("Size", part.size),
                (f"Checksum{algorithm}", part.checksum) if algorithm else None,
            )
            for part in page
        ],
        owner("Initiator"),
        owner(),
        ("StorageClass", "STANDARD"),
        ("ChecksumAlgorithm", algorithm),
        ("ChecksumType", upload.checksum_type),
    )
    return xml_response(root)


async def list_uploads(call: Call) -> Response:
    """ListMultipartUploads: uploads in (key, initiation) order, with prefix, delimiter and markers."""
    encoding = call.query.get("encoding-type")
    encode = url_encode if encoding is not None and encoding.lower() == "url" else (lambda value: value)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    key_marker = call.query.get("key-marker", "")
    id_marker = call.query.get("upload-id-marker", "")
    limit = call.int_param("max-uploads", 1000, maximum=1000)
    uploads = await offload(call.store.list_uploads, call.bucket)
    entries: list[UploadInfo] = []
    prefixes: list[str] = []
    seen_after_marker = not id_marker
    truncated = False
    last: tuple[str, str] = ("", "")
    for upload in uploads:
        if not upload.key.startswith(prefix):
            continue
        if key_marker:
            if upload.key < key_marker:
                continue
            if upload.key == key_marker:
                if not id_marker:
                    continue
                if not seen_after_marker:
                    seen_after_marker = upload.upload_id == id_marker
                    continue
        rest = upload.key[len(prefix) :]
        common = (
            prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if delimiter and delimiter in rest
            else None
        )
        if common is not None and common in prefixes:
            continue
        if len(entries) + len(prefixes) == limit:
            truncated = True
            break
        if common is not None:
            prefixes.append(common)
            last = (common, "")
        else:
            entries.append(upload)
            last = (upload.key, upload.upload_id)
    root = node(
        "ListMultipartUploadsResult",
        ("Bucket", call.bucket),
        ("KeyMarker", encode(key_marker)),
        ("UploadIdMarker", id_marker),
        ("NextKeyMarker", encode(last[0]) if truncated else None),
        ("NextUploadIdMarker", last[1] if truncated else None),
        ("Prefix", encode(prefix) if prefix else None),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("MaxUploads", limit),
        ("EncodingType", "url" if encoding is not None else None),
        ("IsTruncated", truncated),
        [
            node(
                "Upload",
                ("Key", encode(upload.key)),
                ("UploadId", upload.upload_id),
                owner("Initiator"),
                owner(),
                ("StorageClass", "STANDARD"),
                ("Initiated", iso_time(upload.initiated)),
                ("ChecksumAlgorithm", upload.checksum_algorithm),
                ("ChecksumType", upload.checksum_type),
            )
            for upload in entries
        ],
        [node("CommonPrefixes", ("Prefix", encode(common))) for common in prefixes],
    )
    return xml_response(root)
