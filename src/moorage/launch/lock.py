"""One server per data dir: the lock `moorage serve` takes before it starts anything.

Two servers on one data dir would both drive the same endpoints and write the same store. The lock is
taken first, before the fork server begins importing torch, so a second server on a busy data dir
says so at once instead of after seconds of work. The lock file's descriptor is not inherited by the
processes the server starts (Python opens files close-on-exec), so a worker that outlives a killed
server never holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from moorage.errors import ConfigError

__all__ = ["data_dir_lock"]

LOCK_NAME = "server.lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Create `data_dir` (private to this user) and hold its lock until the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    lock_file = (data_dir / LOCK_NAME).open("a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise ConfigError(f"Another moorage server is already using the data dir {data_dir}.") from None
    try:
        yield
    finally:
        lock_file.close()
