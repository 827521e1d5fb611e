"""How commands print: JSON for scripts (AWS's shapes, times as ISO 8601), aligned tables and short
ages ("3m", "2h") for people."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

__all__ = [
    "HelpFormatter",
    "add_output_option",
    "age",
    "human_size",
    "local_time",
    "print_json",
    "table",
    "without_metadata",
]


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs to the terminal, keeps example blocks (indented lines) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if len(lines) > 1 and any(line.startswith(" ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent
                    )
                )
        return "\n\n".join(paragraphs)


def add_output_option(parser: argparse.ArgumentParser, choices: Sequence[str] = ("text", "json")) -> None:
    parser.add_argument(
        "--output",
        choices=choices,
        default=choices[0],
        help=f"{choices[0]} for people (default) or json for scripts",
    )


def without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    """A boto3 answer without botocore's ResponseMetadata, as `aws ... --output json` prints it."""
    return {key: value for key, value in answer.items() if key != "ResponseMetadata"}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=_encode) + "\n")
    sys.stdout.flush()


def age(moment: datetime.datetime | float, now: datetime.datetime | None = None) -> str:
    """How long ago, in the largest whole unit: 45s, 3m, 2h, 5d."""
    if not isinstance(moment, datetime.datetime):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_size(size: int) -> str:
    """Bytes in the largest unit that keeps a number ≥ 1: 512 B, 2.9 kB, 97.4 MB (powers of 1000)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def local_time(moment: datetime.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
