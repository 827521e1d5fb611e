"""The embedded S3 store behind SigV4: unchanged boto3 with good keys works; everything else gets S3's
own error codes. The store runs in-process (moorage's HTTP server in a thread) with a clock the test
can move, so expiry and skew need no faked timestamps."""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from moorage.api.auth import S3Auth
from moorage.credentials import AccessKey, Keyring, create_key, credentials_path
from moorage.s3 import build_s3_app
from support.background import serve_in_thread

REGION = "us-east-1"
MIB = 1024 * 1024


@dataclass
class SecuredStore:
    url: str
    admin: AccessKey
    invoker: AccessKey
    skew: list[float] = field(default_factory=lambda: [0.0])  # seconds the server's clock is ahead

    def client(
        self, key: AccessKey | tuple[str, str] | None = None, *, region: str = REGION, **config: Any
    ) -> Any:
        key_id, secret = (
            (key.access_key_id, key.secret_access_key) if isinstance(key, AccessKey) else key or ("", "")
        )
        if key is None:
            config.setdefault("signature_version", UNSIGNED)
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key_id or "unused",
            aws_secret_access_key=secret or "unused",
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **config),
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SecuredStore]:
    data = tmp_path / "data"
    admin, invoker = create_key(data), create_key(data, "invoke")
    skew = [0.0]
    auth = S3Auth(Keyring(credentials_path(data)), region=REGION, clock=lambda: time.time() + skew[0])
    with serve_in_thread(build_s3_app(tmp_path / "s3", region=REGION, authenticate=auth)) as url:
        secured = SecuredStore(url, admin, invoker, skew)
        secured.client(admin).create_bucket(Bucket="models")
        yield secured


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def test_signed_clients_put_get_list_and_upload_in_parts(store: SecuredStore, tmp_path: Path) -> None:
    s3 = store.client(store.admin)
    s3.put_object(Bucket="models", Key="dir/a b+c.txt", Body=b"hello")
    assert s3.get_object(Bucket="models", Key="dir/a b+c.txt")["Body"].read() == b"hello"
    listed = s3.list_objects_v2(Bucket="models", Prefix="dir/", Delimiter="/")
    assert [item["Key"] for item in listed["Contents"]] == ["dir/a b+c.txt"]

    big = tmp_path / "model.tar.gz"
    big.write_bytes(os.urandom(11 * MIB))
    parts = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2)
    s3.upload_file(str(big), "models", "big/model.tar.gz", Config=parts)
    head = s3.head_object(Bucket="models", Key="big/model.tar.gz")
    assert head["ContentLength"] == 11 * MIB and head["ETag"].endswith('-3"')  # three parts
    copy = tmp_path / "copy"
    s3.download_file("models", "big/model.tar.gz", str(copy))
    assert copy.read_bytes() == big.read_bytes()


def test_requests_without_a_valid_signature_get_s3_error_codes(store: SecuredStore) -> None:
    cases: list[tuple[Any, int, str]] = [
        (store.client(None), 403, "AccessDenied"),
        (store.client(("AKIANOSUCHKEY0000000", "x" * 40)), 403, "InvalidAccessKeyId"),
        (store.client((store.admin.access_key_id, "not-the-secret")), 403, "SignatureDoesNotMatch"),
        (store.client(store.admin, region="eu-west-1"), 400, "AuthorizationHeaderMalformed"),
    ]
    for client, status, code in cases:
        assert error_of(functools.partial(client.list_objects_v2, Bucket="models"))[:2] == (status, code)
    store.skew[0] = 16 * 60.0  # S3 allows 15 minutes
    s3 = store.client(store.admin)
    assert error_of(lambda: s3.get_object(Bucket="models", Key="x"))[:2] == (403, "RequestTimeTooSkewed")
    store.skew[0] = 14 * 60.0
    assert error_of(lambda: s3.get_object(Bucket="models", Key="x"))[:2] == (404, "NoSuchKey")


