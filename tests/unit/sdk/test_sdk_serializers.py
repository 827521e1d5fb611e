"""moorage's serializers and deserializers against the SageMaker SDK's own classes (spec §6.5).

The SageMaker SDK 2.257.7 is installed: every case runs the same input through both and compares the
bytes that go on the wire (a `str` from SageMaker is what boto3 sends as UTF-8) or the decoded value.
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from moorage import deserializers as ours_d
from moorage import serializers as ours_s
from moorage.sdk.errors import InvalidArgument


@pytest.fixture(scope="module")
def sagemaker_codecs() -> tuple[ModuleType, ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        return (
            importlib.import_module("sagemaker.serializers"),
            importlib.import_module("sagemaker.deserializers"),
        )


def wire(body: Any) -> bytes:
    """What boto3 sends for a body: str as UTF-8, bytes as they are."""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


class Row(list[Any]):
    """A list subclass, to check the mutable-sequence rule of CSVSerializer."""


JSON_CASES: list[Any] = [
    {"url": "http://x/y.jpg"},
    {"inputs": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 3, "nested": {"a": [1, 2]}},
    [[1.0, 2.5], [3.0, 4.0]],
    np.array([[1, 2], [3, 4]], dtype=np.int64),
    np.array([0.1, 0.2, 0.30000000000000004]),
    "just a string",
    "ünïcödé ✓",
    {"text": "ünïcödé ✓"},
    3.25,
    None,
    True,
    [],
    {},
]


@pytest.mark.parametrize("data", JSON_CASES, ids=range(len(JSON_CASES)))
def test_json_serializer_bytes(data: Any, sagemaker_codecs: tuple[ModuleType, ModuleType]) -> None:
    theirs = sagemaker_codecs[0].JSONSerializer()
    ours = ours_s.JSONSerializer()
    assert ours.serialize(data) == wire(theirs.serialize(data))
    assert ours.CONTENT_TYPE == theirs.CONTENT_TYPE == "application/json"


def test_json_serializer_matches_the_spec_example() -> None:
    assert ours_s.JSONSerializer().serialize({"url": "http://x/y.jpg"}) == b'{"url": "http://x/y.jpg"}'


NUMPY_CASES: list[Any] = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array([1, 2, 3], dtype=np.int16),
    np.array([[True, False]]),
    [[1.0, 2.0], [3.0, 4.0]],
    [1, 2, 3],
    7.5,
    (1, 2, 3),
    {"a": 1},  # an object array: pickled, as in SageMaker
]


@pytest.mark.parametrize("dtype", [None, "float32", "int64"])
@pytest.mark.parametrize("data", NUMPY_CASES, ids=range(len(NUMPY_CASES)))
def test_numpy_serializer_bytes(
    data: Any, dtype: str | None, sagemaker_codecs: tuple[ModuleType, ModuleType]
) -> None:
    theirs = sagemaker_codecs[0].NumpySerializer(dtype=dtype)
    ours = ours_s.NumpySerializer(dtype=dtype)
    assert ours.serialize(data) == wire(theirs.serialize(data))
    assert ours.CONTENT_TYPE == theirs.CONTENT_TYPE == "application/x-npy"


def test_numpy_serializer_dtype_applies_to_lists_only() -> None:
    as_list = np.load(io.BytesIO(ours_s.NumpySerializer(dtype="float32").serialize([1, 2])))
    as_array = np.load(io.BytesIO(ours_s.NumpySerializer(dtype="float32").serialize(np.array([1, 2]))))
    assert (as_list.dtype, as_array.dtype) == (np.float32, np.int64)


CSV_CASES: list[Any] = [
    [1, 2, 3],
    [1.5, "a,b", 'quote "x"'],
    [[1, 2], [3, 4]],
    Row([Row([1, 2]), Row([3, 4])]),
    ((1, 2), (3, 4)),  # a tuple is not mutable: one row of two cells
    ["ab", "cd"],  # strings are sequences: two rows
    np.array([1.0, 2.0, 3.0]),
    np.arange(6).reshape(2, 3),
    np.arange(8).reshape(2, 2, 2),
    "1,2,3",
    "",
]


@pytest.mark.parametrize("data", CSV_CASES, ids=range(len(CSV_CASES)))
def test_csv_serializer_bytes(data: Any, sagemaker_codecs: tuple[ModuleType, ModuleType]) -> None:
    theirs = sagemaker_codecs[0].CSVSerializer()
    ours = ours_s.CSVSerializer()
    assert ours.serialize(data) == wire(theirs.serialize(data))
    assert ours.CONTENT_TYPE == theirs.CONTENT_TYPE == "text/csv"


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.JSONSerializer(),
        lambda m: m.CSVSerializer(),
        lambda m: m.NumpySerializer(),
    ],
)
def test_files_are_sent_as_read(
    make: Callable[[Any], Any], sagemaker_codecs: tuple[ModuleType, ModuleType]
) -> None:
    payload = b"\x93NUMPY already encoded, or any bytes"
    assert make(ours_s).serialize(io.BytesIO(payload)) == wire(
        make(sagemaker_codecs[0]).serialize(io.BytesIO(payload))
    )


@pytest.mark.parametrize("data", [b"\x00\x01raw", bytearray(b"xy"), "text"])
def test_identity_serializer(data: Any, sagemaker_codecs: tuple[ModuleType, ModuleType]) -> None:
    assert ours_s.IdentitySerializer().serialize(data) == sagemaker_codecs[0].IdentitySerializer().serialize(
        data
    )
    assert ours_s.IdentitySerializer("image/png").CONTENT_TYPE == "image/png"
    assert ours_s.IdentitySerializer().CONTENT_TYPE == "application/octet-stream"


@pytest.mark.parametrize(
    ("serialize", "data"),
    [
        (ours_s.NumpySerializer().serialize, []),
        (ours_s.NumpySerializer().serialize, np.array([])),
        (ours_s.CSVSerializer().serialize, []),
        (ours_s.CSVSerializer().serialize, 5),
        (ours_s.CSVSerializer().serialize, {"a": 1}),
        (ours_s.IdentitySerializer().serialize, {"a": 1}),
    ],
)
def test_what_cannot_be_serialized_is_a_value_error(serialize: Callable[[Any], Any], data: Any) -> None:
    with pytest.raises(ValueError) as raised:
        serialize(data)
    assert isinstance(raised.value, InvalidArgument)
    assert raised.value.message


def test_content_type_must_be_a_string() -> None:
    with pytest.raises(InvalidArgument):
        ours_s.JSONSerializer(content_type=["application/json"])  # type: ignore[arg-type]


# Deserializers --------------------------------------------------------------------------------------
class Body(io.BytesIO):
    """A response body that remembers being closed (botocore's StreamingBody reads and closes alike)."""


def both(
    make: Callable[[Any], Any], sagemaker_codecs: tuple[ModuleType, ModuleType], body: bytes, ct: str
) -> tuple[Any, Any, Body]:
    ours_body = Body(body)
    ours = make(ours_d).deserialize(ours_body, ct)
    theirs = make(sagemaker_codecs[1]).deserialize(Body(body), ct)
    return ours, theirs, ours_body


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (npy(np.arange(6, dtype=np.float32).reshape(2, 3)), "application/x-npy"),
        (b"[[1.5, 2.0], [3.0, 4.0]]", "application/json"),
        (b"1,2,3\n4,5,6", "text/csv"),
        (b"1.5", "text/csv"),
    ],
)
@pytest.mark.parametrize("dtype", [None, "float32"])
def test_numpy_deserializer(
    body: bytes, content_type: str, dtype: str | None, sagemaker_codecs: tuple[ModuleType, ModuleType]
) -> None:
    ours, theirs, stream = both(
        lambda m: m.NumpyDeserializer(dtype=dtype), sagemaker_codecs, body, content_type
    )
    assert isinstance(ours, np.ndarray)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)
    assert stream.closed


