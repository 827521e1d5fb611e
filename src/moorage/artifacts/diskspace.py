"""Free disk space as a budget: nothing moorage extracts or downloads may eat into the reserve.

security-probe-2 row 40: a 10 MB archive expanded to 10 GiB and the only limit was the 50 GiB
per-archive cap. Before each member is written, its declared size (from the tar header, or the S3
object's size) must fit in the free space of the cache's file system minus MOORAGE_DISK_RESERVE_BYTES;
while bytes flow, the free space is checked again every `_RECHECK_BYTES`, so that concurrent
extractions and other writers cannot push the disk below the reserve either.
"""

from __future__ import annotations

import os
from pathlib import Path

from moorage.artifacts.sources import format_bytes
from moorage.errors import ArtifactError

__all__ = ["DiskGuard"]

_RECHECK_BYTES = 64 * 1024 * 1024


class DiskGuard:
    """Refuses writes under `path` that would leave less than `reserve` bytes free."""

    def __init__(self, path: Path, reserve: int, *, source: str) -> None:
        self._path = path
        self._reserve = reserve
        self._source = source
        self._unchecked = 0

    def require(self, size: int, name: str) -> None:
        """ArtifactError saying how much is missing when `size` more bytes would cross the reserve."""
        stats = os.statvfs(self._path)
        free = stats.f_bavail * stats.f_frsize
        short = size + self._reserve - free
        if short > 0:
            raise ArtifactError(
                f"not enough disk space for {self._source}: {name!r} needs {format_bytes(size)}, "
                f"{self._path} has {format_bytes(free)} free and MOORAGE_DISK_RESERVE_BYTES keeps "
                f"{format_bytes(self._reserve)} of it free, so the disk is {format_bytes(short)} "
                f"({short} bytes) short; free some space, delete unused models, or lower the reserve"
            )

    def written(self, size: int, name: str) -> None:
        """Account for bytes written; every `_RECHECK_BYTES` the reserve is checked again."""
        self._unchecked += size
        if self._unchecked >= _RECHECK_BYTES:
            self._unchecked = 0
            self.require(0, name)
