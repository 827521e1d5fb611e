"""The wire below boto3: error documents, HEAD, aws-chunked bodies, partial uploads, the auth hook."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import socket
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from moorage.errors import InvalidSignatureException
from moorage.httpd import Request
from moorage.s3 import build_s3_app
from support.background import serve_in_thread

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def _request(
    url: str, method: str, path: str, body: bytes | Iterator[bytes] | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    connection = _connection(url)
    try:
        connection.request(
            method, path, body=body, headers=headers, encode_chunked=not isinstance(body, bytes | None)
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket="wire")
    return "wire"


def test_error_document_shape(s3_url: str) -> None:
    status, headers, body = _request(s3_url, "GET", "/no-such-bucket/some%20key")
    assert status == 404
    assert headers["content-type"] == "application/xml"
    root = ET.fromstring(body)
    assert root.tag == "Error"
    fields = {child.tag: child.text for child in root}
    assert fields["Code"] == "NoSuchBucket"
    assert fields["Message"] == "The specified bucket does not exist"
    assert fields["BucketName"] == "no-such-bucket"
    assert fields["Resource"] == "/no-such-bucket/some%20key"
    assert fields["RequestId"] == headers["x-amz-request-id"]


def test_head_errors_have_no_body(s3_url: str, bucket: str) -> None:
    status, headers, body = _request(s3_url, "HEAD", f"/{bucket}/absent")
    assert (status, body, headers.get("content-length")) == (404, b"", "0")


def test_unknown_method_is_not_allowed(s3_url: str, bucket: str) -> None:
    status, _, body = _request(s3_url, "PATCH", f"/{bucket}/k")
    assert status == 405
    assert ET.fromstring(body).findtext("Code") == "MethodNotAllowed"


def test_dot_segments_in_the_target_are_names_not_paths(s3_url: str, bucket: str, s3_root: Path) -> None:
    status, _, body = _request(s3_url, "GET", "/../../etc/passwd")
    assert (status, ET.fromstring(body).findtext("Code")) == (404, "NoSuchBucket")
    status, _, _ = _request(s3_url, "PUT", f"/{bucket}/../../escaped", b"x")
    assert status == 200
    status, _, body = _request(s3_url, "GET", f"/{bucket}/../../escaped")
    assert (status, body) == (200, b"x")
    assert not (s3_root.parent / "escaped").exists() and not (s3_root / "escaped").exists()


def test_keep_alive_survives_an_early_error_on_a_small_body(s3_url: str) -> None:
    connection = _connection(s3_url)
    try:
        connection.request("PUT", "/no-such-bucket/k", body=b"x" * 100)
        first = connection.getresponse()
        first.read()
        connection.request("GET", "/")
        second = connection.getresponse()
        assert (first.status, second.status) == (404, 200)
        assert b"ListAllMyBucketsResult" in second.read()
    finally:
        connection.close()


def _aws_chunked(data: bytes, *, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """The body botocore sends over https: aws-chunked with an unsigned CRC32 trailer."""
    wrapper = AwsChunkedWrapper(io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", chunk_size=chunk)
    yield from wrapper


def _chunked_headers(size: int) -> dict[str, str]:
    return {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "X-Amz-Trailer": "x-amz-checksum-crc32",
        "X-Amz-Decoded-Content-Length": str(size),
        "Content-Type": "application/octet-stream",
    }


def test_aws_chunked_upload_with_trailing_checksum(s3_url: str, s3: Any, bucket: str) -> None:
    data = os.urandom(300_000)
    status, headers, _ = _request(
        s3_url, "PUT", f"/{bucket}/chunked", _aws_chunked(data), **_chunked_headers(len(data))
    )
    assert status == 200
    assert headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert "ContentEncoding" not in got  # aws-chunked framed that request; it is not the object's encoding


def test_aws_chunked_signed_chunks_are_decoded(s3_url: str, s3: Any, bucket: str) -> None:
    # The SigV4 streaming form other SDKs send: chunk signatures (checked by the auth layer, not here).
    data = os.urandom(20_000)
    signature = "0" * 64
    body = (
        b"".join(
            b"%x;chunk-signature=%s\r\n%s\r\n" % (len(piece), signature.encode(), piece)
            for piece in (data[:8192], data[8192:])
        )
        + b"0;chunk-signature=%s\r\n\r\n" % signature.encode()
    )
    headers = {
        "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
    }
    status, _, _ = _request(s3_url, "PUT", f"/{bucket}/signed", body, **headers)
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == data


def test_aws_chunked_bad_trailer_or_length_is_refused(s3_url: str, s3: Any, bucket: str) -> None:
    data = b"payload" * 1000
    framed = b"".join(_aws_chunked(data))
    tampered = framed.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32:AAAA")
    status, _, body = _request(s3_url, "PUT", f"/{bucket}/bad", tampered, **_chunked_headers(len(data)))
    assert (status, ET.fromstring(body).findtext("Code")) == (400, "BadDigest")
    status, _, body = _request(s3_url, "PUT", f"/{bucket}/bad", framed, **_chunked_headers(len(data) + 1))
    assert (status, ET.fromstring(body).findtext("Code")) == (400, "IncompleteBody")
    with pytest.raises(ClientError) as absent:
        s3.head_object(Bucket=bucket, Key="bad")  # neither body was stored
    assert absent.value.response["Error"]["Code"] == "404"


def test_content_sha256_is_checked(s3_url: str, bucket: str) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    status, _, body = _request(s3_url, "PUT", f"/{bucket}/k", b"data", **{"X-Amz-Content-SHA256": wrong})
    assert (status, ET.fromstring(body).findtext("Code")) == (400, "XAmzContentSHA256Mismatch")
    right = hashlib.sha256(b"data").hexdigest()
    status, _, _ = _request(s3_url, "PUT", f"/{bucket}/k", b"data", **{"X-Amz-Content-SHA256": right})
    assert status == 200


def _reflected_crc(data: bytes, poly: int, width: int) -> str:
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return base64.b64encode((crc ^ mask).to_bytes(width // 8, "big")).decode()


@pytest.mark.parametrize(
    ("algorithm", "poly", "width"), [("crc32c", 0x82F63B78, 32), ("crc64nvme", 0x9A6C9329AC4BC9B5, 64)]
)
def test_crt_only_checksums_are_verified_too(
    s3_url: str, s3: Any, bucket: str, algorithm: str, poly: int, width: int
) -> None:
    # botocore needs awscrt for these, so send them by hand, as another SDK would.
    data = os.urandom(9000)
    value = _reflected_crc(data, poly, width)
    status, headers, _ = _request(
        s3_url, "PUT", f"/{bucket}/c", data, **{f"x-amz-checksum-{algorithm}": value}
    )
    assert (status, headers[f"x-amz-checksum-{algorithm}"]) == (200, value)
    status, headers, body = _request(
        s3_url, "GET", f"/{bucket}/c", None, **{"x-amz-checksum-mode": "ENABLED"}
    )
    assert (status, body, headers[f"x-amz-checksum-{algorithm}"]) == (200, data, value)
    wrong = _reflected_crc(data + b"!", poly, width)
    status, _, body = _request(s3_url, "PUT", f"/{bucket}/c", data, **{f"x-amz-checksum-{algorithm}": wrong})
    assert (status, ET.fromstring(body).findtext("Code")) == (400, "BadDigest")


def _wait_until(condition: Any, deadline_s: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.02)


def test_an_object_is_invisible_until_its_body_is_complete(
    s3_url: str, s3: Any, bucket: str, s3_root: Path
) -> None:
    parts = urlsplit(s3_url)
    assert parts.port is not None
    with socket.create_connection(("127.0.0.1", parts.port), timeout=10) as sock:
        sock.sendall(f"PUT /{bucket}/partial HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n".encode())
        sock.sendall(b"x" * 1_500_000)
        _wait_until(lambda: any((s3_root / ".tmp").iterdir()))  # the body is arriving on disk ...
        with pytest.raises(ClientError) as error:
            s3.head_object(Bucket=bucket, Key="partial")  # ... but the object does not exist yet
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # The client gave up: nothing becomes visible and the temp file goes.
    _wait_until(lambda: not any((s3_root / ".tmp").iterdir()))
    with pytest.raises(ClientError) as absent:
        s3.head_object(Bucket=bucket, Key="partial")
    assert absent.value.response["Error"]["Code"] == "404"


def test_listing_encodes_keys_when_asked(s3_url: str, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a b+c/ñ", Body=b"x")
    status, _, body = _request(s3_url, "GET", f"/{bucket}?list-type=2&encoding-type=url")
    assert status == 200
    root = ET.fromstring(body)
    assert root.findtext(f"{NS}Contents/{NS}Key") == "a%20b%2Bc/%C3%B1"
    status, _, body = _request(s3_url, "GET", f"/{bucket}?list-type=2")
    assert ET.fromstring(body).findtext(f"{NS}Contents/{NS}Key") == "a b+c/ñ"


def test_authenticate_hook_runs_first(s3_root: Path, s3_client: Any) -> None:
    seen: list[str] = []

    async def authenticate(request: Request) -> None:
        seen.append(request.method)
        if request.headers.get("x-test-auth") != "ok":
            raise InvalidSignatureException("The request signature we calculated does not match.")

    with serve_in_thread(build_s3_app(s3_root, region="us-east-1", authenticate=authenticate)) as url:
        with pytest.raises(ClientError) as error:
            s3_client(url).create_bucket(Bucket="secured")
        response = error.value.response
        assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
            "InvalidSignatureException",
            403,
        )
        status, _, body = _request(url, "HEAD", "/secured")
        assert (status, body) == (403, b"")
        status, _, _ = _request(url, "PUT", "/secured", b"", **{"x-test-auth": "ok"})
        assert status == 200
    assert seen == ["PUT", "HEAD", "PUT"]
    assert (s3_root / "buckets" / "secured").is_dir()
