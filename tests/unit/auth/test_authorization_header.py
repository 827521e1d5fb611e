"""The SigV4 Authorization header parser: what botocore sends parses; anything else is refused cleanly."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.api.sigv4 import Claim, Problem, SignatureError, parse_authorization

SIGNATURE = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
GOOD = (
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
    f"SignedHeaders=host;range;x-amz-date, Signature={SIGNATURE}"
)


def test_the_documented_header_parses() -> None:
    claim = parse_authorization(GOOD)
    assert claim == Claim(
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        date="20130524",
        region="us-east-1",
        service="s3",
        signed_headers=("host", "range", "x-amz-date"),
        signature=SIGNATURE,
    )
    assert claim.scope == "20130524/us-east-1/s3/aws4_request"


def test_spacing_and_case_variants_that_clients_send_parse() -> None:
    compact = GOOD.replace(", ", ",")
    assert parse_authorization(compact) == parse_authorization(GOOD)
    upper = GOOD.replace(SIGNATURE, SIGNATURE.upper())
    assert parse_authorization(upper).signature == SIGNATURE
    unsorted = GOOD.replace("host;range;x-amz-date", "x-amz-date;host;range")
    assert parse_authorization(unsorted).signed_headers == ("host", "range", "x-amz-date")


MALFORMED = {
    "empty": "",
    "blank": "   ",
    "scheme only": "AWS4-HMAC-SHA256",
    "scheme and space": "AWS4-HMAC-SHA256 ",
    "basic auth": "Basic dXNlcjpwYXNz",
    "bearer": "Bearer abc.def.ghi",
    "sigv2": "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
    "sigv4a": GOOD.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
    "lower-case scheme": GOOD.replace("AWS4-HMAC-SHA256", "aws4-hmac-sha256"),
    "missing credential": f"AWS4-HMAC-SHA256 SignedHeaders=host, Signature={SIGNATURE}",
    "missing signed headers": GOOD.replace("SignedHeaders=host;range;x-amz-date, ", ""),
    "missing signature": GOOD.replace(f", Signature={SIGNATURE}", ""),
    "no equals sign": GOOD.replace("Signature=", "Signature "),
    "duplicate parameter": GOOD + f", Signature={SIGNATURE}",
    "unknown parameter": GOOD + ", Extra=1",
    "empty parameter": GOOD + ", ",
    "four-part credential": GOOD.replace("/us-east-1/", "/"),
    "six-part credential": GOOD.replace("/s3/", "/s3/x/"),
    "empty key id": GOOD.replace("AKIAIOSFODNN7EXAMPLE", ""),
    "key id with a space": GOOD.replace("AKIAIOSFODNN7EXAMPLE", "AKIA EXAMPLE"),
    "short date": GOOD.replace("20130524", "2013052"),
    "impossible date": GOOD.replace("20130524", "20131332"),
    "non-digit date": GOOD.replace("20130524", "2013O524"),
    "empty region": GOOD.replace("/us-east-1/", "//"),
    "empty service": GOOD.replace("/s3/", "//"),
    "host not signed": GOOD.replace("host;range;x-amz-date", "range;x-amz-date"),
    "upper-case signed header": GOOD.replace("host;range", "Host;range"),
    "empty signed header": GOOD.replace("host;range", "host;;range"),
    "repeated signed header": GOOD.replace("host;range", "host;host;range"),
    "signed header with a space": GOOD.replace("host;range", "host;ra nge"),
    "empty signed headers": GOOD.replace("host;range;x-amz-date", ""),
    "short signature": GOOD.replace(SIGNATURE, SIGNATURE[:-1]),
    "long signature": GOOD.replace(SIGNATURE, SIGNATURE + "0"),
    "non-hex signature": GOOD.replace(SIGNATURE, "g" * 64),
    "empty signature": GOOD.replace(SIGNATURE, ""),
    "nul byte": GOOD.replace("host", "ho\x00st"),
    "newline in value": GOOD.replace("us-east-1", "us-east\n-1"),
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_headers_are_refused_as_malformed(header: str) -> None:
    with pytest.raises(SignatureError) as caught:
        parse_authorization(header)
    assert caught.value.problem is Problem.MALFORMED
    assert caught.value.message


def test_a_wrong_terminator_is_a_scope_problem() -> None:
    with pytest.raises(SignatureError) as caught:
        parse_authorization(GOOD.replace("aws4_request", "aws5_request"))
    assert caught.value.problem is Problem.SCOPE
    assert "'aws4_request', not 'aws5_request'" in caught.value.message


def test_missing_parameters_are_all_named_as_aws_does() -> None:
    with pytest.raises(SignatureError) as caught:
        parse_authorization(f"AWS4-HMAC-SHA256 Signature={SIGNATURE}")
    assert caught.value.message.startswith(
        "Authorization header requires 'Credential' parameter. "
        "Authorization header requires 'SignedHeaders' parameter."
    )


def test_a_huge_header_is_not_echoed_back_whole() -> None:
    with pytest.raises(SignatureError) as caught:
        parse_authorization("AWS4-HMAC-SHA256 " + "x" * 100_000)
    assert len(caught.value.message) < 1000


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_with_a_signature_error(text: str) -> None:
    try:
        claim = parse_authorization(text)
    except SignatureError as exc:
        assert exc.problem in (Problem.MALFORMED, Problem.SCOPE)
        return
    assert "host" in claim.signed_headers and len(claim.signature) == 64


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_name = st.text(_LOWER, min_size=1, max_size=4).flatmap(
    lambda head: st.text(_LOWER + "0123456789-", max_size=12).map(lambda tail: head + tail)
)


@settings(max_examples=200, deadline=None)
@given(
    key_id=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=4, max_size=40),
    region=st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2", "local"]),
    service=st.sampled_from(["sagemaker", "s3", "logs", "iam"]),
    headers=st.sets(_name, max_size=8),
    signature=st.binary(min_size=32, max_size=32).map(bytes.hex),
    date=st.dates(min_value=datetime.date(2000, 1, 1)),
)
def test_well_formed_headers_round_trip(
    key_id: str, region: str, service: str, headers: set[str], signature: str, date: datetime.date
) -> None:
    day = date.strftime("%Y%m%d")
    names = sorted(headers | {"host"})
    header = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{day}/{region}/{service}/aws4_request, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    assert parse_authorization(header) == Claim(key_id, day, region, service, tuple(names), signature)
