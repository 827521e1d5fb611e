"""What the store knows about buckets, objects, uploads and parts: small frozen records.

Keys are `str` here and UTF-8 bytes in the index (so that listings sort in S3's byte order).
ETags are kept without quotes: an MD5 hex digest, or `<hex>-<parts>` for a multipart object.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BucketInfo", "ChecksumInfo", "ObjectAttributes", "ObjectInfo", "PartInfo", "UploadInfo"]


@dataclass(frozen=True)
class ChecksumInfo:
    algorithm: str  # one of checksums.ALGORITHMS
    value: str  # base64, with "-<n>" for a composite multipart checksum
    type: str  # FULL_OBJECT | COMPOSITE


@dataclass(frozen=True)
class ObjectAttributes:
    """What a writer says about an object besides its bytes (headers it sent, metadata)."""

    content_type: str = "binary/octet-stream"  # S3's default when the client sends none
    metadata: tuple[tuple[str, str], ...] = ()  # x-amz-meta-* names lower-cased, without the prefix
    headers: tuple[tuple[str, str], ...] = ()  # Cache-Control, Content-Disposition, Content-Encoding, ...


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created: float  # epoch seconds
    region: str


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: float  # epoch seconds
    attributes: ObjectAttributes
    checksum: ChecksumInfo | None = None
    part_sizes: tuple[int, ...] = ()  # one per part for a multipart object, else empty

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'

    @property
    def content_type(self) -> str:
        return self.attributes.content_type

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.attributes.metadata)


@dataclass(frozen=True)
class UploadInfo:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    attributes: ObjectAttributes
    checksum_algorithm: str | None = None
    checksum_type: str | None = None  # FULL_OBJECT | COMPOSITE when an algorithm is set


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    size: int
    etag: str  # MD5 hex of the part
    last_modified: float
    file: str  # file name under the upload's directory
    checksum: str | None = None  # base64, in the upload's checksum algorithm
