"""Response deserializers: the SageMaker Python SDK's names, arguments and results (spec §6.5).

A deserializer names what it accepts (`ACCEPT`, a tuple, sent as the Accept header joined by ", ")
and turns the response body stream into a Python value, given the response's Content-Type. Each
closes the stream when done. Any object with `ACCEPT` and `deserialize(stream, content_type)`,
including SageMaker's own deserializers, works with `Predictor`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from moorage.sdk.errors import InvalidArgument

__all__ = [
    "BytesDeserializer",
    "CSVDeserializer",
    "Deserializer",
    "JSONDeserializer",
    "NumpyDeserializer",
    "Stream",
    "StringDeserializer",
]


class Stream(Protocol):
    """A response body: botocore's StreamingBody, or any binary file."""

    def read(self, amt: int | None = None, /) -> bytes: ...

    def close(self) -> None: ...


class Deserializer(Protocol):
    @property
    def ACCEPT(self) -> Sequence[str]: ...  # SageMaker's name

    def deserialize(self, stream: Stream, content_type: str) -> Any: ...


class _Accepting:
    def __init__(self, accept: str | Sequence[str]) -> None:
        self.accept = accept

    @property
    def ACCEPT(self) -> tuple[str, ...]:  # SageMaker's name
        return (self.accept,) if isinstance(self.accept, str) else tuple(self.accept)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept={self.accept!r})"


class BytesDeserializer(_Accepting):
    def __init__(self, accept: str | Sequence[str] = "*/*") -> None:
        super().__init__(accept)

    def deserialize(self, stream: Stream, content_type: str) -> bytes:
        try:
            return stream.read()
        finally:
            stream.close()


class StringDeserializer(_Accepting):
    def __init__(self, encoding: str = "UTF-8", accept: str | Sequence[str] = "application/json") -> None:
        super().__init__(accept)
        self.encoding = encoding

    def deserialize(self, stream: Stream, content_type: str) -> str:
        try:
            return stream.read().decode(self.encoding)
        finally:
            stream.close()


class JSONDeserializer(_Accepting):
    """`json` of the UTF-8 body, whatever the response's content type says."""

    def __init__(self, accept: str | Sequence[str] = "application/json") -> None:
        super().__init__(accept)

    def deserialize(self, stream: Stream, content_type: str) -> Any:
        try:
            return json.loads(stream.read().decode("utf-8"))
        finally:
            stream.close()


class CSVDeserializer(_Accepting):
    """A list of rows, each a list of strings."""

    def __init__(self, encoding: str = "utf-8", accept: str | Sequence[str] = "text/csv") -> None:
        super().__init__(accept)
        self.encoding = encoding

    def deserialize(self, stream: Stream, content_type: str) -> list[list[str]]:
        try:
            return list(csv.reader(stream.read().decode(self.encoding).splitlines()))
        finally:
            stream.close()


class NumpyDeserializer(_Accepting):
    """A NumPy array from an .npy, .npz, JSON or CSV response, chosen by the *exact* response content
    type (parameters such as "; charset=utf-8" are not stripped, as in SageMaker). Pickled object
    arrays are refused unless `allow_pickle=True`: unpickling runs code from the response."""

    def __init__(
        self, dtype: Any = None, accept: str | Sequence[str] = "application/x-npy", allow_pickle: bool = False
    ) -> None:
        super().__init__(accept)
        self.dtype = dtype
        self.allow_pickle = allow_pickle

    def deserialize(self, stream: Stream, content_type: str) -> Any:
        try:
            if content_type == "text/csv":
                text = io.StringIO(stream.read().decode("utf-8"))
                return np.genfromtxt(text, delimiter=",", dtype=self.dtype)
            if content_type == "application/json":
                return np.array(json.loads(stream.read().decode("utf-8")), dtype=self.dtype)
            if content_type in ("application/x-npy", "application/x-npz"):
                try:
                    return np.load(io.BytesIO(stream.read()), allow_pickle=self.allow_pickle)
                except ValueError:
                    if self.allow_pickle:
                        raise
                    raise InvalidArgument(
                        "The response holds pickled Python objects; NumpyDeserializer(allow_pickle=True) "
                        "reads them (unpickling runs code: only for endpoints you trust)."
                    ) from None
        finally:
            stream.close()
        raise InvalidArgument(f"NumpyDeserializer cannot read content type {content_type}.")
