"""bench/CHOICES.md: the measurements behind the data path's design, one section per script.

frontends.py and ipc.py each own one section, between `<!-- NAME:begin -->` and `<!-- NAME:end -->`;
rewriting one leaves the other, and the prose around them, as it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["CHOICES", "write_section"]

CHOICES = Path(__file__).resolve().parent / "CHOICES.md"


def write_section(
    name: str, table: str, machine: dict[str, Any], settings: str, path: Path = CHOICES
) -> None:
    body = (
        f"<!-- {name}:begin -->\n"
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores, "
        f"{machine['memory_gib']} GiB), Python {machine['python']}, load average {machine['loadavg_start']} "
        f"at the start; {settings}; medians over rounds.\n\n{table}\n"
        f"<!-- {name}:end -->"
    )
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*?<!-- {re.escape(name)}:end -->", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text)
    else:
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{body}\n"
    path.write_text(text.lstrip("\n"))
