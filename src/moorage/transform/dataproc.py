"""DataProcessing: InputFilter, JoinSource=Input and OutputFilter on CSV and JSON records (spec §c.2).

SageMaker takes JSONPath for both filters. Moorage implements the subset its documentation uses and
refuses anything else when the job is created (never silently at run time):

    $                 the whole record
    $.a.b  $['a']     a member (of an object)
    $['a','b']        several members: an object with just those
    $[2]  $[-1]       one element (of an array, or of a CSV row's columns)
    $[0,2]  $[1:]  $[:3]  $[1:3]  $[*]    several elements: an array (a CSV row)

CSV records are one row each (Python's csv module, so quoted commas survive); JSON records are one
JSON value each (JSON Lines, or a whole JSON object with SplitType None). With JoinSource=Input the
original record (before InputFilter) is joined with the answer: a JSON object gets a
`SageMakerOutput` member, any other JSON value becomes `{"SageMakerInput": …, "SageMakerOutput": …}`,
and a CSV row gets the answer's columns appended.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DataProcessing", "FilterError", "JsonPath", "RecordFormat", "record_format"]

RecordFormat = Literal["csv", "json"]

_JSON_TYPES = frozenset({"application/json", "application/jsonlines", "application/x-jsonlines"})


class FilterError(ValueError):
    """A record the filters or the join cannot handle (not CSV/JSON, a missing member)."""


def record_format(content_type: str | None) -> RecordFormat | None:
    """How records of this ContentType are parsed for filters and joins; None: not CSV or JSON."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base == "text/csv":
        return "csv"
    if base in _JSON_TYPES:
        return "json"
    return None


_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
      | \[(?P<keys>\s*'[^']*'\s*(?:,\s*'[^']*'\s*)*)\]
      | \[(?P<slice>\s*-?\d*\s*:\s*-?\d*\s*)\]
      | \[(?P<indexes>\s*-?\d+\s*(?:,\s*-?\d+\s*)*)\]
      | \[(?P<star>\s*\*\s*)\]""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Step:
    kind: Literal["key", "keys", "index", "indexes", "slice"]
    keys: tuple[str, ...] = ()
    indexes: tuple[int, ...] = ()
    start: int | None = None
    stop: int | None = None


