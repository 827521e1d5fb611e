"""Metric alarms on disk: their configuration (PutMetricAlarm) and their state, in their own SQLite file.

The store is the truth for alarm state: the evaluator (`cloudwatch/evaluate.py`, driven by
`cloudwatch/service.py`) writes a state only when it changes, SetAlarmState writes one directly, and
`states(names)` is how other rooms read them (deployment guardrails roll back when an alarm is `ALARM`).
A new alarm starts `INSUFFICIENT_DATA` ("Unchecked: Initial alarm creation"); updating an alarm keeps its
state, as CloudWatch does. All methods block on SQLite: call them on a thread, never on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moorage.cloudwatch.errors import LimitExceeded
from moorage.cloudwatch.records import AlarmState, AlarmStateValue
from moorage.sqlite_wal import WalFile

__all__ = ["MAX_ALARMS", "AlarmStore", "MetricAlarm", "StoredAlarm"]

MAX_ALARMS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    name TEXT PRIMARY KEY, config TEXT NOT NULL, configured REAL NOT NULL, state TEXT NOT NULL,
    reason TEXT NOT NULL, reason_data TEXT NOT NULL, updated REAL NOT NULL, transitioned REAL NOT NULL)
"""
_COLUMNS = "name, config, configured, state, reason, reason_data, updated, transitioned"


@dataclass(frozen=True)
class MetricAlarm:
    """An alarm's configuration, as PutMetricAlarm gave it (validated by `cloudwatch/operations.py`)."""

    name: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]  # (Name, Value) pairs, in the order given
    period_s: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str  # GreaterThanOrEqualToThreshold | GreaterThanThreshold | LessThan… | LessThanOrEqual…
    statistic: str | None  # one of records.STATISTICS, or None when extended_statistic is set
    extended_statistic: str | None  # a percentile such as "p99"
    treat_missing_data: str = "missing"  # missing | ignore | breaching | notBreaching
    description: str | None = None
    unit: str | None = None
    actions_enabled: bool = True
    evaluate_low_sample_count_percentile: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricAlarm:
        return cls(**{**data, "dimensions": tuple(tuple(pair) for pair in data["dimensions"])})


@dataclass(frozen=True)
class StoredAlarm:
    alarm: MetricAlarm
    configured: float  # AlarmConfigurationUpdatedTimestamp
    state: AlarmState


class AlarmStore:
    def __init__(self, path: Path) -> None:
        self._file = WalFile(path, "alarm store", _SCHEMA)

    def close(self) -> None:
        self._file.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.write()

    def states(self, names: Iterable[str]) -> dict[str, AlarmStateValue]:
        """The state value (`OK`, `ALARM` or `INSUFFICIENT_DATA`) of each named alarm that exists.

        Names that are not alarms are absent from the result (the caller decides what a missing alarm
        means: SageMaker's guardrails treat it as a configuration error). One indexed read; safe from
        any thread. This is the accessor deployment guardrails poll; `CloudWatchService.subscribe`
        tells of changes without polling.
        """
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        with self._write() as conn:
            rows = conn.execute(f"SELECT name, state FROM alarms WHERE name IN ({marks})", wanted).fetchall()
        return {str(name): state for name, state in rows}

    def put(self, alarm: MetricAlarm, now: float) -> StoredAlarm:
        """Create or replace the alarm's configuration; a new alarm starts INSUFFICIENT_DATA.
        LimitExceeded when it would be alarm number MAX_ALARMS + 1 (every alarm is evaluated at each
        sample, so their number bounds that work)."""
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE alarms SET config = ?, configured = ? WHERE name = ?",
                (json.dumps(alarm.to_json()), now, alarm.name),
            ).rowcount
            if not updated and conn.execute("SELECT count(*) FROM alarms").fetchone()[0] >= MAX_ALARMS:
                raise LimitExceeded(
                    f"moorage keeps at most {MAX_ALARMS} alarms; delete some (DeleteAlarms) before adding "
                    "more."
                )
            if not updated:
                conn.execute(
                    f"INSERT INTO alarms ({_COLUMNS}) VALUES (?, ?, ?, 'INSUFFICIENT_DATA', ?, '{{}}', ?, ?)",
                    (
                        alarm.name,
                        json.dumps(alarm.to_json()),
                        now,
                        "Unchecked: Initial alarm creation",
                        now,
                        now,
                    ),
                )
            row = conn.execute(f"SELECT {_COLUMNS} FROM alarms WHERE name = ?", (alarm.name,)).fetchone()
        return _stored(row)

    def get(self, names: Iterable[str]) -> list[StoredAlarm]:
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM alarms WHERE name IN ({marks}) ORDER BY name", wanted
            ).fetchall()
        return [_stored(row) for row in rows]

    def page(
        self, *, after: str, limit: int, prefix: str | None = None, state: str | None = None
    ) -> list[StoredAlarm]:
        """Alarms in name order after `after` (a page of DescribeAlarms), at most `limit` of them."""
        query = f"SELECT {_COLUMNS} FROM alarms WHERE name > ?"
        args: list[object] = [after]
        if prefix:
            # substr, not LIKE: names may contain % and _.
            query += " AND substr(name, 1, ?) = ?"
            args += [len(prefix), prefix]
        if state:
            query += " AND state = ?"
            args.append(state)
        query += " ORDER BY name LIMIT ?"
        args.append(limit)
        with self._write() as conn:
            rows = conn.execute(query, args).fetchall()
        return [_stored(row) for row in rows]

    def all(self) -> list[StoredAlarm]:
        with self._write() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM alarms ORDER BY name").fetchall()
        return [_stored(row) for row in rows]

    def delete(self, names: Iterable[str]) -> list[str]:
        """Delete the named alarms; returns the names that were not alarms. CloudWatch answers success
        for those too (the CloudFormation contract tests found it does not raise on them)."""
        wanted = list(dict.fromkeys(names))
        with self._write() as conn:
            return [
                name
                for name in wanted
                if not conn.execute("DELETE FROM alarms WHERE name = ?", (name,)).rowcount
            ]

    def set_state(
        self, name: str, value: AlarmStateValue, reason: str, reason_data: str, now: float
    ) -> AlarmStateValue | None:
        """Record a state (its reason and time); returns the previous value, or None if no such alarm.
        `transitioned` moves only when the value changes."""
        with self._write() as conn:
            row = conn.execute("SELECT state FROM alarms WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            old: AlarmStateValue = row[0]
            conn.execute(
                "UPDATE alarms SET state = ?, reason = ?, reason_data = ?, updated = ?, "
                "transitioned = CASE WHEN state = ? THEN transitioned ELSE ? END WHERE name = ?",
                (value, reason, reason_data, now, value, now, name),
            )
        return old


def _stored(row: tuple[Any, ...]) -> StoredAlarm:
    name, config, configured, state, reason, reason_data, updated, transitioned = row
    del name
    return StoredAlarm(
        MetricAlarm.from_json(json.loads(config)),
        float(configured),
        AlarmState(state, reason, reason_data, float(updated), float(transitioned)),
    )
