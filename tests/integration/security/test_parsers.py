"""Hostile input to every parser of a real `moorage serve`, sent as raw HTTP: each gets the protocol's
own 4xx (or S3's answer), never a 500 (security probe 2, #56, #31 and #28).

- JSON services on the SageMaker port (SageMaker, Application Auto Scaling, CloudWatch Logs): depth
  bombs are a 400 SerializationException in the AWS JSON 1.1 shape;
- the S3 port: a Range of 5000 digits is 416 (or the whole object, for a last byte past the end);
- a key holding NUL, another C0 control or a carriage return leaves every XML document well formed.
"""

from __future__ import annotations

import http.client
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlsplit

import pytest

from support.servers import RunningServer, post, start_server

pytestmark = pytest.mark.slow

BUCKET = "parsers"
HUGE = "9" * 5000
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("parsers") / "data")
    try:
        running.client("s3").create_bucket(Bucket=BUCKET)
        yield running
    finally:
        running.stop()


def s3_request(
    server: RunningServer, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw request to the S3 port; `target` is sent exactly as given (already percent-encoded)."""
    assert server.s3_url is not None
    parts = urlsplit(server.s3_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


# JSON depth bombs -----------------------------------------------------------------------------------

BOMBS = {
    "arrays-100k": b"[" * 100_000 + b"]" * 100_000,
    "objects-40k": b'{"a":' * 40_000 + b"1" + b"}" * 40_000,  # under the Logs body cap (256 KiB)
    "arrays-in-an-object": b'{"MaxResults":' + b"[" * 900 + b"]" * 900 + b"}",
}
TARGETS = [
    "SageMaker.ListModels",
    "SageMaker.CreateModel",
    "AnyScaleFrontendService.DescribeScalableTargets",
    "Logs_20140328.DescribeLogGroups",
]


@pytest.mark.parametrize("bomb", list(BOMBS))
@pytest.mark.parametrize("target", TARGETS)
def test_a_json_depth_bomb_is_a_serialization_exception(
    server: RunningServer, target: str, bomb: str
) -> None:
    status, headers, body, _ = post(
        server.url + "/",
        BOMBS[bomb],
        {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
        timeout=30,
    )
    assert (status, headers["Content-Type"]) == (400, "application/x-amz-json-1.1")
    assert headers["x-amzn-RequestId"]
    assert json.loads(body) == {
        "__type": "SerializationException",
        "Message": "The request body nests JSON arrays and objects more than 64 levels deep.",
    }


def test_absurd_numbers_are_refused_and_the_server_keeps_answering(server: RunningServer) -> None:
    sm = server.client("sagemaker")
    for raw in (HUGE, "NaN"):
        status, _, body, _ = post(
            server.url + "/",
            b'{"MaxResults": ' + raw.encode() + b"}",
            {"X-Amz-Target": "SageMaker.ListModels", "Content-Type": "application/x-amz-json-1.1"},
        )
        assert (status, json.loads(body)["__type"]) == (400, "SerializationException")
    assert sm.list_models()["Models"] == []


def test_iam_query_requests_with_hostile_forms_are_client_errors(server: RunningServer) -> None:
    """The query protocol has no nesting to bomb; NUL and bracket floods are still a 400 in IAM's XML."""
    form = b"Action=GetRole&Version=2010-05-08&RoleName=" + b"%00" * 64 + b"%5B" * 10_000
    status, _, body, _ = post(server.url + "/", form, {"Content-Type": "application/x-www-form-urlencoded"})
    root = ET.fromstring(body)
    ns = "{https://iam.amazonaws.com/doc/2010-05-08/}"
    assert (status, root.findtext(f"{ns}Error/{ns}Code")) == (400, "ValidationError")


# Range -------------------------------------------------------------------------------------------


def test_a_range_thousands_of_digits_long_is_416_or_the_whole_object(server: RunningServer) -> None:
    server.client("s3").put_object(Bucket=BUCKET, Key="range.txt", Body=b"0123456789")
    status, headers, body = s3_request(
        server, "GET", f"/{BUCKET}/range.txt", headers={"Range": f"bytes={HUGE}-"}
    )
    assert (status, headers["Content-Range"]) == (416, "bytes */10")
    assert ET.fromstring(body).findtext("Code") == "InvalidRange"
    status, headers, body = s3_request(
        server, "GET", f"/{BUCKET}/range.txt", headers={"Range": f"bytes=2-{HUGE}"}
    )
    assert (status, headers["Content-Range"], body) == (206, "bytes 2-9/10", b"23456789")
    status, _, body = s3_request(server, "GET", f"/{BUCKET}/range.txt", headers={"Range": f"bytes=-{HUGE}"})
    assert (status, body) == (206, b"0123456789")


# Keys XML cannot carry -----------------------------------------------------------------------------

NUL_KEY, CONTROL_KEY, CR_KEY = "nul/a\x00b", "nul/c\x01d", "nul/e\rf"


@pytest.fixture(scope="module")
def hostile_keys(server: RunningServer) -> None:
    s3 = server.client("s3")
    for key in (NUL_KEY, CONTROL_KEY, CR_KEY):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())


