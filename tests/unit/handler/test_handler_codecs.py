"""Codecs and content-type rules: exact wire bytes, and agreement with sagemaker_inference 1.10.1."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.sparse
from sagemaker_inference import decoder as sm_decoder
from sagemaker_inference import encoder as sm_encoder
from sagemaker_inference import errors as sm_errors

from moorage.handler import codecs, content_types
from moorage.handler.toolkit_errors import UnsupportedFormatError

UNSUPPORTED_OCTET = (
    "Content type application/octet-stream is not supported by this framework.\n\n"
    "            Please implement input_fn to to deserialize the request data or an output_fn to\n"
    "            serialize the response. For more information, see the SageMaker Python SDK README."
)


def npy_bytes(array: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)  # type: ignore[arg-type]
    return buffer.getvalue()


# --- encoders -------------------------------------------------------------------------------------


def test_json_encoding_uses_default_separators() -> None:
    assert codecs.encode(np.array([[1.0, 2.0]]), "application/json") == "[[1.0, 2.0]]"
    assert codecs.encode({"a": [1, 2], "b": np.float32(0.5)}, "application/json") == '{"a": [1, 2], "b": 0.5}'


def test_csv_encoding_has_one_line_per_row_and_a_trailing_newline() -> None:
    assert codecs.encode([[1.0, 2.0], [3.0, 4.0]], "text/csv") == "1.0,2.0\n3.0,4.0\n"
    assert codecs.encode([1, 2], "text/csv") == "1\n2\n"


def test_npy_encoding_round_trips_with_dtype() -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    encoded = codecs.encode(array, "application/x-npy")
    assert isinstance(encoded, bytes)
    assert encoded == npy_bytes(array)
    decoded = codecs.decode(encoded, "application/x-npy")
    assert decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(
    "value",
    [[[1.0, 2.0]], [[0.1, -3.5], [2.0, 1e-7]], np.arange(4.0).reshape(2, 2), [1, 2, 3], [[True, False]]],
)
@pytest.mark.parametrize("content_type", ["application/json", "text/csv", "application/x-npy"])
def test_encoders_match_the_toolkit(value: object, content_type: str) -> None:
    assert codecs.encode(value, content_type) == sm_encoder.encode(value, content_type)


def test_encoding_an_unknown_type_raises_the_toolkit_error() -> None:
    with pytest.raises(UnsupportedFormatError) as caught:
        codecs.encode([1], "application/octet-stream")
    assert str(caught.value) == UNSUPPORTED_OCTET


# --- decoders -------------------------------------------------------------------------------------


def test_json_and_csv_decode_to_arrays() -> None:
    from_json = codecs.decode("[[1.0, 2.0]]", "application/json")
    assert from_json.shape == (1, 2)
    assert from_json.dtype == np.float64
    from_csv = codecs.decode("1.5,2.0,3\n4,5,6.0\n", "text/csv")
    np.testing.assert_array_equal(from_csv, [[1.5, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # numpy infers each column's dtype, as the toolkit's dtype=None does: integers stay integers,
    # and mixed columns make a record array (the default input_fn flattens it).
    assert codecs.decode("1,2\n3,4", "text/csv").dtype == np.int64
    assert codecs.decode("1.5,2\n3,4", "text/csv").dtype.names == ("f0", "f1")
    assert codecs.decode("1,2,3\n", "text/csv").shape == (3,)  # one row is one dimension, as in SageMaker


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("[[1.5, 2.5], [3, 4]]", "application/json"),
        ('{"a": 1}', "application/json"),
        ("1,2\n3,4", "text/csv"),
        (npy_bytes(np.arange(5, dtype=np.int16)), "application/x-npy"),
        (npy_bytes(np.ones((2, 3), dtype=np.float32)), "application/x-npy"),
    ],
)
def test_decoders_match_the_toolkit(body: bytes | str, content_type: str) -> None:
    ours = codecs.decode(body, content_type)
    theirs = sm_decoder.decode(body, content_type)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_npy_object_arrays_are_refused_unless_pickle_is_allowed() -> None:
    body = npy_bytes(np.array([{"url": "x"}], dtype=object))
    with pytest.raises(ValueError, match=r"MOORAGE_NPY_ALLOW_PICKLE=true") as caught:
        codecs.decode(body, "application/x-npy")
    assert "pickled object array" in str(caught.value)
    allowed = codecs.decode(body, "application/x-npy", allow_pickle=True)
    assert allowed[0] == {"url": "x"}


def test_npy_that_is_not_npy_is_refused_without_unpickling() -> None:
    with pytest.raises(ValueError, match="magic string"):
        codecs.decode(b"\x80\x04K\x01.", "application/x-npy")  # a pickle of the int 1


def test_npz_sparse_is_densified() -> None:
    matrix = scipy.sparse.csr_matrix(np.array([[0.0, 2.0], [3.0, 0.0]]))
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, matrix)
    decoded = codecs.decode(buffer.getvalue(), "application/x-npz")
    assert isinstance(decoded, np.ndarray)
    np.testing.assert_array_equal(decoded, [[0.0, 2.0], [3.0, 0.0]])


def test_npz_plain_archive_with_one_array() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(3, dtype=np.int64))
    decoded = codecs.decode(buffer.getvalue(), "application/x-npz")
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, [0, 1, 2])


def test_npz_with_two_arrays_or_no_zip_is_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.zeros(1), b=np.ones(1))
    with pytest.raises(ValueError, match=r"exactly one array; it holds \['a', 'b'\]"):
        codecs.decode(buffer.getvalue(), "application/x-npz")
    with pytest.raises(ValueError, match="not an NPZ"):
        codecs.decode(npy_bytes(np.zeros(2)), "application/x-npz")


def test_unsupported_format_text_is_the_toolkits() -> None:
    with pytest.raises(UnsupportedFormatError) as caught:
        codecs.decode(b"abc", "application/octet-stream")
    assert str(caught.value) == UNSUPPORTED_OCTET
    assert str(caught.value) == str(sm_errors.UnsupportedFormatError("application/octet-stream"))
    assert str(UnsupportedFormatError(None)).startswith("Content type None is not supported")


def test_content_type_parameters_are_not_stripped() -> None:
    with pytest.raises(UnsupportedFormatError, match=r"^Content type application/json; charset=utf-8 is"):
        codecs.decode(b"[1]", "application/json; charset=utf-8")


# --- content types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("application/json, */*", "application/json, */*"),
        (" */*", " */*"),
    ],
)
def test_accept_defaulting(accept: str | None, expected: str) -> None:
    assert content_types.resolve_accept(accept, "application/json") == expected


def test_accept_default_comes_from_the_setting() -> None:
    assert content_types.resolve_accept("*/*", "text/csv") == "text/csv"


def test_only_the_two_exact_text_types_become_str() -> None:
    assert content_types.input_body(b"[1]", "application/json") == "[1]"
    assert content_types.input_body(b"1,2", "text/csv") == "1,2"
    assert content_types.input_body(b"[1]", "application/json; charset=utf-8") == b"[1]"
    assert content_types.input_body(b"x", "text/plain") == b"x"
    assert content_types.input_body(b"x", None) == b"x"


def test_accept_entries_keep_q_parameters() -> None:
    assert content_types.accept_entries("text/csv;q=0.9, application/json") == [
        "text/csv;q=0.9",
        "application/json",
    ]
