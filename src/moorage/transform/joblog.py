"""A transform job's own `[sagemaker logs]` lines, written into its log streams.

SageMaker's SDK (`transform(..., logs=True)`) tails only the streams `<job>/...` of the group
`/aws/sagemaker/TransformJobs`, and lists no more of them than the job has instances, so the job's lines
(its settings, each object done or failed and why) must share a stream with the workers' output: they
go to the stream of the job's first instance. Lines written before that instance exists (preparing the
model) wait in memory and are written when it starts; if none ever starts, they go to the stream of an
instance that tried (its load failure is there), else to `<job>/data-log`. Every line is also in the
server log, with the job's name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

__all__ = ["JobLog"]

log = logging.getLogger("moorage.transform")

_FALLBACK_STEM = "data-log"


class JobLog:
    def __init__(self, job: str, directory: Path) -> None:
        self.job = job
        self.directory = directory  # the job's stream files: <directory>/<instance-id>.log
        self.path: Path | None = None
        self._pending: list[str] = []

    def write(self, line: str) -> None:
        log.info("transform job %s: %s", self.job, line)
        # A stamp the logs reader parses (local time, as the workers' lines are).
        self._pending.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [sagemaker logs]: {line}\n")
        if self.path is not None:
            self._flush()

    def attach(self, path: Path) -> None:
        """From now on, write into `path` (the first instance's stream), starting with what waited."""
        self.path = path
        self._flush()

    def close(self) -> None:
        """Write what still waits: into a stream an instance left, else into `<job>/data-log`."""
        if not self._pending:
            return
        if self.path is None:
            with contextlib.suppress(OSError):
                tried = sorted(self.directory.glob("*.log"), key=lambda p: (p.stat().st_mtime_ns, p.name))
                self.path = tried[0] if tried else self.directory / f"{_FALLBACK_STEM}.log"
        self._flush()

    def _flush(self) -> None:
        assert self.path is not None
        data = "".join(self._pending).encode()
        self._pending.clear()
        with contextlib.suppress(OSError):  # a line that cannot be written is still in the server log
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
