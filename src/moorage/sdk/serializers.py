"""Request serializers: the SageMaker Python SDK's names, arguments and bytes on the wire (spec §6.5).

A serializer turns what the user passes to `predict` into the request body and names its content
type (`CONTENT_TYPE`, sent as Content-Type). The bytes are the SageMaker SDK's, byte for byte, so a
handler written for SageMaker reads them unchanged; where SageMaker returns a `str`, these return the
same text encoded as UTF-8 (what boto3 sends for a `str` body anyway). Any object with
`CONTENT_TYPE` and `serialize()`, including SageMaker's own serializers, works with `Predictor`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import IO, Any, Protocol

import numpy as np

from moorage.sdk.errors import InvalidArgument

__all__ = [
    "Body",
    "CSVSerializer",
    "IdentitySerializer",
    "JSONSerializer",
    "NumpySerializer",
    "Serializer",
]

Body = bytes | bytearray | str | IO[bytes]


class Serializer(Protocol):
    @property
    def CONTENT_TYPE(self) -> str: ...  # SageMaker's name

    def serialize(self, data: Any) -> Any: ...


class _ContentTyped:
    def __init__(self, content_type: str) -> None:
        if not isinstance(content_type, str):
            raise InvalidArgument(
                f"content_type must be a MIME type string such as 'application/json'; got {content_type!r}"
            )
        self.content_type = content_type

    @property
    def CONTENT_TYPE(self) -> str:  # SageMaker's name
        return self.content_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}(content_type={self.content_type!r})"


class JSONSerializer(_ContentTyped):
    """`json.dumps` with default separators; NumPy arrays (also as a dict's values) become lists."""

    def __init__(self, content_type: str = "application/json") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> bytes:
        if isinstance(data, dict):
            data = {key: _listed(value) for key, value in data.items()}
        elif _is_file(data):
            return _as_bytes(data.read())
        return json.dumps(_listed(data)).encode()


class NumpySerializer(_ContentTyped):
    """The .npy format (`np.save`). `dtype` applies to lists only, as in SageMaker. Objects that are
    neither arrays nor lists (e.g. a dict) are saved as a pickled object array, which a handler can
    read only if it allows pickle."""

    def __init__(self, dtype: Any = None, content_type: str = "application/x-npy") -> None:
        super().__init__(content_type)
        self.dtype = dtype

    def serialize(self, data: Any) -> bytes:
        if isinstance(data, np.ndarray):
            if data.size == 0:
                raise InvalidArgument("Cannot serialize empty array.")
            return _npy(data)
        if isinstance(data, list):
            if not data:
                raise InvalidArgument("Cannot serialize empty array.")
            return _npy(np.array(data, self.dtype))
        if _is_file(data):
            return _as_bytes(data.read())  # assumed to hold .npy bytes already
        return _npy(np.array(data))


class CSVSerializer(_ContentTyped):
    """One CSV line per row, joined by "\\n" (no trailing newline). A mutable sequence whose first item
    is itself a sequence is a list of rows; anything else is one row (arrays are flattened)."""

    def __init__(self, content_type: str = "text/csv") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> bytes:
        if _is_file(data):
            return _as_bytes(data.read())
        if _is_dataframe(data):
            return str(data.to_csv(header=False, index=False)).encode()
        if isinstance(data, Mapping):
            raise InvalidArgument("CSVSerializer cannot serialize a mapping: give rows (lists or arrays).")
        if _is_sequence(data) and hasattr(data, "__setitem__") and len(data) > 0 and _is_sequence(data[0]):
            return "\n".join(_csv_row(row) for row in data).encode()
        return _csv_row(data).encode()


class IdentitySerializer(_ContentTyped):
    """The body as given: bytes, a str, or a binary file (e.g. an image opened with "rb")."""

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        super().__init__(content_type)

    def serialize(self, data: Any) -> Body:
        if isinstance(data, bytes | bytearray | str) or _is_file(data):
            return data  # type: ignore[no-any-return]
        raise InvalidArgument(
            f"IdentitySerializer sends bytes, str or a file unchanged; got {type(data).__name__}. "
            "Use JSONSerializer, NumpySerializer or CSVSerializer to encode other objects."
        )


def _listed(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _is_file(data: Any) -> bool:
    return hasattr(data, "read")


def _is_sequence(data: Any) -> bool:
    return hasattr(data, "__iter__") and hasattr(data, "__getitem__")


def _is_dataframe(data: Any) -> bool:
    """pandas is optional: recognise a DataFrame without importing it."""
    return any(
        cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas") for cls in type(data).__mro__
    )


def _as_bytes(content: Any) -> bytes:
    return content.encode() if isinstance(content, str) else bytes(content)


def _npy(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _csv_row(row: Any) -> str:
    if isinstance(row, str):
        return row
    if isinstance(row, np.ndarray):
        row = row.flatten()
    if not hasattr(row, "__len__"):
        raise InvalidArgument(f"Unable to handle input format: {type(row)}")
    if len(row) == 0:
        raise InvalidArgument("Cannot serialize empty array")
    line = io.StringIO()
    csv.writer(line, delimiter=",").writerow(row)
    return line.getvalue().rstrip("\r\n")
