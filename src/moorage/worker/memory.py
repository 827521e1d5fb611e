"""A serverless variant's MemorySizeInMB as the worker's memory limit (spec §c.5).

RLIMIT_DATA is what an unprivileged process can set on itself (no cgroup needed). It counts every
private writable mapping, including what the worker inherited from the fork server (torch and
torchvision, about 1 GiB, shared copy-on-write and not the model's). So the limit is set above what
the worker holds when it starts: MemorySizeInMB is what the model may allocate on its own, and an
allocation past it raises MemoryError in the handler. When the limit cannot be set, the worker says
so on its log and runs without one.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Mapping

__all__ = ["SERVERLESS_MEMORY_ENV", "apply_serverless_memory"]

SERVERLESS_MEMORY_ENV = "MOORAGE_SERVERLESS_MEMORY_MB"
_MIB = 1024 * 1024


def _data_bytes() -> int:
    """VmData of this process: what RLIMIT_DATA counts."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise OSError("/proc/self/status has no VmData line")


def apply_serverless_memory(environment: Mapping[str, str]) -> int | None:
    """Set RLIMIT_DATA to what this worker holds plus MemorySizeInMB; the limit set, or None."""
    raw = environment.get(SERVERLESS_MEMORY_ENV)
    if not raw:
        return None
    try:
        limit = _data_bytes() + int(raw) * _MIB
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY and limit > hard:
            limit = hard
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    except (OSError, ValueError) as exc:
        print(
            f"moorage: WARNING: could not limit this serverless worker to MemorySizeInMB={raw} "
            f"(RLIMIT_DATA): {exc}; it runs without a memory limit",
            file=sys.stderr,
            flush=True,
        )
        return None
    return limit
