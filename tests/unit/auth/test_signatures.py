"""Recomputing signatures: whatever botocore signs verifies, AWS's published examples verify, and any
change to a signed part of the request does not."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from botocore.auth import HmacV1QueryAuth, S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.api import sigv2
from moorage.api.sigv4 import (
    UNSIGNED_PAYLOAD,
    Problem,
    SignatureError,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    check_clock,
    check_scope,
    parse_authorization,
    parse_presigned,
    request_timestamp,
    sign,
    signatures_match,
    signing_key,
    string_to_sign,
)

KEY_ID, SECRET = "AKIAMOORAGETESTKEY01", "tHiS/iS+a/SeCrEt/oF/forty/characters/xx"
CREDENTIALS = Credentials(KEY_ID, SECRET)
REGION = "us-east-1"
HOST = "127.0.0.1:8080"


def botocore_signed(
    method: str, url: str, headers: dict[str, str], body: bytes, *, service: str, s3: bool = False
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    (S3SigV4Auth if s3 else SigV4Auth)(CREDENTIALS, service, REGION).add_auth(request)
    return request


def received_headers(request: AWSRequest) -> list[tuple[str, str]]:
    """The headers as the server sees them: what botocore set, plus the Host line the HTTP client adds."""
    return [(name, str(value)) for name, value in request.headers.items()] + [("Host", HOST)]


def verifies(request: AWSRequest, secret: str = SECRET, *, s3: bool = False) -> bool:
    """The server's recomputation, from the pieces an HTTP server receives."""
    parts = urlsplit(request.url)
    body = request.body or b""
    claim = parse_authorization(request.headers["Authorization"])
    timestamp = request_timestamp(request.headers.get("X-Amz-Date"), None)
    payload = request.headers["X-Amz-Content-SHA256"] if s3 else hashlib.sha256(body).hexdigest()
    canonical = canonical_request(
        request.method,
        canonical_uri(parts.path, s3=s3),
        canonical_query(parts.query),
        canonical_headers(received_headers(request), claim.signed_headers),
        claim.signed_headers,
        payload,
    )
    key = signing_key(secret, claim.date, claim.region, claim.service)
    return signatures_match(sign(key, string_to_sign(timestamp, claim.scope, canonical)), claim.signature)


def test_an_invoke_endpoint_request_as_boto3_signs_it_verifies() -> None:
    request = botocore_signed(
        "POST",
        f"http://{HOST}/endpoints/my-endpoint/invocations",
        {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Amzn-SageMaker-Custom-Attributes": "a=1,  b=2",
        },
        b'{"inputs": [1, 2, 3]}',
        service="sagemaker",
    )
    claim = parse_authorization(request.headers["Authorization"])
    assert "x-amzn-sagemaker-custom-attributes" in claim.signed_headers
    assert verifies(request)
    assert not verifies(request, "a wrong secret")


