"""The metric history: what each variant served in each sampling interval, in its own SQLite file.

One row per variant per interval that saw traffic (no traffic, no datapoint: CloudWatch has no
SageMaker datapoints for an idle endpoint either, which is what TreatMissingData is for). A row holds
the interval's counter deltas and its latency histograms (bucket deltas), so every statistic CloudWatch
offers can be answered for any period: Sum, SampleCount and Average exactly; Minimum, Maximum and
percentiles estimated from the histogram buckets (docs/cloudwatch.md says how). Rows older than the
retention are deleted by `prune`, so the file stays bounded. Blocking: call on a thread.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.cloudwatch.records import METRICS, NAMESPACE, Datapoint, MetricKey, MetricQuery
from moorage.runtime.metrics import LATENCY_BUCKETS_US
from moorage.sqlite_wal import WalFile

__all__ = ["MetricHistory", "Sample", "percentile_name"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    ts REAL NOT NULL, endpoint TEXT NOT NULL, variant TEXT NOT NULL, invocations INTEGER NOT NULL,
    errors_4xx INTEGER NOT NULL, errors_5xx INTEGER NOT NULL, model_errors INTEGER NOT NULL,
    instances INTEGER NOT NULL, model_count INTEGER NOT NULL, model_sum REAL NOT NULL, model_buckets TEXT,
    overhead_count INTEGER NOT NULL, overhead_sum REAL NOT NULL, overhead_buckets TEXT);
CREATE INDEX IF NOT EXISTS samples_by_variant ON samples (endpoint, variant, ts);
CREATE INDEX IF NOT EXISTS samples_by_time ON samples (ts)
"""
_COLUMNS = (
    "ts, invocations, errors_4xx, errors_5xx, model_errors, instances, model_count, model_sum, "
    "model_buckets, overhead_count, overhead_sum, overhead_buckets"
)
_ERROR_COLUMNS = {
    "Invocation4XXErrors": "errors_4xx",
    "Invocation5XXErrors": "errors_5xx",
    "InvocationModelErrors": "model_errors",
}


@dataclass(frozen=True)
class Sample:
    """One variant's traffic in one sampling interval, ending at `timestamp`."""

    timestamp: float
    endpoint: str
    variant: str
    invocations: int
    errors_4xx: int
    errors_5xx: int
    model_errors: int
    instances: int  # instances that could answer at the sample (for InvocationsPerInstance)
    model_count: int
    model_sum_us: float
    model_buckets: tuple[int, ...]  # deltas per bucket of runtime.metrics.LATENCY_BUCKETS_US (+ overflow)
    overhead_count: int
    overhead_sum_us: float
    overhead_buckets: tuple[int, ...]


class MetricHistory:
    def __init__(self, path: Path) -> None:
        self._file = WalFile(path, "metric history store", _SCHEMA)

    def close(self) -> None:
        self._file.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.write()

    def add(self, samples: Iterable[Sample]) -> None:
        rows = [
            (
                s.timestamp,
                s.endpoint,
                s.variant,
                s.invocations,
                s.errors_4xx,
                s.errors_5xx,
                s.model_errors,
                s.instances,
                s.model_count,
                s.model_sum_us,
                json.dumps(s.model_buckets) if s.model_count else None,
                s.overhead_count,
                s.overhead_sum_us,
                json.dumps(s.overhead_buckets) if s.overhead_count else None,
            )
            for s in samples
        ]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO samples (ts, endpoint, variant, invocations, errors_4xx, errors_5xx, "
                "model_errors, instances, model_count, model_sum, model_buckets, overhead_count, "
                "overhead_sum, "
                "overhead_buckets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def prune(self, before: float) -> int:
        """Delete every sample older than `before` (epoch seconds); returns how many went."""
        with self._write() as conn:
            return conn.execute("DELETE FROM samples WHERE ts < ?", (before,)).rowcount

    def count(self) -> int:
        """How many samples are kept (the retention bound's witness)."""
        with self._write() as conn:
            return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])

    def oldest(self) -> float | None:
        with self._write() as conn:
            value = conn.execute("SELECT min(ts) FROM samples").fetchone()[0]
        return None if value is None else float(value)

    def list_metrics(self, since: float | None = None) -> list[MetricKey]:
        """Every metric with a retained datapoint (at or after `since`, when given), sorted."""
        with self._write() as conn:
            pairs = conn.execute(
                "SELECT DISTINCT endpoint, variant FROM samples WHERE ts >= ?", (since or 0.0,)
            ).fetchall()
        return sorted(
            MetricKey(metric, endpoint, variant) for endpoint, variant in pairs for metric in METRICS
        )

    def query(self, query: MetricQuery) -> list[Datapoint]:
        """One datapoint per period in [start, end) that has data, oldest first.

        Periods start at multiples of `period_s` since the epoch; a period that saw no traffic has no
        datapoint. `query.statistic` picks `Datapoint.value`; the other statistics come along.
        """
        key = query.key
        if key.namespace != NAMESPACE or key.metric not in METRICS or query.period_s <= 0:
            return []
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM samples WHERE endpoint = ? AND variant = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts",
                (key.endpoint, key.variant, query.start, query.end),
            ).fetchall()
        periods: dict[float, list[tuple[Any, ...]]] = {}
        for row in rows:
            start = math.floor(row[0] / query.period_s) * query.period_s
            periods.setdefault(float(start), []).append(row)
        points = (_aggregate(key.metric, start, group, query.statistic) for start, group in periods.items())
        return [point for point in points if point is not None]