def test_an_invoke_only_key_may_not_use_the_store(store: SecuredStore) -> None:
    status, code, message = error_of(lambda: store.client(store.invoker).list_buckets())
    assert (status, code) == (403, "AccessDenied")
    assert "invoke" in message and store.invoker.access_key_id in message


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])  # "s3" is what `aws s3 presign` makes
def test_presigned_urls_work_until_they_expire(store: SecuredStore, signature_version: str) -> None:
    store.client(store.admin).put_object(Bucket="models", Key="shared/model.tar.gz", Body=b"weights")
    signer = store.client(store.admin, signature_version=signature_version)
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": "models", "Key": "shared/model.tar.gz"}, ExpiresIn=3600
    )
    assert _get(url) == (200, b"weights")
    status, body = _get(url.replace("model.tar.gz", "other.tar.gz"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    store.skew[0] = 3601.0
    status, body = _get(url)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body


def _after_signing(s3: Any, change: Callable[[Any], None]) -> None:
    s3.meta.events.register("before-send.s3.*", lambda request, **_: change(request))


def test_an_x_amz_header_added_after_signing_is_refused(store: SecuredStore) -> None:
    s3 = store.client(store.admin)
    _after_signing(s3, lambda request: request.headers.__setitem__("x-amz-meta-added", "later"))
    status, code, message = error_of(lambda: s3.put_object(Bucket="models", Key="k", Body=b"x"))
    assert (status, code) == (403, "AccessDenied") and "x-amz-meta-added" in message


def test_a_body_changed_after_signing_is_refused_and_not_stored(store: SecuredStore) -> None:
    s3 = store.client(store.admin)

    def swap(request: Any) -> None:
        request.body = b"evil!"  # same length: only the signed x-amz-content-sha256 can tell

    _after_signing(s3, swap)
    status, code, _ = error_of(lambda: s3.put_object(Bucket="models", Key="swapped", Body=b"hello"))
    assert (status, code) == (400, "XAmzContentSHA256Mismatch")
    assert error_of(lambda: store.client(store.admin).head_object(Bucket="models", Key="swapped"))[0] == 404


def _streamed_put(
    store: SecuredStore, key: str, data: bytes, *, tamper_at: int | None = None
) -> tuple[int, bytes]:
    """A PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD (as the Java and Go SDKs send): botocore signs the
    headers (the seed); each 64 KiB chunk is signed here, chained from it."""
    chunk_size = 64 * 1024
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    encoded_length = sum(len(f"{len(c):x};chunk-signature=".encode()) + 64 + 2 + len(c) + 2 for c in chunks)
    url = f"{store.url}/models/{key}"
    request = AWSRequest(
        method="PUT",
        url=url,
        headers={
            "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(len(data)),
            "Content-Length": str(encoded_length),
        },
    )
    SigV4Auth(Credentials(store.admin.access_key_id, store.admin.secret_access_key), "s3", REGION).add_auth(
        request
    )
    timestamp = request.headers["X-Amz-Date"]
    scope = f"{timestamp[:8]}/{REGION}/s3/aws4_request"
    key_bytes = f"AWS4{store.admin.secret_access_key}".encode()
    for part in (timestamp[:8], REGION, "s3", "aws4_request"):
        key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    body = bytearray()
    for chunk in chunks:
        string = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous, hashlib.sha256(b"").hexdigest(),
             hashlib.sha256(chunk).hexdigest()]
        )  # fmt: skip
        previous = hmac.new(key_bytes, string.encode(), hashlib.sha256).hexdigest()
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    assert len(body) == encoded_length
    if tamper_at is not None:
        body[tamper_at] ^= 1
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        connection.request("PUT", parts.path, body=bytes(body), headers=dict(request.headers.items()))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_streamed_uploads_have_every_chunk_signature_checked(store: SecuredStore) -> None:
    data = os.urandom(200_000)  # three full chunks and a short one
    assert _streamed_put(store, "streamed", data)[0] == 200
    s3 = store.client(store.admin)
    assert s3.get_object(Bucket="models", Key="streamed")["Body"].read() == data
    # One flipped data byte in the third chunk: refused, and nothing stored under the key.
    status, body = _streamed_put(store, "tampered", data, tamper_at=2 * 64 * 1024 + 500)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    assert error_of(lambda: s3.head_object(Bucket="models", Key="tampered"))[0] == 404
