"""SigV2's signed resource: every subresource the S3 router acts on is signed, however its name is
spelled in the query (security probe 2, #21), and URLs that botocore presigns verify as issued."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from botocore.config import Config

from moorage.api import sigv2

KEY_ID, SECRET = "AKIAMOORAGETESTKEY01", "tHiS/iS+a/SeCrEt/oF/forty/characters/xx"
EXPIRES = "1796469180"


def resource_of(path: str, query: str) -> str:
    return sigv2.string_to_sign("GET", [], EXPIRES, path, query).rpartition("\n")[2]


@pytest.mark.parametrize(
    ("query", "signed"),
    [
        ("%75ploadId=abc", "/bkt/k?uploadId=abc"),
        ("upload%49d=abc", "/bkt/k?uploadId=abc"),
        ("%70artNumber=2&%75ploadId=abc", "/bkt/k?partNumber=2&uploadId=abc"),
        ("%75ploads", "/bkt/k?uploads"),
        ("%76ersionId=3", "/bkt/k?versionId=3"),
        ("%64elete=", "/bkt/k?delete="),
        ("uploadId=abc&%75ploadId=def", "/bkt/k?uploadId=abc&uploadId=def"),
    ],
)
def test_a_percent_encoded_subresource_name_is_part_of_the_signed_resource(query: str, signed: str) -> None:
    """The router reads `%75ploadId` as `uploadId`; so must the signature, or it rides along unsigned."""
    assert resource_of("/bkt/k", f"AWSAccessKeyId={KEY_ID}&Expires={EXPIRES}&Signature=x&{query}") == signed


def test_a_name_that_only_looks_like_a_subresource_stays_out() -> None:
    assert resource_of("/bkt/k", "uploadid=abc&x-id=GetObject&prefix=%75ploadId") == "/bkt/k"


def _presigner() -> Any:
    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9000",
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
    )


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("list_objects", {"Bucket": "models"}),
        ("list_objects_v2", {"Bucket": "models", "Prefix": "a b/", "Delimiter": "/"}),
        ("list_multipart_uploads", {"Bucket": "models"}),
        ("get_object", {"Bucket": "models", "Key": "dir/a b+c.txt"}),
        ("list_parts", {"Bucket": "models", "Key": "k", "UploadId": "u+1/2="}),
        ("upload_part", {"Bucket": "models", "Key": "k", "UploadId": "u1", "PartNumber": 2}),
        ("delete_object", {"Bucket": "models", "Key": "k", "VersionId": "v1"}),
    ],
)
def test_urls_botocore_presigns_verify_as_issued(operation: str, params: dict[str, Any]) -> None:
    """Bucket-level URLs included: botocore signs the path-style `/models` as `/models/`."""
    url = _presigner().generate_presigned_url(operation, Params=params, ExpiresIn=600)
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    method = {"upload_part": "PUT", "delete_object": "DELETE"}.get(operation, "GET")
    string = sigv2.string_to_sign(method, [("Host", parts.netloc)], query["Expires"], parts.path, parts.query)
    assert sigv2.sign(SECRET, string) == query["Signature"]
