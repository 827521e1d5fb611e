"""The one way an AWS JSON 1.1 service here reads its request body: a JSON object, or a 400.

SageMaker, Application Auto Scaling and CloudWatch Logs all take a JSON object from the client, so
every failure to read one must be that client's error (SerializationException, 400), never ours: a
500 is retried by botocore and logged with a traceback. The standard library's decoder recurses once
per nesting level, so `[` × 100 000 raised RecursionError (security probe 2, #56); nesting is
bounded well above what any AWS input shape needs (SageMaker's deepest is under 10 levels), so no
operation ever walks a value deeper than that either. NaN and Infinity are not JSON numbers and are
refused, as AWS refuses them; integers past 4300 digits are refused by the decoder itself.
"""

from __future__ import annotations

import json
from typing import Any

from moorage.errors import SerializationException

__all__ = ["MAX_DEPTH", "parse_object"]

MAX_DEPTH = 64


def parse_object(body: bytes) -> dict[str, Any]:
    """The operation's input: an empty body means `{}` (botocore sends "{}"; a bare POST means the same)."""
    if not body.strip():
        return {}
    try:
        params = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as error:
        raise SerializationException(f"The request body is not valid JSON: {error}") from None
    if not isinstance(params, dict):
        raise SerializationException(f"The request body must be a JSON object, not {type(params).__name__}.")
    if _deeper_than(params, MAX_DEPTH):
        raise _too_deep()
    return params


def _too_deep() -> SerializationException:
    return SerializationException(
        f"The request body nests JSON arrays and objects more than {MAX_DEPTH} levels deep."
    )


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than `limit` levels; iterative, so it cannot recurse itself."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
