"""Presigned SigV2 URLs (what `aws s3 presign` makes) against a real `moorage serve --auth sigv4`:
a subresource name spelled with percent escapes (`%75ploadId`) is signed like the plain one, so it
can no longer turn a GetObject URL into ListParts, a PutObject URL into UploadPart or a DeleteObject
URL into AbortMultipartUpload (security probe 2, #21). URLs as botocore issues them, bucket-level
listings included, work.
"""

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from moorage.credentials import create_key
from support.servers import REGION, RunningServer, start_server

pytestmark = pytest.mark.slow

BUCKET = "sec-bucket"
KEY = "public/a.txt"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass
class Presigning:
    server: RunningServer
    s3: Any  # SigV4, the admin key: sets the scene and checks what happened
    v2: Any  # signature_version "s3": presigns as `aws s3 presign` does for a custom endpoint
    upload_id: str  # someone's open upload of KEY, with part 1 in it


@pytest.fixture(scope="module")
def presigning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Presigning]:
    data = tmp_path_factory.mktemp("sigv2") / "data"
    admin = create_key(data)
    server = start_server(data, args=["--auth", "sigv4"])
    try:
        credentials = (admin.access_key_id, admin.secret_access_key)
        s3 = server.client("s3", credentials=credentials)
        v2 = boto3.client(
            "s3",
            endpoint_url=server.s3_url,
            region_name=REGION,
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
            config=Config(
                signature_version="s3", s3={"addressing_style": "path"}, retries={"max_attempts": 1}
            ),
        )
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"public data")
        upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
        s3.upload_part(Bucket=BUCKET, Key=KEY, UploadId=upload_id, PartNumber=1, Body=b"someone's part")
        yield Presigning(server, s3, v2, upload_id)
    finally:
        server.stop()


def fetch(method: str, url: str, body: bytes = b"") -> tuple[int, bytes]:
    """A bare request, as curl sends a pasted URL: no Content-Type, which SigV2 signs (as empty)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(method, f"{parts.path}?{parts.query}", body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def refused(status: int, body: bytes) -> str | None:
    """The S3 error code of a 403, or None when the request was not refused."""
    return ET.fromstring(body).findtext("Code") if status == 403 else None


def presign(p: Presigning, operation: str) -> str:
    return str(p.v2.generate_presigned_url(operation, Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=600))


def parts_of(p: Presigning) -> list[int]:
    listed = p.s3.list_parts(Bucket=BUCKET, Key=KEY, UploadId=p.upload_id)
    return [part["PartNumber"] for part in listed.get("Parts", [])]


@pytest.mark.parametrize("name", ["%75ploadId", "upload%49d", "%75%70%6C%6F%61%64%49%64"])
def test_a_get_object_url_cannot_list_parts(presigning: Presigning, name: str) -> None:
    url = presign(presigning, "get_object")
    assert refused(*fetch("GET", f"{url}&{name}={presigning.upload_id}")) == "SignatureDoesNotMatch"
    assert fetch("GET", url) == (200, b"public data")


def test_a_put_object_url_cannot_upload_a_part_into_someone_elses_upload(presigning: Presigning) -> None:
    url = presign(presigning, "put_object")
    forged = f"{url}&%70artNumber=2&%75ploadId={presigning.upload_id}"
    assert refused(*fetch("PUT", forged, b"injected")) == "SignatureDoesNotMatch"
    assert parts_of(presigning) == [1]


def test_a_delete_object_url_cannot_abort_someone_elses_upload(presigning: Presigning) -> None:
    url = presign(presigning, "delete_object")
    assert refused(*fetch("DELETE", f"{url}&%75ploadId={presigning.upload_id}")) == "SignatureDoesNotMatch"
    assert parts_of(presigning) == [1]  # the upload is still there


def test_presigned_v2_urls_work_as_botocore_issues_them(presigning: Presigning) -> None:
    """Object and bucket-level URLs alike: botocore signs a path-style bucket as `/bucket/`."""
    v2 = presigning.v2
    listing = v2.generate_presigned_url("list_objects_v2", Params={"Bucket": BUCKET, "Prefix": "public/"})
    status, body = fetch("GET", listing)
    assert status == 200, body
    assert [element.text for element in ET.fromstring(body).iter(f"{NS}Key")] == [KEY]
    parts = v2.generate_presigned_url(
        "list_parts", Params={"Bucket": BUCKET, "Key": KEY, "UploadId": presigning.upload_id}
    )
    status, body = fetch("GET", parts)
    assert status == 200, body
    assert [element.text for element in ET.fromstring(body).iter(f"{NS}PartNumber")] == ["1"]
