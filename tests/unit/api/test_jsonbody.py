"""The JSON services' one body reader: every body a client can send is a JSON object or a 400
SerializationException, never an exception of ours (security probe 2, #56 and #57)."""

from __future__ import annotations

import pytest

from moorage.api.jsonbody import MAX_DEPTH, parse_object
from moorage.errors import SerializationException


def nested(depth: int) -> bytes:
    """An object `depth` levels deep: {"a":{"a":…{}…}}."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"[" * 100_000,  # not even closed
        b'{"a":' + b"[" * 900 + b"]" * 900 + b"}",  # deep, but shallow enough for the decoder itself
        nested(MAX_DEPTH + 1),
    ],
    ids=["arrays-100k", "objects-50k", "unclosed", "arrays-900", "one-past-the-limit"],
)
def test_a_deeply_nested_body_is_a_serialization_error(body: bytes) -> None:
    with pytest.raises(SerializationException) as caught:
        parse_object(body)
    assert caught.value.status == 400
    assert caught.value.message == (
        f"The request body nests JSON arrays and objects more than {MAX_DEPTH} levels deep."
    )


def test_nesting_up_to_the_limit_is_read() -> None:
    params = parse_object(nested(MAX_DEPTH))
    depth = 0
    while params:
        params, depth = params["a"], depth + 1
    assert depth == MAX_DEPTH - 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"MaxResults": NaN}', "NaN is not a JSON number"),
        (b'{"MaxResults": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"MaxResults": ' + b"9" * 5000 + b"}", "Exceeds the limit (4300 digits)"),
        (b'{"a": "\xff"}', "invalid start byte"),
        (b'{"a": 1', "Expecting ',' delimiter"),
    ],
)
def test_absurd_numbers_and_broken_text_are_serialization_errors(body: bytes, message: str) -> None:
    with pytest.raises(SerializationException) as caught:
        parse_object(body)
    assert caught.value.message.startswith("The request body is not valid JSON: ")
    assert message in caught.value.message


def test_huge_but_finite_numbers_reach_validation_as_numbers() -> None:
    """`1e999` is a JSON number (inf to Python); the operation's validation refuses it with a 400."""
    assert parse_object(b'{"MaxResults": 1e999, "N": ' + b"9" * 40 + b"}") == {
        "MaxResults": float("inf"),
        "N": 10**40 - 1,
    }


@pytest.mark.parametrize(
    ("body", "kind"), [(b"[]", "list"), (b'"x"', "str"), (b"3", "int"), (b"null", "NoneType")]
)
def test_only_an_object_is_an_input(body: bytes, kind: str) -> None:
    with pytest.raises(SerializationException) as caught:
        parse_object(body)
    assert caught.value.message == f"The request body must be a JSON object, not {kind}."


def test_an_empty_body_is_an_empty_input() -> None:
    assert parse_object(b"") == {} == parse_object(b" \r\n")
    assert parse_object(b'{"ModelName": "m", "Tags": [{"Key": "k", "Value": "v"}]}') == {
        "ModelName": "m",
        "Tags": [{"Key": "k", "Value": "v"}],
    }
