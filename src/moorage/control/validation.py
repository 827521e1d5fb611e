"""Server-side input validation against botocore's SageMaker model, with SageMaker's messages.

botocore checks only required members, types and minimums before sending (spec §3.1); maxima,
`pattern` and `enum` reach the server unchecked, and raw JSON clients can send anything at all. So
every operation's input is checked here against the same shapes (`sagemaker/2017-07-24`), and every
violation is reported the way SageMaker's Coral front end does (spec §3.2):

    2 validation errors detected: Value 'a_b' at 'endpointName' failed to satisfy constraint: Member
    must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}; Value ...

Member paths are camelCase with 1-based list indexes (`productionVariants.1.member.modelName`).
A few members get moorage's own rule instead of the model's (`_OVERRIDES`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from moorage.errors import ValidationException

__all__ = ["coral_message", "operation_model", "output_members", "render_value", "validate"]


@functools.cache
def _service_model(service: str = "sagemaker") -> ServiceModel:
    # Loading the model costs about 0.1 s; do it once, on first use, never at import.
    return botocore.session.get_session().get_service_model(service)


def operation_model(operation: str, service: str = "sagemaker") -> OperationModel:
    """An operation of botocore's model of `service` (SageMaker's unless told otherwise)."""
    return _service_model(service).operation_model(operation)


@functools.cache
def output_members(operation: str) -> frozenset[str]:
    """The member names of an operation's output (what Describe* may echo back from a request)."""
    shape = operation_model(operation).output_shape
    return frozenset(shape.members) if isinstance(shape, StructureShape) else frozenset()


def validate(operation: str, params: Mapping[str, Any], service: str = "sagemaker") -> dict[str, Any]:
    """The input as accepted: unknown members dropped, timestamps as epoch seconds.

    Raises ValidationException listing every violation at once, as SageMaker does.
    """
    shape = operation_model(operation, service).input_shape
    checker = _Checker()
    cleaned = checker.structure(shape, params, "") if shape is not None else {}
    if checker.errors:
        raise ValidationException(coral_message(checker.errors))
    assert isinstance(cleaned, dict)
    return cleaned


def coral_message(errors: list[str]) -> str:
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} validation {noun} detected: " + "; ".join(errors)


