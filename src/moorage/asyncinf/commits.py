"""Group commit: the async queue's many small writes folded into one SQLite commit (one disk sync).

Writes arrive from many requests at once (each InvokeEndpointAsync's insert, each finished request's
delete). Committed one by one with `synchronous=FULL`, each costs a disk sync and they wait in line
behind each other on one thread. Here one thread owns the writes: each time it is free it takes every
write waiting, runs each in its own savepoint of one transaction and commits them together. A write's
future resolves only after that commit returned, so a caller that waits on it knows its write is
durable; a caller that does not wait (a state change a restart can do without) simply rides along with
the next commit. Writes are committed in the order they were submitted.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from moorage.sqlite_wal import WalFile

__all__ = ["GroupCommitter", "log_failure"]

log = logging.getLogger("moorage.asyncinf")
_T = TypeVar("_T")
_Write = tuple[Callable[[sqlite3.Connection], Any], "Future[Any]"]
MAX_BATCH = 512  # writes per commit: bounds one transaction's size, not how many may wait


class GroupCommitter:
    """The single writer of a `WalFile`: `submit` queues a write, the future says when it is durable."""

    def __init__(self, file: WalFile) -> None:
        self._file = file
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()  # orders `submit` against `close`: no write after the last commit
        self._thread = threading.Thread(target=self._run, name=f"{file.what} commits", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[sqlite3.Connection], _T]) -> Future[_T]:
        """Queue `write` (run inside the next commit's transaction); its future holds what it returned
        once that commit is on disk, or the error that stopped it (only its own savepoint is undone).
        A future cancelled before its commit began is not written."""
        future: Future[_T] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(sqlite3.ProgrammingError(f"the {self._file.what} is closed"))
            else:
                self._queue.put((write, future))
        return future

    def close(self) -> None:
        """Commit every write submitted so far, then stop the writer thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[_Write] = []
            while item is not None:
                if item[1].set_running_or_notify_cancel():
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
            if item is None:
                return

    def _commit(self, batch: list[_Write]) -> None:
        done: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self._file.write() as conn:
                for write, future in batch:
                    conn.execute("SAVEPOINT one")
                    try:
                        done.append((future, write(conn), None))
                    except Exception as exc:
                        conn.execute("ROLLBACK TO one")
                        done.append((future, None, exc))
                    conn.execute("RELEASE one")
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of this batch is on disk
            log.error("%s: a commit of %d writes failed: %s", self._file.what, len(batch), exc)
            for _, future in batch:
                future.set_exception(exc)
            return
        for future, value, error in done:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)


def log_failure(what: str) -> Callable[[Future[Any]], None]:
    """A done-callback for a write nobody waits on: its failure is logged (the row keeps its previous
    state, which a restart handles), never lost silently."""

    def report(future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("async queue: %s was not recorded: %s", what, future.exception())

    return report
