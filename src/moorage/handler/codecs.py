"""The toolkit's default decoders (request body → numpy) and encoders (object → response body).

These are what the default input_fn and output_fn use (spec §2.9). The wire forms are SageMaker's:
JSON with json.dumps' default separators (`[[1.0, 2.0]]`), CSV from np.savetxt with a trailing
newline, NPY from np.save. Lookups are by exact content-type string, as in the toolkit, and an
unknown type raises UnsupportedFormatError with the toolkit's own text.

Two deliberate deviations, both on the decode side:
- NPY object arrays are unpickled only when MOORAGE_NPY_ALLOW_PICKLE is on. SageMaker always
  unpickles them; a request body should not be able to run code in the worker by default.
- NPZ is densified (scipy.sparse archive → `.toarray()`, or the single array of a plain
  np.savez archive), so NPZ input works; under SageMaker it always fails (spec "Known quirks").
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse

from moorage.handler import content_types
from moorage.handler.toolkit_errors import UnsupportedFormatError

__all__ = ["ENCODABLE_TYPES", "PICKLE_SETTING", "decode", "encode"]

# The setting that lets NPY object arrays be unpickled; named in the refusal message.
PICKLE_SETTING = "MOORAGE_NPY_ALLOW_PICKLE"

Array = npt.NDArray[Any]


def decode(data: bytes | str, content_type: str | None, *, allow_pickle: bool = False) -> Array:
    """Decode a request body of one of the default content types into a numpy array."""
    if content_type == content_types.JSON:
        return np.array(json.loads(data))
    if content_type == content_types.CSV:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        # dtype=None as in the toolkit: numpy infers each column's type (ints stay ints), one row per line.
        return np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")
    if content_type == content_types.NPY:
        return _decode_npy(_as_bytes(data), allow_pickle=allow_pickle)
    if content_type == content_types.NPZ:
        return _decode_npz(_as_bytes(data))
    raise UnsupportedFormatError(content_type)


def encode(obj: object, content_type: str) -> bytes | str:
    """Encode a prediction: JSON and CSV as str, NPY as bytes (the toolkit's return types)."""
    encoder = _ENCODERS.get(content_type)
    if encoder is None:
        raise UnsupportedFormatError(content_type)
    return encoder(obj)


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _decode_npy(data: bytes, *, allow_pickle: bool) -> Array:
    if allow_pickle:
        return np.load(io.BytesIO(data), allow_pickle=True)  # type: ignore[no-any-return]
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)  # ValueError when this is not NPY at all
    if version == (1, 0):
        _, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        _, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.hasobject:
        raise ValueError(
            f"The application/x-npy body holds a pickled object array (dtype {dtype}); moorage does not "
            f"unpickle request data by default. Send a numeric array, or set {PICKLE_SETTING}=true to "
            "unpickle it as SageMaker does."
        )
    return np.load(io.BytesIO(data), allow_pickle=False)  # type: ignore[no-any-return]


def _decode_npz(data: bytes) -> Array:
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError("The application/x-npz body is not an NPZ (zip) archive.")
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        names = list(archive.files)
        if "format" in names:  # written by scipy.sparse.save_npz
            return scipy.sparse.load_npz(io.BytesIO(data)).toarray()  # type: ignore[no-any-return]
        if len(names) == 1:
            return archive[names[0]]  # type: ignore[no-any-return]
    raise ValueError(
        "The application/x-npz body must be a scipy.sparse matrix saved with scipy.sparse.save_npz, "
        f"or an np.savez archive holding exactly one array; it holds {names}."
    )


def _to_list(obj: object) -> object:
    """json.dumps fallback: anything with `.tolist()` (numpy arrays and scalars, tensors)."""
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _encode_json(obj: object) -> str:
    return json.dumps(obj, default=_to_list)


def _encode_csv(obj: object) -> str:
    buffer = io.StringIO()
    np.savetxt(buffer, obj, delimiter=",", fmt="%s")  # type: ignore[arg-type]
    return buffer.getvalue()


def _encode_npy(obj: object) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, obj)  # type: ignore[arg-type]
    return buffer.getvalue()


_ENCODERS: dict[str, Callable[[object], bytes | str]] = {
    content_types.NPY: _encode_npy,
    content_types.CSV: _encode_csv,
    content_types.JSON: _encode_json,
}

# The Accept entries the default output_fn can produce (spec §2.8).
ENCODABLE_TYPES = frozenset(_ENCODERS)
