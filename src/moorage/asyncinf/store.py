"""The async inference queue on disk: one row per accepted request, in its own SQLite file.

Durability is the room's invariant: InvokeEndpointAsync answers 202 only after the request's row is
committed (WAL, `synchronous=FULL`), so a `kill -9` at any moment loses no accepted request. A row
goes `queued` → `running` (its attempts counted before the model sees it) → `notify` (its result object
is published; the notification is still owed) → deleted. A restart finds every row that is not deleted
and takes it up again where it was: `queued` and `running` rows are run again (at least once),
`notify` rows are only notified. The queue has its own file (`async.sqlite3` in the data dir) so its
per-request writes never wait behind the control plane's.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.asyncinf.config import AsyncConfig
from moorage.sqlite_wal import WalFile

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
    outcome: dict[str, Any] | None = None  # in state `notify`: what the notification says


class QueueStore:
    def __init__(self, path: Path) -> None:
        self._file = WalFile(path, "async queue store", _SCHEMA)

    def close(self) -> None:
        self._file.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.write()

    def add(self, request: AsyncRequest, body: bytes | None) -> AsyncRequest:
        """Commit an accepted request; returns it with its queue position (`seq`)."""
        with self._write() as conn:
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
            seq = cursor.lastrowid
        assert seq is not None
        return AsyncRequest(**{**request.__dict__, "seq": seq})

    def unfinished(self) -> list[AsyncRequest]:
        """Every request not yet deleted, oldest first (what a restart takes up again)."""
        with self._write() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM async_requests ORDER BY seq").fetchall()
        return [_request(row) for row in rows]

    def body(self, request_id: str) -> bytes:
        with self._write() as conn:
            row = conn.execute("SELECT body FROM async_requests WHERE id = ?", (request_id,)).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else b""

    def start(self, request_id: str) -> int:
        """Mark a request running; returns how many times it had been started before."""
        with self._write() as conn:
            row = conn.execute("SELECT attempts FROM async_requests WHERE id = ?", (request_id,)).fetchone()
            conn.execute(
                "UPDATE async_requests SET state = 'running', attempts = attempts + 1 WHERE id = ?",
                (request_id,),
            )
        return int(row[0]) if row is not None else 0

    def requeue(self, request_id: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE async_requests SET state = 'queued' WHERE id = ?", (request_id,))

    def published(self, request_id: str, outcome: dict[str, Any]) -> None:
        """The result object is published; the notification it owes is `outcome`."""
        with self._write() as conn:
            conn.execute(
                "UPDATE async_requests SET state = 'notify', outcome = ?, body = NULL WHERE id = ?",
                (json.dumps(outcome), request_id),
            )

    def finish(self, request_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM async_requests WHERE id = ?", (request_id,))


def _request(row: tuple[Any, ...]) -> AsyncRequest:
    values = dict(zip([name.strip() for name in _COLUMNS.split(",")], row, strict=True))
    values["config"] = AsyncConfig.from_stored(json.loads(values["config"]))
    values["outcome"] = json.loads(values["outcome"]) if values["outcome"] else None
    return AsyncRequest(**values)
