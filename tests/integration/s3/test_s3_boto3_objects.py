"""Unchanged boto3 against the embedded S3: buckets, objects, ranges, conditions, copies, deletes."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from moorage.s3 import build_s3_app
from support.background import serve_in_thread


def _code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def _status(error: ClientError) -> int:
    return int(error.response["ResponseMetadata"]["HTTPStatusCode"])


def test_bucket_lifecycle(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    s3.create_bucket(Bucket="other-bucket", CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    names = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    assert names == ["models", "other-bucket"]
    assert (
        s3.head_bucket(Bucket="models")["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"]
        == "us-east-1"
    )
    assert s3.get_bucket_location(Bucket="models")["LocationConstraint"] is None  # us-east-1 reads as empty

    # In us-east-1, S3 answers 200 to creating a bucket you already own (409 BucketAlreadyOwnedByYou
    # elsewhere); nothing about the bucket changes.
    assert s3.create_bucket(Bucket="models")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["models", "other-bucket"]

    s3.put_object(Bucket="models", Key="weights.pt", Body=b"w")
    with pytest.raises(ClientError) as not_empty:
        s3.delete_bucket(Bucket="models")
    assert (_code(not_empty.value), _status(not_empty.value)) == ("BucketNotEmpty", 409)

    s3.delete_object(Bucket="models", Key="weights.pt")
    s3.delete_bucket(Bucket="models")
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket="models")
    assert _status(gone.value) == 404
    with pytest.raises(ClientError) as listing:
        s3.list_objects_v2(Bucket="models")
    assert (_code(listing.value), _status(listing.value)) == ("NoSuchBucket", 404)
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["other-bucket"]


@pytest.mark.parametrize(
    "name", ["ab", "UPPERCASE", "a..b", "192.168.1.10", "-leading", "trailing-", "x" * 64]
)
def test_invalid_bucket_names_are_refused(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket=name)
    assert (_code(error.value), _status(error.value)) == ("InvalidBucketName", 400)


def test_other_region_location_constraint_is_refused(s3: Any) -> None:
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert _code(error.value) == "IllegalLocationConstraintException"


def test_object_round_trip_keeps_type_metadata_and_headers(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    body = os.urandom(3000)
    put = s3.put_object(
        Bucket="models",
        Key="model.tar.gz",
        Body=body,
        ContentType="application/x-tar",
        Metadata={"Framework": "pytorch", "version": "2.1"},
        CacheControl="no-cache",
        ContentDisposition='attachment; filename="model.tar.gz"',
        ContentLanguage="en",
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket="models", Key="model.tar.gz")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-tar"
    assert got["Metadata"] == {"framework": "pytorch", "version": "2.1"}  # S3 lower-cases the names
    assert got["CacheControl"] == "no-cache"
    assert got["ContentDisposition"] == 'attachment; filename="model.tar.gz"'
    assert got["ContentLanguage"] == "en"
    assert got["ContentLength"] == 3000
    head = s3.head_object(Bucket="models", Key="model.tar.gz")
    assert (head["ETag"], head["ContentLength"], head["Metadata"]["framework"]) == (
        put["ETag"],
        3000,
        "pytorch",
    )
    # No Content-Type sent: S3's default.
    s3.put_object(Bucket="models", Key="plain", Body=b"x")
    assert s3.head_object(Bucket="models", Key="plain")["ContentType"] == "binary/octet-stream"
    # Presigned-style overrides on GET.
    overridden = s3.get_object(Bucket="models", Key="plain", ResponseContentType="text/csv")
    assert overridden["ContentType"] == "text/csv"


def test_overwrite_replaces_the_object_and_its_file(s3: Any, s3_root: Path) -> None:
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="k", Body=b"first", Metadata={"n": "1"})
    s3.put_object(Bucket="models", Key="k", Body=b"second")
    got = s3.get_object(Bucket="models", Key="k")
    assert (got["Body"].read(), got["Metadata"]) == (b"second", {})
    assert len(list((s3_root / "buckets" / "models").iterdir())) == 1


ODD_KEYS = [
    "with space.txt",
    "unicode/ñandú/日本語.bin",
    "../../etc/passwd",
    "a/../../b",
    "a//double/slash",
    "plus+sign and%20percent",
    "question?mark#hash&amp=1",
    "trailing/",
    "emoji-🙂",
    "tab\tand\\backslash",
]


def test_keys_with_odd_characters_round_trip_and_stay_inside_the_root(
    s3: Any, s3_root: Path, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="odd")
    for index, key in enumerate(ODD_KEYS):
        s3.put_object(Bucket="odd", Key=key, Body=f"body {index}".encode())
    for index, key in enumerate(ODD_KEYS):
        assert s3.get_object(Bucket="odd", Key=key)["Body"].read() == f"body {index}".encode()
    listed = [item["Key"] for item in s3.list_objects_v2(Bucket="odd")["Contents"]]
    assert listed == sorted(ODD_KEYS, key=lambda key: key.encode())  # S3 orders by UTF-8 bytes
    listed_v1 = [item["Key"] for item in s3.list_objects(Bucket="odd")["Contents"]]
    assert listed_v1 == listed
    # Nothing was written outside the store's root, and no key became a path inside it.
    outside = {path.name for path in tmp_path.iterdir()}
    assert outside == {"s3-root", "home"}
    names = {path.name for path in s3_root.rglob("*")}
    assert not names & {"passwd", "b", "etc", "double", "slash"}
    for key in ODD_KEYS:
        s3.delete_object(Bucket="odd", Key=key)
    assert s3.list_objects_v2(Bucket="odd")["KeyCount"] == 0


def test_key_longer_than_1024_bytes_is_refused(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket="models", Key="k" * 1025, Body=b"x")
    assert _code(error.value) == "KeyTooLongError"


def test_ranged_gets(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    body = bytes(range(256)) * 4  # 1024 bytes
    s3.put_object(Bucket="models", Key="r", Body=body)

    def ranged(spec: str) -> tuple[int, str | None, bytes]:
        got = s3.get_object(Bucket="models", Key="r", Range=spec)
        status = got["ResponseMetadata"]["HTTPStatusCode"]
        return status, got.get("ContentRange"), got["Body"].read()

    assert ranged("bytes=0-9") == (206, "bytes 0-9/1024", body[:10])
    assert ranged("bytes=1000-") == (206, "bytes 1000-1023/1024", body[1000:])
    assert ranged("bytes=-24") == (206, "bytes 1000-1023/1024", body[-24:])
    assert ranged("bytes=1020-5000") == (206, "bytes 1020-1023/1024", body[1020:])
    assert ranged("bytes=-5000") == (206, "bytes 0-1023/1024", body)
    assert ranged("bytes=0-1,5-6") == (200, None, body)  # several ranges: S3 sends the whole object
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket="models", Key="r", Range="bytes=1024-")
    assert (_code(error.value), _status(error.value)) == ("InvalidRange", 416)
    assert error.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == "bytes */1024"


def test_empty_object(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    put = s3.put_object(Bucket="models", Key="empty", Body=b"")
    assert put["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    got = s3.get_object(Bucket="models", Key="empty")
    assert (got["ContentLength"], got["Body"].read()) == (0, b"")
    with pytest.raises(ClientError) as error:
        s3.get_object(Bucket="models", Key="empty", Range="bytes=0-")
    assert _code(error.value) == "InvalidRange"


def test_conditional_gets(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    etag = s3.put_object(Bucket="models", Key="c", Body=b"data")["ETag"]
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=1)
    assert s3.get_object(Bucket="models", Key="c", IfMatch=etag)["Body"].read() == b"data"
    assert s3.get_object(Bucket="models", Key="c", IfModifiedSince=past)["Body"].read() == b"data"
    for kwargs, status in [
        ({"IfNoneMatch": etag}, 304),
        ({"IfModifiedSince": future}, 304),
        ({"IfMatch": '"0000"'}, 412),
        ({"IfUnmodifiedSince": past}, 412),
    ]:
        with pytest.raises(ClientError) as error:
            s3.get_object(Bucket="models", Key="c", **kwargs)
        assert _status(error.value) == status, kwargs
    # If-Match decides over If-Unmodified-Since (RFC 9110 §13.2.2, as S3 documents).
    assert s3.head_object(Bucket="models", Key="c", IfMatch=etag, IfUnmodifiedSince=past)["ETag"] == etag


def test_conditional_put(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket="models", Key="once", Body=b"2", IfNoneMatch="*")
    assert (_code(error.value), _status(error.value)) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket="models", Key="once")["Body"].read() == b"1"


def test_missing_objects_and_buckets(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    with pytest.raises(ClientError) as no_key:
        s3.get_object(Bucket="models", Key="absent")
    assert (_code(no_key.value), _status(no_key.value)) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as no_key_head:
        s3.head_object(Bucket="models", Key="absent")
    assert (_code(no_key_head.value), _status(no_key_head.value)) == ("404", 404)  # HEAD: status only
    with pytest.raises(ClientError) as no_bucket:
        s3.get_object(Bucket="absent-bucket", Key="k")
    assert (_code(no_bucket.value), _status(no_bucket.value)) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as no_bucket_put:
        s3.put_object(Bucket="absent-bucket", Key="k", Body=b"x")
    assert _code(no_bucket_put.value) == "NoSuchBucket"


def test_integrity_headers_are_checked(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as md5:
        s3.put_object(Bucket="models", Key="k", Body=b"data", ContentMD5=wrong_md5)
    assert (_code(md5.value), _status(md5.value)) == ("BadDigest", 400)
    with pytest.raises(ClientError) as invalid_md5:
        s3.put_object(Bucket="models", Key="k", Body=b"data", ContentMD5="not-base64!")
    assert _code(invalid_md5.value) == "InvalidDigest"
    with pytest.raises(ClientError) as crc:
        s3.put_object(Bucket="models", Key="k", Body=b"data", ChecksumCRC32="AAAAAA==")
    assert _code(crc.value) == "BadDigest"
    with pytest.raises(ClientError) as absent:
        s3.head_object(Bucket="models", Key="k")
    assert _status(absent.value) == 404  # nothing failed verification became visible

    right_md5 = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    s3.put_object(Bucket="models", Key="k", Body=b"data", ContentMD5=right_md5)
    sha = base64.b64encode(hashlib.sha256(b"data").digest()).decode()
    s3.put_object(Bucket="models", Key="s", Body=b"data", ChecksumSHA256=sha)
    got = s3.get_object(Bucket="models", Key="s", ChecksumMode="ENABLED")
    assert (got["ChecksumSHA256"], got["Body"].read()) == (sha, b"data")


def test_default_crc32_is_stored_and_returned_for_validation(s3: Any) -> None:
    # botocore adds x-amz-checksum-crc32 to every PutObject; on GET with ChecksumMode it validates it.
    s3.create_bucket(Bucket="models")
    body = os.urandom(5000)
    s3.put_object(Bucket="models", Key="k", Body=body)
    got = s3.get_object(Bucket="models", Key="k", ChecksumMode="ENABLED")
    expected = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert (got["ChecksumCRC32"], got["Body"].read()) == (expected, body)
    ranged = s3.get_object(Bucket="models", Key="k", ChecksumMode="ENABLED", Range="bytes=0-9")
    assert "ChecksumCRC32" not in ranged  # a part of the body cannot carry the whole object's checksum
    assert ranged["Body"].read() == body[:10]


def test_copy_object(s3: Any) -> None:
    s3.create_bucket(Bucket="src-bucket")
    s3.create_bucket(Bucket="dst-bucket")
    etag = s3.put_object(
        Bucket="src-bucket", Key="a b/ñ", Body=b"payload", ContentType="text/plain", Metadata={"k": "v"}
    )["ETag"]
    copied = s3.copy_object(
        Bucket="dst-bucket", Key="copy", CopySource={"Bucket": "src-bucket", "Key": "a b/ñ"}
    )
    assert copied["CopyObjectResult"]["ETag"] == etag
    got = s3.get_object(Bucket="dst-bucket", Key="copy")
    assert (got["Body"].read(), got["ContentType"], got["Metadata"]) == (b"payload", "text/plain", {"k": "v"})

    s3.copy_object(
        Bucket="dst-bucket",
        Key="replaced",
        CopySource="src-bucket/a b/ñ",
        MetadataDirective="REPLACE",
        ContentType="application/json",
        Metadata={"new": "1"},
    )
    replaced = s3.head_object(Bucket="dst-bucket", Key="replaced")
    assert (replaced["ContentType"], replaced["Metadata"]) == ("application/json", {"new": "1"})

    with pytest.raises(ClientError) as to_itself:
        s3.copy_object(Bucket="src-bucket", Key="a b/ñ", CopySource={"Bucket": "src-bucket", "Key": "a b/ñ"})
    assert _code(to_itself.value) == "InvalidRequest"
    with pytest.raises(ClientError) as missing:
        s3.copy_object(Bucket="dst-bucket", Key="x", CopySource={"Bucket": "src-bucket", "Key": "absent"})
    assert _code(missing.value) == "NoSuchKey"
    with pytest.raises(ClientError) as condition:
        s3.copy_object(
            Bucket="dst-bucket",
            Key="x",
            CopySource={"Bucket": "src-bucket", "Key": "a b/ñ"},
            CopySourceIfMatch='"0000"',
        )
    assert _code(condition.value) == "PreconditionFailed"


def test_delete_objects(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    for key in ("a", "b", "c"):
        s3.put_object(Bucket="models", Key=key, Body=key.encode())
    result = s3.delete_objects(
        Bucket="models", Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "nope"}]}
    )
    assert sorted(item["Key"] for item in result["Deleted"]) == ["a", "b", "nope"]
    assert "Errors" not in result
    quiet = s3.delete_objects(Bucket="models", Delete={"Objects": [{"Key": "c"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert s3.list_objects_v2(Bucket="models")["KeyCount"] == 0


def test_unsupported_subresource_says_not_implemented(s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    with pytest.raises(ClientError) as error:
        s3.get_bucket_policy(Bucket="models")
    assert (_code(error.value), _status(error.value)) == ("NotImplemented", 501)


def test_restart_keeps_what_was_acknowledged(s3_root: Path, s3_client: Any) -> None:
    with serve_in_thread(build_s3_app(s3_root, region="us-east-1")) as url:
        client = s3_client(url)
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="model.tar.gz", Body=b"weights", Metadata={"a": "b"})
        upload = client.create_multipart_upload(Bucket="models", Key="big")["UploadId"]
        part = client.upload_part(Bucket="models", Key="big", UploadId=upload, PartNumber=1, Body=b"tail")
    with serve_in_thread(build_s3_app(s3_root, region="us-east-1")) as url:
        client = s3_client(url)
        got = client.get_object(Bucket="models", Key="model.tar.gz")
        assert (got["Body"].read(), got["Metadata"]) == (b"weights", {"a": "b"})
        parts = client.list_parts(Bucket="models", Key="big", UploadId=upload)["Parts"]
        assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, part["ETag"], 4)]
        client.complete_multipart_upload(
            Bucket="models",
            Key="big",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        assert client.get_object(Bucket="models", Key="big")["Body"].read() == b"tail"


def test_creating_an_owned_bucket_again_is_a_409_outside_us_east_1(tmp_path: Path) -> None:
    with serve_in_thread(build_s3_app(tmp_path / "store", region="eu-west-1")) as url:
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
            config=Config(s3={"addressing_style": "path"}),
        )
        location = {"LocationConstraint": "eu-west-1"}
        s3.create_bucket(Bucket="models", CreateBucketConfiguration=location)
        with pytest.raises(ClientError) as again:
            s3.create_bucket(Bucket="models", CreateBucketConfiguration=location)
        assert (_code(again.value), _status(again.value)) == ("BucketAlreadyOwnedByYou", 409)
