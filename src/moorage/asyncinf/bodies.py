"""Where an async request's large input and answer wait on the server's side: one directory of files.

Why files: an input up to 1 GB must reach the worker, and the answer reach S3, without the server
holding either (issue 14 item 4). The input is copied from S3 into `<id>.in` here (in chunks, or by the
kernel for the embedded store), the local backend hard-links it into the worker's scratch dir (the only
directory its sandbox may write), and the worker's answer comes back as a file moved to `<id>.out`
(bench/CHOICES.md, "Large bodies", has the measurements behind the choice).

A reply file is written by the worker, which runs user code: it is opened without following a link and
read only if it is a plain file with no other name, so a worker cannot make the server publish a file
of the server's own (a symlink, or a hard link to one) as its answer. The directory is emptied when
the server starts (what a `kill -9` left) and each request's files are removed when it ends.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from moorage.artifacts.sources import CHUNK_BYTES

__all__ = ["BodyFiles", "ReplyFileError"]


class ReplyFileError(Exception):
    """The worker's answer file is missing or is not a plain file of its own; the message says which."""


class BodyFiles:
    def __init__(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)  # a previous run's leftovers
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory

    def input_path(self, request_id: str) -> Path:
        return self.directory / f"{request_id}.in"

    def reply_path(self, request_id: str) -> Path:
        return self.directory / f"{request_id}.out"

    def discard(self, request_id: str) -> None:
        for path in (self.input_path(request_id), self.reply_path(request_id)):
            path.unlink(missing_ok=True)

    def chunks(self, path: Path, limit: int | None = None) -> Iterator[bytes]:
        """The reply file's bytes in chunks (at most `limit` bytes when given); ReplyFileError when it is
        not a plain, singly linked file."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ReplyFileError(f"the worker's answer file cannot be opened ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise ReplyFileError("the worker's answer file is not a plain file of its own")
            left = info.st_size if limit is None else min(limit, info.st_size)
            while left > 0 and (chunk := handle.read(min(CHUNK_BYTES, left))):
                left -= len(chunk)
                yield chunk

    def head(self, path: Path, limit: int) -> bytes:
        """The first `limit` bytes of a reply file (for an error message or a notification)."""
        return b"".join(self.chunks(path, limit))