def test_a_control_plane_request_with_a_session_token_header_verifies() -> None:
    request = AWSRequest(
        method="POST",
        url=f"http://{HOST}/",
        data=b'{"EndpointName": "x"}',
        headers={"X-Amz-Target": "SageMaker.DescribeEndpoint", "Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(Credentials(KEY_ID, SECRET, "session-token"), "sagemaker", REGION).add_auth(request)
    assert parse_authorization(request.headers["Authorization"]).signed_headers == (
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-target",
    )
    assert verifies(request)


TAMPERING: dict[str, Callable[[AWSRequest], None]] = {
    "body": lambda r: setattr(r, "data", b'{"inputs": [1, 2, 4]}'),
    "signed header": lambda r: r.headers.replace_header("Content-Type", "text/csv"),
    "path": lambda r: setattr(r, "url", r.url.replace("my-endpoint", "other-endpoint")),
    "query": lambda r: setattr(r, "url", r.url + "?x=1"),
    "method": lambda r: setattr(r, "method", "PUT"),
    "date": lambda r: r.headers.replace_header("X-Amz-Date", "20000101T000000Z"),
}


@pytest.mark.parametrize("change", TAMPERING.values(), ids=TAMPERING.keys())
def test_any_change_to_a_signed_part_breaks_the_signature(change: Callable[[AWSRequest], None]) -> None:
    request = botocore_signed(
        "POST",
        f"http://{HOST}/endpoints/my-endpoint/invocations",
        {"Content-Type": "application/json"},
        b'{"inputs": [1, 2, 3]}',
        service="sagemaker",
    )
    assert verifies(request)
    change(request)
    assert not _safe_verifies(request)


def _safe_verifies(request: AWSRequest) -> bool:
    try:
        return verifies(request)
    except SignatureError as exc:
        assert exc.problem is Problem.MISMATCH
        return False


_segment = st.text(min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
_query = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=4)
_value = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


@settings(max_examples=150, deadline=None)
@given(
    segments=st.lists(_segment, min_size=1, max_size=4),
    query=_query,
    header=_value,
    body=st.binary(max_size=200),
    s3=st.booleans(),
)
def test_whatever_botocore_signs_verifies(
    segments: list[str], query: dict[str, str], header: str, body: bytes, s3: bool
) -> None:
    path = "/" + "/".join(percent_encode(segment) for segment in segments)
    url = f"http://{HOST}{path}" + (f"?{percent_encode_sequence(query)}" if query else "")
    headers = {"Content-Type": "application/octet-stream", "X-Amz-Meta-Note": header}
    request = botocore_signed("PUT", url, headers, body, service="s3" if s3 else "sagemaker", s3=s3)
    assert verifies(request, s3=s3)


def test_a_non_s3_path_is_normalised_then_encoded_again() -> None:
    assert canonical_uri("/a/./b/../c//d%20e", s3=False) == "/a/c/d%2520e"
    assert canonical_uri("/a/./b/../c//d%20e", s3=True) == "/a/./b/../c//d%20e"
    assert canonical_uri("", s3=False) == "/"


def test_the_query_is_decoded_reencoded_and_sorted() -> None:
    assert canonical_query("b=2&a=x%2Fy&uploads&c=a b") == "a=x%2Fy&b=2&c=a%20b&uploads="
    assert canonical_query("X-Amz-Signature=abc&a=1", exclude=frozenset({"X-Amz-Signature"})) == "a=1"


def test_the_documented_s3_get_object_example_verifies() -> None:
    """AWS's "GET Object" example for header signing (sig-v4-header-based-auth.html)."""
    headers = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", hashlib.sha256(b"").hexdigest()),
        ("x-amz-date", "20130524T000000Z"),
    ]
    signed = ("host", "range", "x-amz-content-sha256", "x-amz-date")
    canonical = canonical_request(
        "GET", "/test.txt", "", canonical_headers(headers, signed), signed, headers[2][1]
    )
    key = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3")
    scope = "20130524/us-east-1/s3/aws4_request"
    assert sign(key, string_to_sign("20130524T000000Z", scope, canonical)) == (
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_an_s3v4_presigned_url_verifies() -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}",
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": "bucket", "Key": "dir/a b+c.txt", "ResponseContentType": "text/plain"},
        ExpiresIn=600,
    )
    parts = urlsplit(url)
    found = parse_presigned(parse_qsl(parts.query))
    assert found.expires_s == 600 and found.claim.signed_headers == ("host",)
    canonical = canonical_request(
        "GET",
        canonical_uri(parts.path, s3=True),
        canonical_query(parts.query, exclude=frozenset({"X-Amz-Signature"})),
        canonical_headers([("Host", HOST)], found.claim.signed_headers),
        found.claim.signed_headers,
        UNSIGNED_PAYLOAD,
    )
    key = signing_key(SECRET, found.claim.date, REGION, "s3")
    expected = sign(key, string_to_sign(found.timestamp, found.claim.scope, canonical))
    assert signatures_match(expected, found.claim.signature)


