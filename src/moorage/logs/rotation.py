"""A size cap on every log file under the logs directory, so a chatty handler cannot fill the disk.

Workers hold their instance's log open with O_APPEND for their whole life (the fork server and the
deployment log append too), so renaming the file would not stop them writing to it. The server
therefore rotates by copy-truncate: when `<stem>.log` reaches the cap, its bytes are copied to
`<stem>.log.<base>` (`base`: the stream position of its first byte, so pagination tokens stay valid
across a rotation), the live file is truncated (the writers' next append lands at offset 0), and the
previous generation is deleted. A stream thus keeps at most about twice the cap on disk, plus what
is written between two sweeps. Lines written between the end of the copy and the truncation (a few
microseconds) are lost; that is the usual price of copy-truncate, and acceptable for logs.

Readers and the rotation share one readers-writer lock, so no read sees a half-rotated stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from moorage.logs.layout import rotated_base

__all__ = ["DEFAULT_MAX_BYTES", "SWEEP_INTERVAL_S", "LogRotator", "ReadWriteLock", "rotate_file"]

log = logging.getLogger("moorage.logs")

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
SWEEP_INTERVAL_S = 5.0
_TMP = re.compile(r"(?P<name>.+\.log)\.(?P<base>\d{1,20})\.tmp")


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back so it cannot starve."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            self._condition.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


def _generations(path: Path) -> list[tuple[int, Path]]:
    """The rotated generations of `path`, oldest first."""
    found = []
    for entry in os.scandir(path.parent):
        rotated = rotated_base(entry.name)
        if rotated is not None and f"{rotated[0]}.log" == path.name and entry.is_file(follow_symlinks=False):
            found.append((rotated[1], Path(entry.path)))
    return sorted(found)


def rotate_file(path: Path, lock: ReadWriteLock) -> bool:
    """Copy-truncate `path` into its next generation and drop the older ones; False if it vanished."""
    generations = _generations(path)
    if generations:
        newest_base, newest = generations[-1]
        base = newest_base + newest.stat().st_size
    else:
        base = 0
    tmp = path.with_name(f"{path.name}.{base}.tmp")
    try:
        source = open(path, "rb")  # noqa: SIM115 (closed below, after the truncation)
    except FileNotFoundError:
        return False
    with source, open(tmp, "w+b") as target:
        shutil.copyfileobj(source, target, 1024 * 1024)
        with lock.writing():
            # What was appended during the copy, then the truncation at once: the window for loss.
            shutil.copyfileobj(source, target, 1024 * 1024)
            os.truncate(path, 0)
            if target.tell():
                target.seek(-1, os.SEEK_END)
                if target.read(1) != b"\n":
                    target.write(b"\n")  # a line cut by the copy ends here, so the next starts cleanly
            target.flush()
            os.replace(tmp, path.with_name(f"{path.name}.{base}"))
            for _, older in generations:
                older.unlink(missing_ok=True)
    return True


def _finish_interrupted(directory: Path, name: str, lock: ReadWriteLock) -> None:
    """A `.tmp` left by a rotation cut short: put it in place if it is the newest, else drop it."""
    match = _TMP.fullmatch(name)
    if match is None:
        return
    tmp = directory / name
    live = directory / match["name"]
    newest = max((base for base, _ in _generations(live)), default=-1)
    with lock.writing():
        if int(match["base"]) > newest:
            os.replace(tmp, directory / f"{match['name']}.{match['base']}")
        else:
            tmp.unlink(missing_ok=True)


class LogRotator:
    """Keeps every `*.log` under the logs directory below `max_bytes`, sweeping periodically."""

    def __init__(self, logs_dir: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.logs_dir = logs_dir
        self.max_bytes = max_bytes
        self.lock = ReadWriteLock()

    def sweep(self) -> list[Path]:
        """Rotate every log file at or over the cap; returns the files rotated."""
        rotated = []
        for directory, _, names in os.walk(self.logs_dir):  # does not follow symbolic links
            for name in names:
                path = Path(directory) / name
                if name.endswith(".tmp"):
                    _finish_interrupted(Path(directory), name, self.lock)
                    continue
                if name.endswith(".log"):
                    self._drop_stale_generations(path)
                    if self._over_cap(path) and rotate_file(path, self.lock):
                        rotated.append(path)
        return rotated

    def _over_cap(self, path: Path) -> bool:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size >= self.max_bytes

    def _drop_stale_generations(self, path: Path) -> None:
        """Only the newest generation is kept (a rotation cut short may leave an older one)."""
        generations = _generations(path)
        if len(generations) > 1:
            with self.lock.writing():
                for _, older in generations[:-1]:
                    older.unlink(missing_ok=True)

    async def run(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        """Sweep now and then every `interval_s` until cancelled; a failed sweep is logged and retried."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                for path in await loop.run_in_executor(None, self.sweep):
                    log.info("rotated %s (over %d bytes)", path, self.max_bytes)
            except OSError:
                log.exception(
                    "rotating the logs under %s failed; retrying in %.0f s", self.logs_dir, interval_s
                )
            await asyncio.sleep(interval_s)
