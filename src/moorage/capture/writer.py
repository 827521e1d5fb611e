"""The capture buffer and the task that empties it into JSON Lines files, off the request path.

`offer` is all an invocation pays: an append to an in-memory list, bounded in bytes. A background
task takes everything waiting every `flush_s` (or as soon as `file_bytes` are waiting), groups it by
destination, endpoint, variant and hour, and writes one file per group (split at `file_bytes`) on its
own thread, through the storage classes batch transform and async inference use. The bytes of a
batch count against the buffer until its files are written, so a store that is slow or down fills
the buffer and later captures are dropped (counted in /metrics, logged), never requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Executor

from moorage.capture.metrics import CaptureMetrics
from moorage.capture.records import Captured, hour_prefix, record_line
from moorage.s3io import Storage

__all__ = ["CaptureWriter"]

log = logging.getLogger("moorage.capture")


class CaptureWriter:
    def __init__(
        self,
        storage: Storage,
        metrics: CaptureMetrics,
        executor: Executor,
        *,
        flush_s: float,
        file_bytes: int,
        buffer_bytes: int,
    ) -> None:
        self._storage = storage
        self._metrics = metrics
        self._executor = executor
        self._flush_s = flush_s
        self._file_bytes = file_bytes
        self._buffer_bytes = buffer_bytes
        self._waiting: list[Captured] = []
        self._held = 0  # bytes waiting or being written
        self._full_drops: dict[tuple[str, str], int] = defaultdict(int)  # since the last log line
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def offer(self, item: Captured) -> None:
        """Keep a sampled invocation for the next file, or drop it when the buffer is full."""
        size = item.size
        if self._held + size > self._buffer_bytes:
            self._metrics.dropped(item.endpoint, item.variant, "buffer_full")
            self._full_drops[(item.endpoint, item.variant)] += 1
            return
        self._waiting.append(item)
        self._held += size
        if self._held >= self._file_bytes:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="capture-writer")

    async def close(self, grace_s: float) -> None:
        """Write what is waiting (for up to `grace_s`), then stop."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush(), grace_s)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_s)
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        self._log_full_drops()
        if not self._waiting:
            return
        batch, self._waiting = self._waiting, []
        size = sum(item.size for item in batch)
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch)
        finally:
            self._held -= size

    def _log_full_drops(self) -> None:
        for (endpoint, variant), count in self._full_drops.items():
            log.warning(
                "data capture of endpoint %s variant %s dropped %d records: the capture buffer is full "
                "(%d bytes, MOORAGE_CAPTURE_BUFFER_BYTES) because %s is slower than the traffic or down",
                endpoint,
                variant,
                count,
                self._buffer_bytes,
                self._storage.where,
            )
        self._full_drops.clear()

    def _write(self, batch: list[Captured]) -> None:
        """On the writer's thread: a file per destination, endpoint, variant and hour, split at file_bytes."""
        groups: dict[tuple[str, str], list[Captured]] = defaultdict(list)
        for item in batch:
            groups[(item.config.bucket, hour_prefix(item))].append(item)
        for (bucket, prefix), items in groups.items():
            for lines in _files(items, self._file_bytes):
                self._write_file(bucket, prefix, items[0], lines)

    def _write_file(self, bucket: str, prefix: str, first: Captured, lines: list[bytes]) -> None:
        now = time.time()
        stamp = f"{time.strftime('%M-%S', time.gmtime(now))}-{int(now * 1000) % 1000:03d}"
        key = f"{prefix}/{stamp}-{uuid.uuid4()}.jsonl"  # minute-second-millisecond-uuid.jsonl
        try:
            output = self._storage.open_output(bucket, key, content_type="application/jsonl", kms_key_id=None)
            try:
                for line in lines:
                    output.write(line)
            except BaseException:
                output.abort()
                raise
            output.commit()
        except Exception as exc:  # StorageError, or anything else: the writer must keep going
            self._metrics.dropped(first.endpoint, first.variant, "store_error", len(lines))
            log.error(
                "data capture of endpoint %s variant %s dropped %d records: cannot write s3://%s/%s "
                "to %s: %s",
                first.endpoint,
                first.variant,
                len(lines),
                bucket,
                key,
                self._storage.where,
                exc,
            )
            return
        self._metrics.written(first.endpoint, first.variant, len(lines))


def _files(items: list[Captured], file_bytes: int) -> Iterator[list[bytes]]:
    lines: list[bytes] = []
    size = 0
    for item in items:
        line = record_line(item)
        if lines and size + len(line) > file_bytes:
            yield lines
            lines, size = [], 0
        lines.append(line)
        size += len(line)
    if lines:
        yield lines