def percentile_name(statistic: str) -> float | None:
    """`p99` → 99.0, `p99.9` → 99.9; None when `statistic` is not a percentile CloudWatch accepts."""
    if not statistic.startswith("p"):
        return None
    try:
        value = float(statistic[1:])
    except ValueError:
        return None
    return value if 0.0 <= value <= 100.0 and not math.isnan(value) else None


def _aggregate(metric: str, start: float, rows: list[tuple[Any, ...]], statistic: str) -> Datapoint | None:
    unit = METRICS[metric]
    invocations = sum(int(row[1]) for row in rows)
    if metric in ("ModelLatency", "OverheadLatency"):
        offset = 6 if metric == "ModelLatency" else 9
        count = sum(int(row[offset]) for row in rows)
        if count == 0:
            return None
        total = sum(float(row[offset + 1]) for row in rows)
        buckets = [0] * (len(LATENCY_BUCKETS_US) + 1)
        for row in rows:
            if row[offset + 2]:
                for index, value in enumerate(json.loads(row[offset + 2])):
                    buckets[index] += int(value)
        average = total / count
        minimum = _histogram_percentile(buckets, 0.0, average)
        maximum = _histogram_percentile(buckets, 100.0, average)
        stats = {"SampleCount": float(count), "Sum": total, "Minimum": minimum, "Maximum": maximum}

        def percentile(p: float) -> float:
            return _histogram_percentile(buckets, p, average)

    else:
        if invocations == 0:
            return None
        if metric == "Invocations":
            values = [(1.0, int(row[1])) for row in rows]
        elif metric == "InvocationsPerInstance":
            values = [(1.0 / max(1, int(row[5])), int(row[1])) for row in rows]
        else:
            column = 2 + ("errors_4xx", "errors_5xx", "model_errors").index(_ERROR_COLUMNS[metric])
            errors = sum(int(row[column]) for row in rows)
            values = [(1.0, errors), (0.0, invocations - errors)]
        present = [(value, n) for value, n in values if n > 0]
        total = sum(value * n for value, n in present)
        stats = {
            "SampleCount": float(invocations),
            "Sum": total,
            "Minimum": min(value for value, _ in present),
            "Maximum": max(value for value, _ in present),
        }

        def percentile(p: float) -> float:
            ordered = sorted(present)
            rank = p / 100.0 * invocations
            seen = 0
            for value, n in ordered:
                seen += n
                if seen >= rank:
                    return value
            return ordered[-1][0]

    stats["Average"] = stats["Sum"] / stats["SampleCount"]
    p = percentile_name(statistic)
    value = percentile(p) if p is not None else stats.get(statistic)
    if value is None:
        return None
    return Datapoint(
        timestamp=start,
        value=value,
        sample_count=stats["SampleCount"],
        sum=stats["Sum"],
        minimum=stats["Minimum"],
        maximum=stats["Maximum"],
        unit=unit,
        percentiles={statistic: value} if p is not None else {},
    )


def _histogram_percentile(buckets: list[int], p: float, average: float) -> float:
    """The p-th percentile, interpolated linearly inside its bucket (p0 and p100: the bucket edges)."""
    count = sum(buckets)
    rank = p / 100.0 * count
    seen = 0
    for index, n in enumerate(buckets):
        if n == 0:
            continue
        low = 0.0 if index == 0 else float(LATENCY_BUCKETS_US[index - 1])
        if index == len(LATENCY_BUCKETS_US):  # the overflow bucket has no upper edge
            return max(low, average)
        high = float(LATENCY_BUCKETS_US[index])
        if seen + n >= rank:
            fraction = (rank - seen) / n if n else 0.0
            return low + (high - low) * max(0.0, min(1.0, fraction))
        seen += n
    return average
