"""Turning the runtime's cumulative counters (what /metrics shows) into per-interval samples.

`runtime/metrics.py` keeps running totals per endpoint and variant; the history wants what happened in
each sampling interval. The sampler remembers the totals it saw last and hands back the differences.
A total that went down means the series was forgotten (the endpoint was deleted and made again) and
started over from zero, so the whole new total is the interval's. Runs on the event loop, where the
counters are updated, so each read is consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage.cloudwatch.history import Sample
from moorage.runtime.metrics import Metrics

__all__ = ["Sampler"]


@dataclass(frozen=True)
class _Totals:
    invocations: int
    errors_4xx: int
    errors_5xx: int
    model_errors: int
    model_count: int
    model_sum: float
    model_buckets: tuple[int, ...]
    overhead_count: int
    overhead_sum: float
    overhead_buckets: tuple[int, ...]


class Sampler:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._last: dict[tuple[str, str], _Totals] = {}

    def take(self, now: float) -> list[Sample]:
        """The traffic of every variant since the previous call; variants without any are left out."""
        instances = self.metrics.instances()
        seen: dict[tuple[str, str], _Totals] = {}
        samples: list[Sample] = []
        for key, series in self.metrics.snapshot().items():
            totals = _Totals(
                series.invocations,
                series.errors_4xx,
                series.errors_5xx,
                series.model_errors,
                series.model_latency.count,
                series.model_latency.total,
                tuple(series.model_latency.counts),
                series.overhead_latency.count,
                series.overhead_latency.total,
                tuple(series.overhead_latency.counts),
            )
            seen[key] = totals
            before = self._last.get(key)
            if before is not None and totals.invocations < before.invocations:
                before = None  # the series started over
            delta = _minus(totals, before)
            if delta.invocations == 0 and delta.model_count == 0 and delta.overhead_count == 0:
                continue
            samples.append(
                Sample(
                    timestamp=now,
                    endpoint=key[0],
                    variant=key[1],
                    invocations=delta.invocations,
                    errors_4xx=delta.errors_4xx,
                    errors_5xx=delta.errors_5xx,
                    model_errors=delta.model_errors,
                    instances=instances.get(key, (0, 0))[0],
                    model_count=delta.model_count,
                    model_sum_us=delta.model_sum,
                    model_buckets=delta.model_buckets,
                    overhead_count=delta.overhead_count,
                    overhead_sum_us=delta.overhead_sum,
                    overhead_buckets=delta.overhead_buckets,
                )
            )
        self._last = seen
        return samples


def _minus(now: _Totals, before: _Totals | None) -> _Totals:
    if before is None:
        return now
    return _Totals(
        now.invocations - before.invocations,
        now.errors_4xx - before.errors_4xx,
        now.errors_5xx - before.errors_5xx,
        now.model_errors - before.model_errors,
        now.model_count - before.model_count,
        now.model_sum - before.model_sum,
        tuple(a - b for a, b in zip(now.model_buckets, before.model_buckets, strict=True)),
        now.overhead_count - before.overhead_count,
        now.overhead_sum - before.overhead_sum,
        tuple(a - b for a, b in zip(now.overhead_buckets, before.overhead_buckets, strict=True)),
    )
