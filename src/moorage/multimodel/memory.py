"""What one model's worker holds in memory alone: its private pages, which a multi-model instance counts
against its budget. Read from /proc where the worker runs: by the server for a local worker (by pid),
by the Ray actor itself on whichever node it was placed (the server cannot read another machine's /proc).
"""

from __future__ import annotations

__all__ = ["private_bytes"]


def private_bytes(pid: int | None) -> int:
    """The memory only this process holds (its pages not shared with the fork server); 0 when unknown."""
    if pid is None:
        return 0
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return total
