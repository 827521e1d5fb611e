"""Checking CloudWatch request members: the shared rules, and the messages that say what to fix.

Members moorage does not implement are refused by name (`refuse`: InvalidParameterValue saying which and
why), never accepted and ignored (docs/compatibility.md lists them).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from moorage.cloudwatch.context import Params
from moorage.cloudwatch.errors import InvalidNextToken, InvalidParameterValue, MissingParameter
from moorage.cloudwatch.history import percentile_name
from moorage.cloudwatch.records import STATISTICS

__all__ = [
    "check_period",
    "dimensions",
    "integer",
    "make_token",
    "number",
    "page_token",
    "refuse",
    "required",
    "seconds",
    "statistic_name",
    "string",
]


def refuse(params: Params, names: dict[str, str]) -> None:
    """Refuse each member in `names` that carries a value (an empty list is no value), saying why."""
    for name, why in names.items():
        value = params.get(name)
        if value is not None and value != [] and value != {}:
            raise InvalidParameterValue(f"moorage does not support {name}: {why}")


def required(params: Params, name: str) -> Any:
    value = params.get(name)
    if value is None:
        raise MissingParameter(f"The parameter {name} is required.")
    return value


def string(params: Params, name: str, *, low: int = 1, high: int = 255, need: bool = False) -> str | None:
    value = required(params, name) if need else params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameterValue(f"The parameter {name} must be a string.")
    if not low <= len(value) <= high:
        raise InvalidParameterValue(
            f"The parameter {name} must be between {low} and {high} characters long (it is {len(value)})."
        )
    return value


def integer(
    params: Params, name: str, *, low: int = 1, high: int | None = None, need: bool = False
) -> int | None:
    value = required(params, name) if need else params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterValue(f"The parameter {name} must be an integer.")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidParameterValue(f"The parameter {name} must be {bound} (it is {value}).")
    return value


def number(params: Params, name: str, *, need: bool = False) -> float | None:
    value = required(params, name) if need else params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameterValue(f"The parameter {name} must be a finite number.")
    return float(value)


def seconds(params: Params, name: str) -> float:
    """A required timestamp member, as epoch seconds."""
    value = required(params, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameterValue(f"The parameter {name} must be a timestamp.")
    return float(value)


def check_period(period: int, min_period_s: int, name: str = "Period") -> None:
    """CloudWatch's periods: 10, 20, 30 or a multiple of 60 seconds. A smaller `min_period_s` (the
    MOORAGE_CLOUDWATCH_MIN_PERIOD knob, for tests and demos) allows any whole number of seconds from it."""
    if period % 60 == 0:
        return
    if min_period_s < 10 and period >= min_period_s:
        return
    if period in (10, 20, 30) and period >= min_period_s:
        return
    allowed = "10, 20, 30 or a multiple of 60" if min_period_s <= 10 else "a multiple of 60"
    if min_period_s < 10:
        allowed = f"at least {min_period_s}"
    raise InvalidParameterValue(f"The parameter {name} must be {allowed} seconds (it is {period}).")


def statistic_name(value: Any, name: str) -> str:
    """A statistic CloudWatch knows and moorage computes: one of STATISTICS or a percentile pNN."""
    if isinstance(value, str) and (value in STATISTICS or percentile_name(value) is not None):
        return value
    raise InvalidParameterValue(
        f"The parameter {name} must be one of {', '.join(STATISTICS)} or a percentile such as p99 "
        f"(got {value!r}; moorage does not compute trimmed means, IQM or other extended statistics)."
    )


_DIMENSION_NAME = re.compile(r"[^:]{1,255}")


def dimensions(
    params: Params, name: str = "Dimensions", *, values_required: bool = True
) -> list[tuple[str, str | None]]:
    value = params.get(name) or []
    if not isinstance(value, list) or len(value) > 30:
        raise InvalidParameterValue(f"The parameter {name} must be a list of at most 30 dimensions.")
    pairs: list[tuple[str, str | None]] = []
    for index, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise InvalidParameterValue(
                f"The parameter {name}.member.{index} must be a Name/Value structure."
            )
        dim_name = item.get("Name")
        dim_value = item.get("Value")
        if not isinstance(dim_name, str) or not _DIMENSION_NAME.fullmatch(dim_name):
            raise InvalidParameterValue(
                f"The parameter {name}.member.{index}.Name must be 1 to 255 characters."
            )
        if dim_value is None and values_required:
            raise MissingParameter(f"The parameter {name}.member.{index}.Value is required.")
        if dim_value is not None and (not isinstance(dim_value, str) or not 1 <= len(dim_value) <= 1024):
            raise InvalidParameterValue(
                f"The parameter {name}.member.{index}.Value must be 1 to 1024 characters."
            )
        pairs.append((dim_name, dim_value))
    if len({pair[0] for pair in pairs}) != len(pairs):
        raise InvalidParameterValue(f"The parameter {name} names a dimension more than once.")
    return pairs


def page_token(value: Any) -> dict[str, Any]:
    """A NextToken this server handed out (base64 JSON); anything else is InvalidNextToken."""
    if value is None:
        return {}
    try:
        decoded = json.loads(base64.urlsafe_b64decode(str(value).encode()))
    except (ValueError, binascii.Error):
        raise InvalidNextToken(f"The NextToken {value!r} is not one this server gave out.") from None
    if not isinstance(decoded, dict):
        raise InvalidNextToken(f"The NextToken {value!r} is not one this server gave out.")
    return decoded


def make_token(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()