class JsonPath:
    """One parsed filter expression; `apply` selects from a parsed record."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = expression.strip()
        if not text.startswith("$"):
            raise ValueError(f"{expression!r} is not a JSONPath expression: it must start with '$'")
        steps: list[_Step] = []
        position = 1
        while position < len(text):
            match = _STEP.match(text, position)
            if match is None:
                raise ValueError(
                    f"{expression!r}: moorage supports $, .name, ['name'], ['a','b'], [n], [n,m], "
                    f"[start:end] and [*]; cannot read {text[position:]!r}"
                )
            steps.append(_step(match))
            position = match.end()
        self.steps = tuple(steps)

    def apply(self, value: Any) -> Any:
        for step in self.steps:
            value = _select(step, value, self.expression)
        return value


def _step(match: re.Match[str]) -> _Step:
    if match["name"] is not None:
        return _Step("key", keys=(match["name"],))
    if match["keys"] is not None:
        keys = tuple(re.findall(r"'([^']*)'", match["keys"]))
        return _Step("key", keys=keys) if len(keys) == 1 else _Step("keys", keys=keys)
    if match["slice"] is not None:
        first, _, last = match["slice"].partition(":")
        return _Step(
            "slice",
            start=int(first) if first.strip() else None,
            stop=int(last) if last.strip() else None,
        )
    if match["indexes"] is not None:
        indexes = tuple(int(part) for part in match["indexes"].split(","))
        return _Step("index", indexes=indexes) if len(indexes) == 1 else _Step("indexes", indexes=indexes)
    return _Step("slice")  # [*]


def _select(step: _Step, value: Any, expression: str) -> Any:
    if step.kind in ("key", "keys"):
        if not isinstance(value, dict):
            raise FilterError(f"{expression}: selects a member, but the record is not a JSON object")
        missing = [key for key in step.keys if key not in value]
        if missing:
            raise FilterError(f"{expression}: the record has no member {missing[0]!r}")
        return value[step.keys[0]] if step.kind == "key" else {key: value[key] for key in step.keys}
    if not isinstance(value, list):
        raise FilterError(f"{expression}: selects elements, but the record is not an array or CSV row")
    if step.kind == "slice":
        return value[step.start : step.stop]
    try:
        picked = [value[index] for index in step.indexes]
    except IndexError:
        raise FilterError(f"{expression}: the record has only {len(value)} elements") from None
    return picked[0] if step.kind == "index" else picked


@dataclass(frozen=True)
class DataProcessing:
    """The job's DataProcessing, parsed once; `None` members do nothing."""

    input_filter: JsonPath | None
    output_filter: JsonPath | None
    join: bool
    fmt: RecordFormat | None

    @classmethod
    def from_request(cls, request: dict[str, Any], content_type: str | None) -> DataProcessing:
        """ValueError (the job is refused) for an expression outside the subset, or filters on data
        that is neither CSV nor JSON."""
        given = request or {}

        def parse(member: str) -> JsonPath | None:
            text = given.get(member)
            if text is None or text.strip() in ("", "$"):
                return None  # "$" selects everything: the same as no filter
            try:
                return JsonPath(text)
            except ValueError as exc:
                raise ValueError(f"{member} {exc}") from None

        processing = cls(
            input_filter=parse("InputFilter"),
            output_filter=parse("OutputFilter"),
            join=given.get("JoinSource") == "Input",
            fmt=record_format(content_type),
        )
        if processing.active and processing.fmt is None:
            raise ValueError(
                "InputFilter, OutputFilter and JoinSource=Input need TransformInput.ContentType text/csv, "
                f"application/json or application/jsonlines; the job's ContentType is {content_type!r}"
            )
        return processing

    @property
    def active(self) -> bool:
        return self.input_filter is not None or self.output_filter is not None or self.join

    @property
    def per_record_output(self) -> bool:
        """Whether each answer must be matched to its record (a join, or a filter on the output)."""
        return self.join or self.output_filter is not None

    def filter_input(self, record: bytes) -> bytes:
        """The record as it is sent to the model (its line ending kept)."""
        if self.input_filter is None:
            return record
        body, ending = _split_ending(record)
        return self._dump(self.input_filter.apply(self._load(body))) + ending

    def output(self, record: bytes, answer: bytes) -> bytes:
        """One record's output line (without line ending): the answer, joined and filtered."""
        if not self.per_record_output:
            return answer
        assert self.fmt is not None
        if self.fmt == "csv":
            value: Any = _csv_row(answer)
            if self.join:
                value = _csv_row(_split_ending(record)[0]) + value
        else:
            value = _json_or_text(answer)
            if self.join:
                original = self._load(_split_ending(record)[0])
                if isinstance(original, dict):
                    value = {**original, "SageMakerOutput": value}
                else:
                    value = {"SageMakerInput": original, "SageMakerOutput": value}
        if self.output_filter is not None:
            value = self.output_filter.apply(value)
        return self._dump(value)

    def _load(self, body: bytes) -> Any:
        if self.fmt == "csv":
            return _csv_row(body)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise FilterError(f"the record is not valid JSON: {exc}") from None

    def _dump(self, value: Any) -> bytes:
        if self.fmt == "csv":
            cells = value if isinstance(value, list) else [value]
            out = io.StringIO()
            csv.writer(out, lineterminator="").writerow(cells)
            return out.getvalue().encode()
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _split_ending(record: bytes) -> tuple[bytes, bytes]:
    if record.endswith(b"\r\n"):
        return record[:-2], b"\r\n"
    if record.endswith(b"\n"):
        return record[:-1], b"\n"
    return record, b""


def _csv_row(data: bytes) -> list[str]:
    text = data.decode("utf-8", "replace").strip("\r\n")
    rows = list(csv.reader([text]))
    return rows[0] if rows else []


def _json_or_text(data: bytes) -> Any:
    text = data.decode("utf-8", "replace").strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_answer(answer: bytes, count: int) -> Sequence[bytes]:
    """A MultiRecord answer cut into one piece per record: its lines, or the items of a JSON array.

    FilterError when neither has exactly `count` pieces: a join needs one answer per record.
    """
    if count == 1:
        return [answer.rstrip(b"\r\n")]
    lines = answer.rstrip(b"\r\n").split(b"\n")
    if len(lines) == count:
        return [line.rstrip(b"\r") for line in lines]
    try:
        items = json.loads(answer)
    except ValueError:
        items = None
    if isinstance(items, list) and len(items) == count:
        return [json.dumps(item, separators=(",", ":")).encode() for item in items]
    raise FilterError(
        f"the answer to {count} records has {len(lines)} lines and is not a JSON array of {count} items; "
        "JoinSource=Input and OutputFilter need one answer per record"
    )