@pytest.fixture(scope="module")
def nul_upload(server: RunningServer) -> str:
    """An open upload, with one part, whose key holds NUL; its id."""
    s3 = server.client("s3")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="up/x\x00y")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="up/x\x00y", UploadId=upload, PartNumber=1, Body=b"part")
    return str(upload)


def document(
    server: RunningServer,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    expected: int = 200,
    headers: dict[str, str] | None = None,
) -> ET.Element:
    status, _, answer = s3_request(server, method, target, body, headers)
    assert status == expected, answer[:300]
    return ET.fromstring(answer)  # raises ParseError on a document that is not well formed


def texts(root: ET.Element, tag: str) -> list[str | None]:
    return [element.text for element in root.iter(f"{NS}{tag}")]


@pytest.mark.parametrize("target", [f"/{BUCKET}?prefix=nul/", f"/{BUCKET}?list-type=2&prefix=nul/"])
def test_an_unencoded_listing_stays_well_formed(
    server: RunningServer, hostile_keys: None, target: str
) -> None:
    # XML 1.0 cannot carry NUL or U+0001: they read as U+FFFD; a carriage return comes back exactly.
    assert texts(document(server, "GET", target), "Key") == ["nul/a\ufffdb", "nul/c\ufffdd", CR_KEY]


def test_common_prefixes_and_echoed_parameters_stay_well_formed(
    server: RunningServer, hostile_keys: None
) -> None:
    root = document(server, "GET", f"/{BUCKET}?list-type=2&prefix=nul/&delimiter=%00&start-after=nul/%01")
    assert texts(root, "Prefix") == ["nul/", "nul/a\ufffd"]  # the request's own, then the common prefix
    assert (root.findtext(f"{NS}Delimiter"), root.findtext(f"{NS}StartAfter")) == ("\ufffd", "nul/\ufffd")


def test_encoding_type_url_returns_such_keys_exactly(
    server: RunningServer, hostile_keys: None, nul_upload: str
) -> None:
    s3 = server.client("s3")  # boto3 always asks for encoding-type=url and decodes
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="nul/")["Contents"]
    assert [item["Key"] for item in listed] == [NUL_KEY, CONTROL_KEY, CR_KEY]
    assert s3.get_object(Bucket=BUCKET, Key=NUL_KEY)["Body"].read() == NUL_KEY.encode()
    # botocore asks for (and decodes) encoding-type=url on its own only for the object listings.
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="up/", EncodingType="url")["Uploads"]
    assert [(unquote(upload["Key"]), upload["UploadId"]) for upload in uploads] == [("up/x\x00y", nul_upload)]


def test_upload_documents_and_errors_that_echo_such_a_key_are_well_formed(
    server: RunningServer, nul_upload: str
) -> None:
    assert texts(document(server, "GET", f"/{BUCKET}?uploads&prefix=up/"), "Key") == ["up/x\ufffdy"]
    root = document(server, "GET", f"/{BUCKET}/up/x%00y?uploadId={nul_upload}")
    assert (root.findtext(f"{NS}Key"), texts(root, "PartNumber")) == ("up/x\ufffdy", ["1"])
    assert (
        document(server, "POST", f"/{BUCKET}/new/k%00%02?uploads").findtext(f"{NS}Key") == "new/k\ufffd\ufffd"
    )
    root = document(server, "GET", f"/{BUCKET}/missing%00key", expected=404)
    assert (root.findtext("Code"), root.findtext("Key")) == ("NoSuchKey", "missing\ufffdkey")


def test_copy_and_delete_of_such_keys_answer_well_formed_documents(
    server: RunningServer, hostile_keys: None
) -> None:
    source = quote(f"/{BUCKET}/{CONTROL_KEY}")
    root = document(
        server, "PUT", f"/{BUCKET}/copy/{quote(CONTROL_KEY)}", headers={"x-amz-copy-source": source}
    )
    assert root.tag == f"{NS}CopyObjectResult"
    server.client("s3").put_object(Bucket=BUCKET, Key="del/e\rf", Body=b"x")
    request = b"<Delete><Object><Key>del/e&#13;f</Key></Object></Delete>"  # S3's own advice for a CR
    assert texts(document(server, "POST", f"/{BUCKET}?delete", request), "Key") == ["del/e\rf"]


def test_the_listing_document_of_a_clean_bucket_is_unchanged(server: RunningServer) -> None:
    """Ordinary keys, with XML's own special characters, come back byte for byte."""
    server.client("s3").put_object(Bucket=BUCKET, Key="plain/a&b<c>\"d'\te", Body=b"x")
    root = document(server, "GET", f"/{BUCKET}?list-type=2&prefix=plain/")
    assert texts(root, "Key") == ["plain/a&b<c>\"d'\te"]
