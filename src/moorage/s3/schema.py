"""The store's SQLite index: its schema, and the conversion between rows and records.

Keys are stored as UTF-8 BLOBs because SQLite compares BLOBs bytewise, which is exactly S3's listing
order; headers and user metadata are JSON lists of [name, value] pairs, kept in the order received.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from moorage.s3.records import ChecksumInfo, ObjectAttributes, ObjectInfo, UploadInfo

__all__ = ["OBJECT_COLUMNS", "SCHEMA", "encode_key", "object_from_row", "upload_from_row"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    region TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,             -- UTF-8: BLOBs compare bytewise, which is S3's listing order
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified REAL NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,         -- JSON [[name, value], ...]
    metadata TEXT NOT NULL,        -- JSON [[name, value], ...]
    checksum_algorithm TEXT,
    checksum TEXT,
    checksum_type TEXT,
    part_sizes TEXT NOT NULL,      -- JSON [size, ...], empty for a simple object
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    initiated REAL NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,
    metadata TEXT NOT NULL,
    checksum_algorithm TEXT,
    checksum_type TEXT
);
CREATE INDEX IF NOT EXISTS uploads_by_bucket ON uploads (bucket, key, initiated);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified REAL NOT NULL,
    checksum TEXT,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
-- Completed uploads, so that a retried CompleteMultipartUpload (the answer to the first was lost)
-- succeeds as it does on S3 instead of failing with NoSuchUpload.
CREATE TABLE IF NOT EXISTS completed (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    etag TEXT NOT NULL,
    completed REAL NOT NULL
);
"""

OBJECT_COLUMNS = (
    "key, file, size, etag, last_modified, content_type, headers, metadata, "
    "checksum_algorithm, checksum, checksum_type, part_sizes"
)


def _pairs(raw: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(value)) for name, value in json.loads(raw))


def object_from_row(bucket: str, row: Sequence[object]) -> tuple[ObjectInfo, str]:
    key, file, size, etag, modified, content_type, headers, metadata, algorithm, checksum, kind, sizes = row
    assert isinstance(key, bytes) and isinstance(file, str)
    info = ObjectInfo(
        bucket=bucket,
        key=key.decode("utf-8", "surrogatepass"),
        size=int(str(size)),
        etag=str(etag),
        last_modified=float(str(modified)),
        attributes=ObjectAttributes(str(content_type), _pairs(str(metadata)), _pairs(str(headers))),
        checksum=None if algorithm is None else ChecksumInfo(str(algorithm), str(checksum), str(kind)),
        part_sizes=tuple(int(size) for size in json.loads(str(sizes))),
    )
    return info, file


def encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def upload_from_row(row: Sequence[object]) -> UploadInfo:
    upload_id, bucket, key, initiated, content_type, headers, metadata, algorithm, kind = row
    assert isinstance(key, bytes)
    return UploadInfo(
        upload_id=str(upload_id),
        bucket=str(bucket),
        key=key.decode("utf-8", "surrogatepass"),
        initiated=float(str(initiated)),
        attributes=ObjectAttributes(str(content_type), _pairs(str(metadata)), _pairs(str(headers))),
        checksum_algorithm=None if algorithm is None else str(algorithm),
        checksum_type=None if kind is None else str(kind),
    )
