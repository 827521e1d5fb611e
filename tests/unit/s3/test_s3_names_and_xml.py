"""Bucket names, keys, and S3's XML documents (rendering and request parsing)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import unquote_plus

import pytest

from moorage.s3.errors import InvalidBucketName, KeyTooLongError, MalformedXML
from moorage.s3.names import check_bucket_name, check_key, is_valid_bucket_name
from moorage.s3.xml import (
    error_document,
    iso_time,
    node,
    parse_complete_upload,
    parse_delete,
    parse_location_constraint,
    render,
    url_encode,
)


@pytest.mark.parametrize(
    "name", ["abc", "my-bucket", "my.bucket.1", "a" * 63, "0-9", "pytorch-sagemaker-example"]
)
def test_valid_bucket_names(name: str) -> None:
    assert is_valid_bucket_name(name)
    check_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ab",
        "a" * 64,
        "Upper",
        "under_score",
        "-abc",
        "abc-",
        ".abc",
        "a..b",
        "10.0.0.1",
        "xn--abc",
        "sthree-abc",
        "abc-s3alias",
        "abc--ol-s3",
        "..",
        "a/b",
        "a b",
    ],
)
def test_invalid_bucket_names(name: str) -> None:
    assert not is_valid_bucket_name(name)
    with pytest.raises(InvalidBucketName):
        check_bucket_name(name)


def test_key_length_is_counted_in_utf8_bytes() -> None:
    check_key("k" * 1024)
    check_key("ñ" * 512)
    with pytest.raises(KeyTooLongError):
        check_key("ñ" * 513)


def test_render_escapes_and_carries_the_namespace() -> None:
    document = render(node("Result", ("Key", "<a & b>"), ("Flag", True), ("Size", 3), ("Skip", None)))
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(document)
    assert root.tag == "{http://s3.amazonaws.com/doc/2006-03-01/}Result"
    assert [(child.tag.rpartition("}")[2], child.text) for child in root] == [
        ("Key", "<a & b>"),
        ("Flag", "true"),
        ("Size", "3"),
    ]


def test_error_document() -> None:
    root = ET.fromstring(error_document("NoSuchKey", "gone", "/b/k", "RID", [("Key", "k<")]))
    assert [(child.tag, child.text) for child in root] == [
        ("Code", "NoSuchKey"),
        ("Message", "gone"),
        ("Key", "k<"),
        ("Resource", "/b/k"),
        ("RequestId", "RID"),
    ]


def test_iso_time_has_milliseconds() -> None:
    assert iso_time(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"


@pytest.mark.parametrize("key", ["a b", "a+b", "100%", "ñ/日本", "a&b=c?d#e", "~tilde"])
def test_url_encoding_survives_botocores_unquote_plus(key: str) -> None:
    assert unquote_plus(url_encode(key)) == key


def test_parse_delete() -> None:
    body = (
        b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>'
        b"<Object><Key>a &amp; b</Key></Object>"
        b"<Object><Key>c</Key><VersionId>null</VersionId></Object></Delete>"
    )
    assert parse_delete(body) == (True, ["a & b", "c"])
    assert parse_delete(b"<Delete><Object><Key>x</Key></Object></Delete>") == (False, ["x"])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Delete>",
        b"<Other/>",
        b"<Delete></Delete>",
        b"<Delete><Object/></Delete>",
        b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>",
    ],
)
def test_parse_delete_refuses(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        parse_delete(body)


def test_parse_complete_upload() -> None:
    body = (
        b"<CompleteMultipartUpload><Part><ETag>&quot;aa&quot;</ETag><PartNumber>1</PartNumber>"
        b"<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>bb</ETag></Part>"
        b"</CompleteMultipartUpload>"
    )
    parts = parse_complete_upload(body)
    assert [(p.part_number, p.etag, p.checksums) for p in parts] == [
        (1, "aa", (("CRC32", "AAAAAA=="),)),
        (2, "bb", ()),
    ]
    for bad in (
        b"<CompleteMultipartUpload/>",
        b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber>"
        b"<ETag>x</ETag></Part></CompleteMultipartUpload>",
    ):
        with pytest.raises(MalformedXML):
            parse_complete_upload(bad)


def test_parse_location_constraint() -> None:
    assert parse_location_constraint(b"") is None
    assert parse_location_constraint(b"<CreateBucketConfiguration/>") is None
    body = (
        b'<CreateBucketConfiguration xmlns="x">'
        b"<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"
    )
    assert parse_location_constraint(body) == "eu-west-1"
    with pytest.raises(MalformedXML):
        parse_location_constraint(b"<Wrong/>")


def test_entity_expansion_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            b'<!ENTITY %s "%s">' % (b"b%d" % i, (b"&a;" if i == 0 else b"&b%d;" % (i - 1)) * 10)
            for i in range(8)
        )
        + b"]><Delete><Object><Key>&b7;</Key></Object></Delete>"
    )
    with pytest.raises(MalformedXML):
        parse_delete(bomb)