def test_a_sigv2_presigned_url_as_the_aws_cli_makes_it_verifies() -> None:
    request = AWSRequest(method="GET", url=f"http://{HOST}/bucket/dir/a%20b%2Bc.txt?versionId=3&x=1")
    HmacV1QueryAuth(CREDENTIALS, expires=600).add_auth(request)
    parts = urlsplit(request.url)
    params = dict(parse_qsl(parts.query))
    string = sigv2.string_to_sign("GET", [("Host", HOST)], params["Expires"], parts.path, parts.query)
    assert sigv2.sign(SECRET, string) == params["Signature"]
    assert string.endswith("\n/bucket/dir/a%20b%2Bc.txt?versionId=3")
    assert sigv2.sign("wrong", string) != params["Signature"]


def test_an_old_signature_is_expired_in_aws_words() -> None:
    now = 1_700_000_000.0  # 20231114T221320Z
    check_clock("20231114T221000Z", now, 300)
    with pytest.raises(SignatureError) as caught:
        check_clock("20231114T220700Z", now, 300)
    assert caught.value.problem is Problem.SKEWED
    assert caught.value.message == (
        "Signature expired: 20231114T220700Z is now earlier than 20231114T220820Z (20231114T221320Z - 5 min.)"
    )
    with pytest.raises(SignatureError) as caught:
        check_clock("20231114T222000Z", now, 300)
    assert caught.value.message == (
        "Signature not yet current: 20231114T222000Z is still later than 20231114T221820Z "
        "(20231114T221320Z + 5 min.)"
    )


def test_the_scope_must_match_the_date_region_and_service() -> None:
    claim = parse_authorization(
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20231114/us-east-1/sagemaker/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}"
    )
    check_scope(claim, "20231114T221320Z", region="us-east-1", services={"sagemaker"})
    cases = [
        ("20231115T000000Z", "us-east-1", {"sagemaker"}, "Date in Credential scope does not match"),
        ("20231114T221320Z", "eu-west-1", {"sagemaker"}, "scoped to a valid region, not 'us-east-1'"),
        ("20231114T221320Z", "us-east-1", {"s3"}, "scoped to correct service: 's3', not 'sagemaker'"),
    ]
    for timestamp, region, services, message in cases:
        with pytest.raises(SignatureError) as caught:
            check_scope(claim, timestamp, region=region, services=services)
        assert caught.value.problem is Problem.SCOPE
        assert message in caught.value.message


def test_the_signing_time_comes_from_x_amz_date_or_the_date_header() -> None:
    assert request_timestamp("20231114T221320Z", "ignored") == "20231114T221320Z"
    assert request_timestamp(None, "Tue, 14 Nov 2023 22:13:20 GMT") == "20231114T221320Z"
    for x_amz_date, date in [(None, None), ("2023-11-14T22:13:20Z", None), (None, "yesterday")]:
        with pytest.raises(SignatureError) as caught:
            request_timestamp(x_amz_date, date)
        assert caught.value.problem is Problem.MALFORMED


def test_a_signed_header_the_request_lacks_is_a_mismatch() -> None:
    with pytest.raises(SignatureError) as caught:
        canonical_headers([("Host", HOST)], ("content-type", "host"))
    assert caught.value.problem is Problem.MISMATCH


def test_header_values_are_trimmed_and_repeats_joined_like_botocore() -> None:
    block = canonical_headers(
        [("Host", HOST), ("X-Amz-Meta-A", "  one   two "), ("x-amz-meta-a", "three")],
        ("host", "x-amz-meta-a"),
    )
    assert block == f"host:{HOST}\nx-amz-meta-a:one two,three\n"


def test_signatures_are_compared_in_full() -> None:
    assert signatures_match("a" * 64, "a" * 64)
    assert not signatures_match("a" * 64, "a" * 63 + "b")