def test_numpy_deserializer_npz(sagemaker_codecs: tuple[ModuleType, ModuleType]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.arange(3), b=np.ones((2, 2)))
    ours, theirs, _ = both(
        lambda m: m.NumpyDeserializer(), sagemaker_codecs, buffer.getvalue(), "application/x-npz"
    )
    assert sorted(ours.files) == sorted(theirs.files) == ["a", "b"]
    np.testing.assert_array_equal(ours["b"], theirs["b"])


def test_numpy_deserializer_refuses_pickles_unless_allowed() -> None:
    pickled = npy(np.array({"a": 1}))
    with pytest.raises(ValueError, match="allow_pickle=True"):
        ours_d.NumpyDeserializer().deserialize(Body(pickled), "application/x-npy")
    assert ours_d.NumpyDeserializer(allow_pickle=True).deserialize(
        Body(pickled), "application/x-npy"
    ).item() == {"a": 1}


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "text/plain", "application/x-NPY"]
)
def test_numpy_deserializer_wants_exact_content_types(
    content_type: str, sagemaker_codecs: tuple[ModuleType, ModuleType]
) -> None:
    with pytest.raises(ValueError) as ours:
        ours_d.NumpyDeserializer().deserialize(Body(b"[1]"), content_type)
    with pytest.raises(ValueError) as theirs:
        sagemaker_codecs[1].NumpyDeserializer().deserialize(Body(b"[1]"), content_type)
    assert (
        str(ours.value) == str(theirs.value) == f"NumpyDeserializer cannot read content type {content_type}."
    )


@pytest.mark.parametrize(
    ("make", "body"),
    [
        (lambda m: m.JSONDeserializer(), b'[{"prediction": "umbrella", "score": "93.9%"}]'),
        (lambda m: m.JSONDeserializer(), '{"text": "ünïcödé"}'.encode()),
        (lambda m: m.CSVDeserializer(), b'1,2,3\n"a,b",c\n'),
        (lambda m: m.BytesDeserializer(), b"\x00\xffraw"),
        (lambda m: m.StringDeserializer(), "ünïcödé".encode()),
    ],
)
def test_other_deserializers(
    make: Callable[[Any], Any], body: bytes, sagemaker_codecs: tuple[ModuleType, ModuleType]
) -> None:
    ours, theirs, stream = both(make, sagemaker_codecs, body, "application/octet-stream")
    assert ours == theirs
    assert stream.closed


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.JSONDeserializer(),
        lambda m: m.NumpyDeserializer(),
        lambda m: m.CSVDeserializer(),
        lambda m: m.BytesDeserializer(),
        lambda m: m.StringDeserializer(),
        lambda m: m.NumpyDeserializer(accept=("application/x-npy", "application/json")),
    ],
)
def test_accept(make: Callable[[Any], Any], sagemaker_codecs: tuple[ModuleType, ModuleType]) -> None:
    assert tuple(make(sagemaker_codecs[1]).ACCEPT) == make(ours_d).ACCEPT


def test_json_round_trip() -> None:
    data = {"inputs": [[1.0, 2.0]], "label": "ünïcödé"}
    assert ours_d.JSONDeserializer().deserialize(
        Body(ours_s.JSONSerializer().serialize(data)), ""
    ) == json.loads(json.dumps(data))
