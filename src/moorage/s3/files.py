"""Blocking file work for the store: temp files that hash what they write, copies, directory fsyncs.

Everything here blocks and runs on an executor thread (see `offload`), never on the event loop.
An object's bytes reach disk as: a temp file written and hashed in large pieces → fsync → os.replace
into place → fsync of the directory; only then does the index make the object visible.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from moorage.s3.checksums import Hasher, new_hasher

__all__ = ["COPY_CHUNK", "FileSink", "fsync_dir", "offload", "remove_tree"]

COPY_CHUNK = 4 * 1024 * 1024

P = ParamSpec("P")
R = TypeVar("R")


async def offload(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run blocking disk or SQLite work on the loop's default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class FileSink:
    """A new file being written: every byte also goes through MD5 and the requested checksums."""

    def __init__(self, path: Path, *, algorithms: frozenset[str] = frozenset(), sha256: bool = False) -> None:
        self.path = path
        self._file = open(path, "xb", buffering=0)  # noqa: SIM115 (closed by finish/close)
        self.size = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256() if sha256 else None
        self.checksums: dict[str, Hasher] = {name: new_hasher(name) for name in algorithms}

    def write(self, data: bytes) -> None:
        self.md5.update(data)
        if self.sha256 is not None:
            self.sha256.update(data)
        for hasher in self.checksums.values():
            hasher.update(data)
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written or 0 :]
        self.size += len(data)

    def write_chunks(self, chunks: list[bytes]) -> None:
        self.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def copy_from(self, fd: int, start: int, length: int) -> None:
        """Append `length` bytes of the open file `fd`, from offset `start`."""
        offset, remaining = start, length
        while remaining > 0:
            data = os.pread(fd, min(COPY_CHUNK, remaining), offset)
            if not data:
                raise OSError("a stored file is shorter than its recorded size")
            self.write(data)
            offset += len(data)
            remaining -= len(data)

    def copy_file(self, source: Path) -> None:
        fd = os.open(source, os.O_RDONLY)
        try:
            self.copy_from(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Make the bytes durable and close the file."""
        if not self._file.closed:
            os.fsync(self._file.fileno())
            self._file.close()

    def close(self) -> None:
        self._file.close()

    def digests(self) -> dict[str, bytes]:
        return {name: hasher.digest() for name, hasher in self.checksums.items()}
