"""Transform jobs and the progress of each input object, in the server's SQLite file.

The tables live in the same `state.sqlite3` as the hosting resources (control/store.py), created here
idempotently, so one data dir still holds all hard state and a restart finds the jobs where they
were: an input object is `done` only after its output was published, so a `kill -9` loses at most the
objects in progress, which are done again whole. Same durability rules as control/store.py: WAL,
`synchronous=FULL`, every read-modify-write in `BEGIN IMMEDIATE`, records as JSON.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from moorage.control.arns import name_key
from moorage.control.records import ContainerSpec
from moorage.sqlite_wal import WalFile
from moorage.transform.records import InputObject, ObjectState, TransformJob, TransformStatus

__all__ = ["MAX_FAILURE_REASON", "TransformStore"]

MAX_FAILURE_REASON = 1024  # DescribeTransformJob.FailureReason's maximum length in the model

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transform_jobs (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, arn TEXT NOT NULL, status TEXT NOT NULL,
    creation_time REAL NOT NULL, last_modified_time REAL NOT NULL, start_time REAL, end_time REAL,
    failure_reason TEXT, listed INTEGER NOT NULL DEFAULT 0, request TEXT NOT NULL, container TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transform_objects (
    job_key TEXT NOT NULL, seq INTEGER NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL,
    name TEXT NOT NULL, size INTEGER NOT NULL, state TEXT NOT NULL, records INTEGER NOT NULL,
    reason TEXT, PRIMARY KEY (job_key, seq));
"""

_JOB_COLUMNS = (
    "name, arn, status, creation_time, last_modified_time, start_time, end_time, failure_reason, listed, "
    "request, container"
)


class TransformStore:
    def __init__(self, path: Path, *, clock: Callable[[], float]) -> None:
        self.path = path
        self._clock = clock
        self._file = WalFile(path, "transform store", _SCHEMA)

    def close(self) -> None:
        self._file.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.write()

    # Jobs -----------------------------------------------------------------------------------------
    def add_job(self, job: TransformJob) -> bool:
        """False when a job of that name (in any case) exists already."""
        with self._write() as conn:
            key = name_key(job.name)
            if conn.execute("SELECT 1 FROM transform_jobs WHERE name_key = ?", (key,)).fetchone():
                return False
            conn.execute(
                f"INSERT INTO transform_jobs (name_key, {_JOB_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    job.name,
                    job.arn,
                    job.status.value,
                    job.creation_time,
                    job.last_modified_time,
                    job.start_time,
                    job.end_time,
                    job.failure_reason,
                    int(job.listed),
                    json.dumps(job.request),
                    json.dumps(asdict(job.container)),
                ),
            )
        return True

    def get_job(self, name: str) -> TransformJob | None:
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM transform_jobs WHERE name_key = ?", (name_key(name),)
            ).fetchone()
        return None if row is None else _job(row)

    def list_jobs(self) -> list[TransformJob]:
        with self._write() as conn:
            rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM transform_jobs").fetchall()
        return [_job(row) for row in rows]

    def set_status(
        self,
        name: str,
        status: TransformStatus,
        *,
        allowed_from: Sequence[TransformStatus],
        reason: str | None = None,
    ) -> TransformJob | None:
        """Move a job to `status` if it is in one of `allowed_from`; the job as it is now (None: missing).

        A final status also sets TransformEndTime.
        """
        now = self._clock()
        with self._write() as conn:
            key = name_key(name)
            row = conn.execute("SELECT status FROM transform_jobs WHERE name_key = ?", (key,)).fetchone()
            if row is None:
                return None
            if TransformStatus(row[0]) in allowed_from:
                conn.execute(
                    "UPDATE transform_jobs SET status = ?, last_modified_time = ?, end_time = ?, "
                    "failure_reason = coalesce(?, failure_reason) WHERE name_key = ?",
                    (
                        status.value,
                        now,
                        now if status.final else None,
                        None if reason is None else reason[:MAX_FAILURE_REASON],
                        key,
                    ),
                )
            found = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM transform_jobs WHERE name_key = ?", (key,)
            ).fetchone()
        return _job(found)

    def mark_started(self, name: str) -> None:
        """TransformStartTime: when the job's instances began to start (kept across restarts)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE transform_jobs SET start_time = coalesce(start_time, ?) WHERE name_key = ?",
                (self._clock(), name_key(name)),
            )

    # Input objects ----------------------------------------------------------------------------------
    def record_inputs(self, name: str, objects: Sequence[InputObject]) -> None:
        """The job's input list, once: a restart processes the same objects in the same order."""
        with self._write() as conn:
            key = name_key(name)
            if conn.execute("SELECT listed FROM transform_jobs WHERE name_key = ?", (key,)).fetchone()[0]:
                return
            conn.executemany(
                "INSERT INTO transform_objects "
                "(job_key, seq, bucket, key, name, size, state, records, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL)",
                [(key, o.seq, o.bucket, o.key, o.name, o.size, ObjectState.PENDING.value) for o in objects],
            )
            conn.execute("UPDATE transform_jobs SET listed = 1 WHERE name_key = ?", (key,))

    def inputs(self, name: str) -> list[InputObject]:
        with self._write() as conn:
            rows = conn.execute(
                "SELECT seq, bucket, key, name, size, state, records, reason FROM transform_objects "
                "WHERE job_key = ? ORDER BY seq",
                (name_key(name),),
            ).fetchall()
        return [
            InputObject(row[0], row[1], row[2], row[3], row[4], ObjectState(row[5]), row[6], row[7])
            for row in rows
        ]

    def finish_object(
        self, name: str, seq: int, state: ObjectState, records: int, reason: str | None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE transform_objects SET state = ?, records = ?, reason = ? "
                "WHERE job_key = ? AND seq = ?",
                (state.value, records, reason, name_key(name), seq),
            )

    def counts(self, name: str) -> tuple[int, int, int, int, int, int]:
        """(objects, done, failed, records done, bytes of the objects done, bytes of all) of a job."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(state = 'done'), 0), coalesce(sum(state = 'failed'), 0), "
                "coalesce(sum(records), 0), coalesce(sum(CASE WHEN state = 'done' THEN size ELSE 0 END), 0), "
                "coalesce(sum(size), 0) "
                "FROM transform_objects WHERE job_key = ?",
                (name_key(name),),
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5])


def _job(row: Any) -> TransformJob:
    container = json.loads(row[10])
    return TransformJob(
        name=row[0],
        arn=row[1],
        status=TransformStatus(row[2]),
        creation_time=row[3],
        last_modified_time=row[4],
        start_time=row[5],
        end_time=row[6],
        failure_reason=row[7],
        listed=bool(row[8]),
        request=json.loads(row[9]),
        container=ContainerSpec(
            image=container["image"],
            model_data_url=container["model_data_url"],
            model_data_source=container["model_data_source"],
            environment=dict(container["environment"]),
        ),
    )
