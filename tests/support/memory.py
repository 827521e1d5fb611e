"""A process's resident memory as the kernel reports it, for tests that bound the server's peak."""

from __future__ import annotations

from pathlib import Path

__all__ = ["memory_kib"]


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak since the process started) of process `pid`, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields
