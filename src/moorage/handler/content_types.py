"""The content types SageMaker's toolkit knows, and its rules for reading Content-Type and Accept.

The toolkit compares media types as exact strings, never as parsed values: `application/json;
charset=utf-8` is not `application/json` to it, and an Accept list is split on commas with its
q-parameters left in place. These helpers keep those rules, on purpose, because user handlers
written for SageMaker receive exactly these strings (spec §2.7, §2.8, must-match 18–20).
"""

from __future__ import annotations

__all__ = [
    "ANY",
    "CSV",
    "JSON",
    "NPY",
    "NPZ",
    "OCTET_STREAM",
    "UTF8_TYPES",
    "accept_entries",
    "input_body",
    "resolve_accept",
]

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
OCTET_STREAM = "application/octet-stream"
ANY = "*/*"

# The only Content-Types whose body reaches input_fn as str; all others arrive as bytes (spec §2.7 step 4).
UTF8_TYPES = frozenset({JSON, CSV})


def resolve_accept(accept: str | None, default_accept: str) -> str:
    """The Accept value handed to output_fn (spec §2.7 step 3).

    Missing, empty or exactly `*/*` becomes SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT; anything else is
    passed raw, so `application/json, */*` stays a list and is never replaced.
    """
    if not accept or accept == ANY:
        return default_accept
    return accept


def input_body(body: bytes, content_type: str | None) -> bytes | str:
    """The request body as input_fn sees it: UTF-8 text only for the two exact text types.

    `application/json; charset=utf-8` therefore stays bytes, which the default decoder then refuses
    (spec "Known quirks").
    """
    if content_type in UTF8_TYPES:
        return body.decode("utf-8")
    return body


def accept_entries(accept: str) -> list[str]:
    """The toolkit's Accept split: spaces removed, split on commas, q-parameters kept (spec §2.8).

    `text/csv;q=0.9` is therefore one entry that matches no encoder.
    """
    return accept.replace(" ", "").split(",")
