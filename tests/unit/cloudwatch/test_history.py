"""The metric history as the service fills it: the runtime's counters sampled into per-interval rows,
statistics over periods, and the retention bound (a real SQLite file; time is the service's clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from moorage.cloudwatch.records import MetricKey, MetricQuery
from moorage.cloudwatch.service import CloudWatchService, open_cloudwatch
from moorage.runtime.metrics import Metrics
from moorage.settings import Settings

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def _open(tmp_path: Path, metrics: Metrics, retention_s: float) -> tuple[CloudWatchService, Clock]:
    settings = Settings(data_dir=tmp_path, cloudwatch_retention_s=retention_s)
    service = await open_cloudwatch(settings, metrics)
    clock = Clock()
    service.clock = clock
    return service, clock


def _invoke(metrics: Metrics, count: int, *, status: int = 200, model_us: float = 2_000.0) -> None:
    for _ in range(count):
        metrics.record("ep", "AllTraffic", status=status, model_us=model_us, total_us=model_us + 300.0)


def test_samples_become_statistics_per_period(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        service, clock = await _open(tmp_path, metrics, retention_s=3600.0)
        try:
            _invoke(metrics, 3)
            clock.now = T0 + 5
            await service.tick()
            _invoke(metrics, 1, status=500)
            clock.now = T0 + 65
            await service.tick()
            clock.now = T0 + 70
            await service.tick()  # no traffic since: no row
            key = MetricKey("Invocations", "ep", "AllTraffic")
            per_minute = service.history.query(MetricQuery(key, T0, T0 + 120, 60, "Sum"))
            assert [(p.timestamp, p.value) for p in per_minute] == [(T0, 3.0), (T0 + 60, 1.0)]
            errors = service.history.query(
                MetricQuery(replace_metric(key, "Invocation5XXErrors"), T0, T0 + 120, 120, "Average")
            )
            assert [(p.value, p.sample_count, p.minimum, p.maximum) for p in errors] == [
                (0.25, 4.0, 0.0, 1.0)
            ]
            latency = service.history.query(
                MetricQuery(replace_metric(key, "ModelLatency"), T0, T0 + 120, 120, "p50")
            )
            (point,) = latency
            assert point.sample_count == 4 and point.sum == 8_000.0
            assert 1_000.0 <= point.minimum <= point.value <= point.maximum <= 2_500.0  # the 1-2.5 ms bucket
            assert service.history.count() == 2
        finally:
            await service.close()

    asyncio.run(scenario())


def test_the_history_keeps_only_the_retention(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        service, clock = await _open(tmp_path, metrics, retention_s=100.0)
        try:
            for step in range(30):
                _invoke(metrics, 1)
                clock.now = T0 + step * 10
                await service.tick()
            # Samples every 10 s, kept 100 s: the last 11 (the oldest exactly 100 s old) remain.
            assert service.history.count() == 11
            assert service.history.oldest() == T0 + 190
            assert service.history.list_metrics(since=T0 + 290) != []
        finally:
            await service.close()

    asyncio.run(scenario())


def replace_metric(key: MetricKey, metric: str) -> MetricKey:
    return MetricKey(metric, key.endpoint, key.variant)
