"""The async inference queue on disk: one row per accepted request, in its own SQLite file.

Durability is the room's invariant: InvokeEndpointAsync answers 202 only after the request's row is
committed (WAL, `synchronous=FULL`), so a `kill -9` at any moment loses no accepted request. A row
goes `queued` → `running` (its attempts counted) → `notify` (its result object is published; the
notification is still owed) → deleted. A request whose result has a topic to notify first gets its
`outcome` (the notification, and where its object goes) committed while still `running`, before the
object is published. A restart finds every row that is not deleted and takes it up again where it was:
`queued` and `running` rows are run again (at least once, after a check that their result object is not
already published; one found published at its `outcome`'s location is only notified), `notify` rows are
only notified. The queue has its own file
(`async.sqlite3` in the data dir) so its per-request writes never wait behind the control plane's.

Every write goes through one writer thread that commits whatever is waiting together (commits.py):
each method returns a future that resolves once its write is on disk. The dispatcher waits on the ones
the invariant needs (the insert before the 202, the `outcome` before the result object is published)
and lets the others (`running`, back to `queued`, `notify`, the delete) ride along with the next commit.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.asyncinf.commits import GroupCommitter
from moorage.asyncinf.config import AsyncConfig
from moorage.sqlite_wal import WalFile, open_wal

__all__ = ["AsyncRequest", "QueueStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS async_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, endpoint TEXT NOT NULL,
    inference_id TEXT NOT NULL, received REAL NOT NULL, ttl_s REAL NOT NULL, timeout_s REAL NOT NULL,
    content_type TEXT, accept TEXT, custom_attributes TEXT, input_location TEXT, body BLOB,
    output_location TEXT NOT NULL, failure_location TEXT NOT NULL, config TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, outcome TEXT)
"""
_COLUMNS = (
    "seq, id, endpoint, inference_id, received, ttl_s, timeout_s, content_type, accept, custom_attributes, "
    "input_location, output_location, failure_location, config, state, attempts, outcome"
)


@dataclass(frozen=True)
class AsyncRequest:
    """One accepted request, without its inline body (read only when it runs)."""

    seq: int
    id: str  # the queue's own id: names the default result objects
    endpoint: str
    inference_id: str
    received: float  # epoch seconds (TTL outlives restarts)
    ttl_s: float
    timeout_s: float
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    input_location: str | None  # None: the body is inline in the row
    output_location: str
    failure_location: str
    config: AsyncConfig
    state: str = "queued"
    attempts: int = 0
    outcome: dict[str, Any] | None = None  # the notification owed once the result object is published


class QueueStore:
    def __init__(self, path: Path) -> None:
        self._file = WalFile(path, "async queue store", _SCHEMA)
        self._commits = GroupCommitter(self._file)
        self._reader = open_wal(path)  # reads never wait for the writer's commits (WAL)
        self._read_lock = threading.Lock()

    def close(self) -> None:
        """Commit what was submitted, then close the file."""
        self._commits.close()
        with self._read_lock:
            self._reader.close()
        self._file.close()

    def _read(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, parameters).fetchall()

    def add(self, request: AsyncRequest, body: bytes | None) -> Future[AsyncRequest]:
        """Commit an accepted request; resolves, once it is on disk, to it with its queue position (`seq`)."""

        def write(conn: sqlite3.Connection) -> AsyncRequest:
            cursor = conn.execute(
                "INSERT INTO async_requests (id, endpoint, inference_id, received, ttl_s, timeout_s, "
                "content_type, accept, custom_attributes, input_location, body, output_location, "
                "failure_location, config, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued')",
                (
                    request.id,
                    request.endpoint,
                    request.inference_id,
                    request.received,
                    request.ttl_s,
                    request.timeout_s,
                    request.content_type,
                    request.accept,
                    request.custom_attributes,
                    request.input_location,
                    body,
                    request.output_location,
                    request.failure_location,
                    json.dumps(request.config.to_json()),
                ),
            )
            assert cursor.lastrowid is not None
            return dataclasses.replace(request, seq=cursor.lastrowid)

        return self._commits.submit(write)

    def unfinished(self) -> list[AsyncRequest]:
        """Every request not yet deleted, oldest first (what a restart takes up again)."""
        return [_request(row) for row in self._read(f"SELECT {_COLUMNS} FROM async_requests ORDER BY seq")]

    def body(self, request_id: str) -> bytes:
        rows = self._read("SELECT body FROM async_requests WHERE id = ?", (request_id,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else b""

    def start(self, request_id: str) -> Future[int]:
        """Mark a request running; resolves to how many times it had been started before."""

        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT attempts FROM async_requests WHERE id = ?", (request_id,)).fetchone()
            conn.execute(
                "UPDATE async_requests SET state = 'running', attempts = attempts + 1 WHERE id = ?",
                (request_id,),
            )
            return int(row[0]) if row is not None else 0

        return self._commits.submit(write)

    def requeue(self, request_id: str) -> Future[None]:
        return self._update("UPDATE async_requests SET state = 'queued' WHERE id = ?", (request_id,))

    def owes(self, request_id: str, outcome: dict[str, Any]) -> Future[None]:
        """The notification the request owes once its result object is published (`outcome`: its
        `topic`, `message` and the object's `location`). Waited on before the object is published, so a
        restart that finds the object at `location` sends it; the state is left as it is."""
        return self._update(
            "UPDATE async_requests SET outcome = ? WHERE id = ?", (json.dumps(outcome), request_id)
        )

    def published(self, request_id: str) -> Future[None]:
        """The result object is published and the notification in `outcome` is still owed: a restart
        sends it without looking for the object; the inline body is no longer needed."""
        return self._update(
            "UPDATE async_requests SET state = 'notify', body = NULL WHERE id = ?", (request_id,)
        )

    def finish(self, request_id: str) -> Future[None]:
        return self._update("DELETE FROM async_requests WHERE id = ?", (request_id,))

    def _update(self, sql: str, parameters: tuple[Any, ...]) -> Future[None]:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(sql, parameters)

        return self._commits.submit(write)


def _request(row: tuple[Any, ...]) -> AsyncRequest:
    values = dict(zip([name.strip() for name in _COLUMNS.split(",")], row, strict=True))
    values["config"] = AsyncConfig.from_stored(json.loads(values["config"]))
    values["outcome"] = json.loads(values["outcome"]) if values["outcome"] else None
    return AsyncRequest(**values)
