"""Multipart uploads through boto3: the low-level calls, S3's rules, and s3transfer's upload/download."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

MIB = 1024 * 1024


def _code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def _multipart_etag(*parts: bytes) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(part).digest() for part in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket="uploads")
    return "uploads"


def _start(s3: Any, bucket: str, key: str, **kwargs: Any) -> str:
    return str(s3.create_multipart_upload(Bucket=bucket, Key=key, **kwargs)["UploadId"])


def _put(s3: Any, bucket: str, key: str, upload: str, number: int, body: bytes) -> dict[str, Any]:
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body)
    return {"PartNumber": number, "ETag": part["ETag"]}


def test_complete_assembles_parts_with_s3s_etag(s3: Any, bucket: str) -> None:
    first, last = os.urandom(5 * MIB), os.urandom(1000)
    upload = _start(s3, bucket, "model.tar.gz", ContentType="application/x-tar", Metadata={"m": "1"})
    parts = [
        _put(s3, bucket, "model.tar.gz", upload, 1, first),
        _put(s3, bucket, "model.tar.gz", upload, 2, last),
    ]
    listed = s3.list_parts(Bucket=bucket, Key="model.tar.gz", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * MIB), (2, 1000)]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("model.tar.gz", upload)]

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="model.tar.gz", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert done["ETag"] == _multipart_etag(first, last)
    got = s3.get_object(Bucket=bucket, Key="model.tar.gz")
    assert got["Body"].read() == first + last
    assert (got["ContentType"], got["Metadata"], got["ETag"]) == (
        "application/x-tar",
        {"m": "1"},
        done["ETag"],
    )
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    # The parts of a multipart object can be read back one at a time.
    part_two = s3.get_object(Bucket=bucket, Key="model.tar.gz", PartNumber=2)
    assert (part_two["Body"].read(), part_two["PartsCount"]) == (last, 2)
    # A retried Complete (its first answer lost) succeeds again, as on S3.
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="model.tar.gz", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert again["ETag"] == done["ETag"]


def test_part_rules(s3: Any, bucket: str) -> None:
    small = os.urandom(1024)
    upload = _start(s3, bucket, "k")
    one = _put(s3, bucket, "k", upload, 1, small)
    two = _put(s3, bucket, "k", upload, 2, small)
    cases = [
        ([two, one], "InvalidPartOrder"),
        ([one, one], "InvalidPartOrder"),
        ([{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}], "InvalidPart"),
        ([{"PartNumber": 3, "ETag": one["ETag"]}], "InvalidPart"),
        ([one, two], "EntityTooSmall"),  # every part but the last is at least 5 MiB
    ]
    for parts, code in cases:
        with pytest.raises(ClientError) as error:
            s3.complete_multipart_upload(
                Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": parts}
            )
        assert _code(error.value) == code, parts
    # A single small part is fine: it is the last one.
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": [one]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == small


def test_part_number_range_and_unknown_uploads(s3: Any, bucket: str) -> None:
    upload = _start(s3, bucket, "k")
    for number in (0, 10001):
        with pytest.raises(ClientError) as error:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=number, Body=b"x")
        assert _code(error.value) == "InvalidArgument"
    with pytest.raises(ClientError) as unknown:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="0" * 32, PartNumber=1, Body=b"x")
    assert _code(unknown.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as other_key:
        s3.list_parts(Bucket=bucket, Key="other", UploadId=upload)
    assert _code(other_key.value) == "NoSuchUpload"


def test_abort_removes_the_upload(s3: Any, bucket: str, s3_root: Path) -> None:
    upload = _start(s3, bucket, "k")
    _put(s3, bucket, "k", upload, 1, b"data")
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload)
    with pytest.raises(ClientError) as error:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=upload)
    assert (_code(error.value), error.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "NoSuchUpload",
        404,
    )
    assert not (s3_root / ".uploads" / upload).exists()
    with pytest.raises(ClientError) as absent:
        s3.head_object(Bucket=bucket, Key="k")
    assert (_code(absent.value), absent.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("404", 404)


def test_replacing_a_part_keeps_the_last_one(s3: Any, bucket: str) -> None:
    upload = _start(s3, bucket, "k")
    _put(s3, bucket, "k", upload, 1, b"old")
    newer = _put(s3, bucket, "k", upload, 1, b"new")
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": [newer]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    source = os.urandom(6 * MIB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload = _start(s3, bucket, "copy")
    first = s3.upload_part_copy(
        Bucket=bucket,
        Key="copy",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange=f"bytes=0-{5 * MIB - 1}",
    )["CopyPartResult"]
    second = _put(s3, bucket, "copy", upload, 2, b"tail")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="copy",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first["ETag"]}, second]},
    )
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == source[: 5 * MIB] + b"tail"
    with pytest.raises(ClientError) as error:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="copy2",
            UploadId=_start(s3, bucket, "copy2"),
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "source"},
            CopySourceRange=f"bytes=0-{6 * MIB}",
        )
    assert _code(error.value) == "InvalidRange"


def test_crc32_checksums_through_a_multipart_upload(s3: Any, bucket: str) -> None:
    # What s3transfer does by default: ChecksumAlgorithm=CRC32 on create, a CRC32 per part, the part
    # checksums listed in Complete; the object then carries S3's composite checksum "<b64>-<parts>".
    first, last = os.urandom(5 * MIB), os.urandom(10)
    upload = _start(s3, bucket, "k", ChecksumAlgorithm="CRC32")
    crcs = []
    parts = []
    for number, body in ((1, first), (2, last)):
        answer = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload, PartNumber=number, Body=body, ChecksumAlgorithm="CRC32"
        )
        crcs.append(zlib.crc32(body).to_bytes(4, "big"))
        assert answer["ChecksumCRC32"] == base64.b64encode(crcs[-1]).decode()
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": answer["ChecksumCRC32"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    composite = base64.b64encode(zlib.crc32(b"".join(crcs)).to_bytes(4, "big")).decode() + "-2"
    assert (done["ChecksumCRC32"], done["ChecksumType"]) == (composite, "COMPOSITE")
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (got["ChecksumCRC32"], got["Body"].read()) == (composite, first + last)


def test_wrong_part_checksum_in_complete_is_refused(s3: Any, bucket: str) -> None:
    upload = _start(s3, bucket, "k", ChecksumAlgorithm="CRC32")
    part = s3.upload_part(
        Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"x", ChecksumAlgorithm="CRC32"
    )
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": "AAAAAA=="}]},
        )
    assert _code(error.value) == "InvalidPart"


def test_upload_file_and_download_file_go_multipart(s3: Any, bucket: str, tmp_path: Path) -> None:
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)
    data = os.urandom(12 * MIB + 123)
    source = tmp_path / "model.tar.gz"
    source.write_bytes(data)
    s3.upload_file(str(source), bucket, "models/model.tar.gz", Config=config)
    head = s3.head_object(Bucket=bucket, Key="models/model.tar.gz")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == _multipart_etag(data[: 5 * MIB], data[5 * MIB : 10 * MIB], data[10 * MIB :])
    target = tmp_path / "downloaded.tar.gz"
    s3.download_file(bucket, "models/model.tar.gz", str(target), Config=config)  # ranged GETs
    assert hashlib.md5(target.read_bytes()).digest() == hashlib.md5(data).digest()


def test_list_multipart_uploads_with_delimiter_and_pages(s3: Any, bucket: str) -> None:
    started = {key: _start(s3, bucket, key) for key in ("a/1", "a/2", "b", "c")}
    grouped = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in grouped["Uploads"]] == ["b", "c"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/"]
    under_a = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in under_a["Uploads"]] == ["a/1", "a/2"]
    paginator = s3.get_paginator("list_multipart_uploads")
    seen = [
        (upload["Key"], upload["UploadId"])
        for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 1})
        for upload in page.get("Uploads", [])
    ]
    assert seen == sorted(started.items())
