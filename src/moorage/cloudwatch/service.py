"""CloudWatch as `moorage serve` runs it: the history, the alarms, and the task that keeps both current.

`launch/serve.py` opens it once the metrics exist, gives `operations` to the HTTP edge
(`api/cloudwatch.py`), calls `start` once the server listens and `close` when it stops. Every
`sample_s` seconds the task reads the runtime's counters into the history, deletes what is older than
the retention, and evaluates every alarm, writing a state only when it changes and telling subscribers.

What other rooms use (stable):
- `await service.states(names) -> dict[str, str]`: each existing alarm's state value;
- `service.subscribe(callback) -> unsubscribe`: `callback(AlarmStateChange)` on the event loop at each
  change of an alarm's state value (from evaluation or SetAlarmState);
- `await service.run(fn, *args)`: a blocking call on `history` or `alarms` on the stores' own thread
  (e.g. `await service.run(service.history.query, MetricQuery(...))` for a console chart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from moorage.cloudwatch.alarms import AlarmStore
from moorage.cloudwatch.context import CloudWatchContext
from moorage.cloudwatch.evaluate import evaluate, evaluation_range
from moorage.cloudwatch.history import MetricHistory
from moorage.cloudwatch.records import AlarmStateChange, AlarmStateValue, MetricQuery, metric_key
from moorage.cloudwatch.sampler import Sampler
from moorage.runtime.metrics import Metrics
from moorage.settings import Settings

__all__ = ["ALARMS_FILE", "HISTORY_FILE", "CloudWatchService", "open_cloudwatch"]

log = logging.getLogger("moorage.cloudwatch")

HISTORY_FILE = "metrics.sqlite3"
ALARMS_FILE = "alarms.sqlite3"
T = TypeVar("T")
Listener = Callable[[AlarmStateChange], None]


@dataclass
class CloudWatchService:
    history: MetricHistory
    alarms: AlarmStore
    sampler: Sampler
    executor: ThreadPoolExecutor
    context: CloudWatchContext
    sample_s: float
    retention_s: float
    clock: Callable[[], float] = time.time
    _listeners: list[Listener] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def states(self, names: Iterable[str]) -> dict[str, AlarmStateValue]:
        """Each named alarm's state value: `OK`, `ALARM` or `INSUFFICIENT_DATA`.

        Names that are not alarms are absent from the result. Read from the alarm store (the truth),
        so a state set by SetAlarmState a moment ago is already there.
        """
        return await self.run(self.alarms.states, list(names))

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call `callback(change)` on the event loop whenever an alarm's state value changes; returns a
        function that unsubscribes. A callback that raises is logged and stays subscribed."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the stores' thread (SQLite blocks; the event loop must not wait on the disk)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.context.changed = self._changed_from_thread
        self._task = self._loop.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.run(self.history.close)
        await self.run(self.alarms.close)
        self.executor.shutdown(wait=True)

    async def tick(self) -> None:
        """One round: sample the counters, prune the history, evaluate every alarm."""
        now = self.clock()
        samples = self.sampler.take(now)  # on the loop, where the counters change
        changes = await self.run(self._store_and_evaluate, samples, now)
        for change in changes:
            self._tell(change)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sampling metrics or evaluating alarms failed; trying again next round")
            await asyncio.sleep(self.sample_s)

    def _store_and_evaluate(self, samples: list[Any], now: float) -> list[AlarmStateChange]:
        self.history.add(samples)
        self.history.prune(now - self.retention_s)
        changes: list[AlarmStateChange] = []
        for stored in self.alarms.all():
            alarm = stored.alarm
            start, end = evaluation_range(alarm, now)
            key = metric_key(alarm.namespace, alarm.metric, alarm.dimensions, alarm.unit)
            statistic = alarm.statistic or alarm.extended_statistic or "Sum"
            points = (
                []
                if key is None
                else self.history.query(MetricQuery(key, start, end, alarm.period_s, statistic))
            )
            verdict = evaluate(alarm, points, now)
            if verdict.value is None or verdict.value == stored.state.value:
                continue
            old = self.alarms.set_state(alarm.name, verdict.value, verdict.reason, verdict.reason_data, now)
            if old is not None and old != verdict.value:
                log.info("alarm %s: %s -> %s (%s)", alarm.name, old, verdict.value, verdict.reason)
                changes.append(AlarmStateChange(alarm.name, old, verdict.value, verdict.reason, now))
        return changes

    def _changed_from_thread(self, change: AlarmStateChange) -> None:
        """SetAlarmState runs on the stores' thread; its change is told on the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._tell, change)

    def _tell(self, change: AlarmStateChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("an alarm state listener failed on %s", change)


async def open_cloudwatch(settings: Settings, metrics: Metrics) -> CloudWatchService:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudwatch")
    loop = asyncio.get_running_loop()
    history = await loop.run_in_executor(executor, MetricHistory, settings.data_dir / HISTORY_FILE)
    alarms = await loop.run_in_executor(executor, AlarmStore, settings.data_dir / ALARMS_FILE)
    context = CloudWatchContext(
        history=history,
        alarms=alarms,
        region=settings.region,
        account_id=settings.account_id,
        min_period_s=settings.cloudwatch_min_period_s,
    )
    return CloudWatchService(
        history=history,
        alarms=alarms,
        sampler=Sampler(metrics),
        executor=executor,
        context=context,
        sample_s=settings.cloudwatch_sample_s,
        retention_s=settings.cloudwatch_retention_s,
    )