def render_value(value: Any) -> str:
    """A value as Coral prints it in "Value '...' at ...": Java's toString of the parsed member."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(render_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={render_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def _violation(value: Any, path: str, constraint: str) -> str:
    shown = "null" if value is None else f"'{render_value(value)}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"


# Members whose rule is moorage's own, keyed by (structure shape, member). Each returns the violated
# constraints of a string value (empty when it is fine); length limits from the model still apply.
StringRule = Callable[[str], list[str]]

# ModelDataUrl: SageMaker takes s3:// and https:// only; moorage also fetches http:// and reads
# file:// URLs and absolute local paths (docs/compatibility.md).
_MODEL_DATA_URL_PATTERN = r"^((https?|s3)://([^/]+)/?(.*)|file://.+|/.*)"


def _model_data_url_rule(value: str) -> list[str]:
    if re.fullmatch(_MODEL_DATA_URL_PATTERN[1:], value, re.DOTALL):
        return []
    return [f"Member must satisfy regular expression pattern: {_MODEL_DATA_URL_PATTERN}"]


@functools.cache
def _instance_types() -> tuple[str, ...]:
    # SageMaker's instance types, plus the SDK's local-mode names, which moorage runs on this host.
    return (*_service_model().shape_for("ProductionVariantInstanceType").enum, "local", "local_gpu")


def _instance_type_rule(value: str) -> list[str]:
    types = _instance_types()
    if value in types:
        return []
    return [f"Member must satisfy enum value set: [{', '.join(types)}]"]


_OVERRIDES: dict[tuple[str, str], StringRule] = {
    ("ContainerDefinition", "ModelDataUrl"): _model_data_url_rule,
    ("ProductionVariant", "InstanceType"): _instance_type_rule,
}


def _camel(member: str) -> str:
    return member[:1].lower() + member[1:]


def _join(path: str, member: str) -> str:
    return f"{path}.{_camel(member)}" if path else _camel(member)


class _Checker:
    """One walk over an input: collects every violation and returns the cleaned value."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, value: Any, path: str, constraint: str) -> None:
        self.errors.append(_violation(value, path, constraint))

    def value(self, shape: Shape, value: Any, path: str, rule: StringRule | None = None) -> Any:
        kind = shape.type_name
        if isinstance(shape, StructureShape):
            return self.structure(shape, value, path)
        if isinstance(shape, ListShape):
            return self.list_value(shape, value, path)
        if isinstance(shape, MapShape):
            return self.map_value(shape, value, path)
        if kind == "string":
            if not isinstance(value, str):
                self.fail(value, path, "Member must be a string")
                return value
            for constraint in self.string_constraints(shape, value, rule):
                self.fail(value, path, constraint)
            return value
        if kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(value, path, "Member must be an integer")
                return value
            self.range(shape, value, path)
            return value
        if kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                self.fail(value, path, "Member must be a finite number")
                return value
            self.range(shape, value, path)
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                self.fail(value, path, "Member must be a boolean")
            return value
        if kind == "timestamp":
            seconds = _epoch_seconds(value)
            if seconds is None:
                self.fail(value, path, "Member must be a timestamp (epoch seconds or ISO 8601)")
                return value
            return seconds
        return value  # blob and document members are taken as sent

    def structure(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self.fail(value, path, "Member must be a structure (a JSON object)")
            return value
        assert isinstance(shape, StructureShape)
        required = set(shape.required_members)
        cleaned: dict[str, Any] = {}
        for member, member_shape in shape.members.items():
            item = value.get(member)
            member_path = _join(path, member)
            if item is None:
                if member in required:
                    self.fail(None, member_path, "Member must not be null")
                continue
            rule = _OVERRIDES.get((shape.name, member))
            cleaned[member] = self.value(member_shape, item, member_path, rule)
        return cleaned

    def list_value(self, shape: ListShape, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            self.fail(value, path, "Member must be a list")
            return value
        self.size(shape, value, path)
        return [
            self.value(shape.member, item, f"{path}.{index}.member") for index, item in enumerate(value, 1)
        ]

    def map_value(self, shape: MapShape, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            self.fail(value, path, "Member must be a map (a JSON object)")
            return value
        self.size(shape, value, path)
        scalar_values = shape.value.type_name == "string"
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            key_problems = self.string_constraints(shape.key, key, None)
            if key_problems:
                self.fail(value, path, f"Map keys must satisfy constraint: [{', '.join(key_problems)}]")
            if scalar_values:
                if not isinstance(item, str):
                    self.fail(value, path, "Map value must satisfy constraint: [Member must be a string]")
                    continue
                value_problems = self.string_constraints(shape.value, item, None)
                if value_problems:
                    self.fail(
                        value, path, f"Map value must satisfy constraint: [{', '.join(value_problems)}]"
                    )
                cleaned[key] = item
            else:
                cleaned[key] = self.value(shape.value, item, f"{path}.{key}")
        return cleaned

    @staticmethod
    def string_constraints(shape: Shape, value: str, rule: StringRule | None) -> list[str]:
        meta = shape.metadata
        problems: list[str] = []
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"Member must have length less than or equal to {meta['max']}")
        if "min" in meta and len(value) < meta["min"]:
            problems.append(f"Member must have length greater than or equal to {meta['min']}")
        if rule is not None:
            return problems + rule(value)
        pattern = meta.get("pattern")
        if pattern is not None and _compiled(pattern).fullmatch(value) is None:
            shown = pattern if pattern.startswith("^") else f"^{pattern}"
            problems.append(f"Member must satisfy regular expression pattern: {shown}")
        enum = shape.enum if hasattr(shape, "enum") else []
        if enum and value not in enum:
            problems.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
        return problems

    def range(self, shape: Shape, value: float, path: str) -> None:
        meta = shape.metadata
        if "max" in meta and value > meta["max"]:
            self.fail(value, path, f"Member must have value less than or equal to {meta['max']}")
        if "min" in meta and value < meta["min"]:
            self.fail(value, path, f"Member must have value greater than or equal to {meta['min']}")

    def size(self, shape: Shape, value: list[Any] | Mapping[str, Any], path: str) -> None:
        meta = shape.metadata
        if "max" in meta and len(value) > meta["max"]:
            self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")
        if "min" in meta and len(value) < meta["min"]:
            self.fail(value, path, f"Member must have length greater than or equal to {meta['min']}")


def _epoch_seconds(value: Any) -> float | None:
    """botocore sends timestamps as epoch seconds (spec §3.1); raw clients may send ISO 8601."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


# Java's Unicode classes, which SageMaker's tag patterns use, spelled for Python's `re`.
_UNICODE_CLASSES = {
    "L": r"[^\W\d_]",  # letters
    "N": r"\d",  # digits
    "Z": r"[^\S\t\n\v\f\r\x1c-\x1f\x85]",  # space, line and paragraph separators
}
_CHAR_CLASS = re.compile(r"\[((?:\\.|[^\]\\])*)\]")
_PROPERTY = re.compile(r"\\p\{(\w+)\}")


# Java spells a code point past U+FFFF as its UTF-16 surrogate pair; Python's `re` sees code points.
_SUPPLEMENTARY = (r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
_PRINT = r"[\x20-\x7E]"  # Java's POSIX \p{Print} (Application Auto Scaling's PolicyName)


def _java_to_python(pattern: str) -> str:
    r"""Rewrite each character class that holds `\p{X}` as an alternation Python's `re` can run."""
    pattern = pattern.replace(*_SUPPLEMENTARY)
    if pattern == r"\p{Print}+":
        return _PRINT + "+"

    def rewrite(match: re.Match[str]) -> str:
        body = match.group(1)
        if "\\p{" not in body:
            return match.group(0)
        if body.startswith("^"):
            raise ValueError(f"negated Unicode classes are not supported: {pattern}")
        names = _PROPERTY.findall(body)
        rest = _PROPERTY.sub("", body)
        options = [_UNICODE_CLASSES[name] for name in names]
        if rest:
            options.insert(0, f"[{rest}]")
        return "(?:" + "|".join(options) + ")"

    return _CHAR_CLASS.sub(rewrite, pattern)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(_java_to_python(pattern))
