"""What deployment guardrails read: `states(names)` from the alarm store and the changes `subscribe`
reports, as the service's own evaluation produces them (real SQLite files; time is the service's clock)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from moorage.cloudwatch import alarms
from moorage.cloudwatch.alarm_ops import put_metric_alarm, set_alarm_state
from moorage.cloudwatch.alarms import AlarmStore, MetricAlarm
from moorage.cloudwatch.errors import LimitExceeded
from moorage.cloudwatch.records import AlarmStateChange
from moorage.cloudwatch.service import open_cloudwatch
from moorage.runtime.metrics import Metrics
from moorage.settings import Settings

T0 = 1_800_000_000.0
ALARM = MetricAlarm(
    "a", "AWS/SageMaker", "Invocations", (), 60, 1, 1, 1.0, "GreaterThanThreshold", "Sum", None
)


def test_states_and_subscribed_changes_follow_the_evaluation(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        service = await open_cloudwatch(Settings(data_dir=tmp_path, cloudwatch_min_period_s=1), metrics)
        now = [T0]
        service.clock = service.context.clock = lambda: now[0]
        changes: list[AlarmStateChange] = []
        unsubscribe = service.subscribe(changes.append)
        service.start()  # its first round sees no alarms; the rounds below are driven by hand
        try:
            put_metric_alarm(
                service.context,
                {
                    "AlarmName": "errors",
                    "Namespace": "AWS/SageMaker",
                    "MetricName": "Invocation5XXErrors",
                    "Dimensions": [
                        {"Name": "EndpointName", "Value": "ep"},
                        {"Name": "VariantName", "Value": "AllTraffic"},
                    ],
                    "Statistic": "Sum",
                    "Period": 10,
                    "EvaluationPeriods": 1,
                    "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "notBreaching",
                },
            )
            assert await service.states(["errors", "no-such-alarm"]) == {"errors": "INSUFFICIENT_DATA"}
            metrics.record("ep", "AllTraffic", status=500, model_us=10.0, total_us=20.0)
            now[0] = T0 + 1
            await service.tick()  # the sample lands in [T0, T0 + 10), not complete; before it, no errors
            assert await service.states(["errors"]) == {"errors": "OK"}
            now[0] = T0 + 10
            await service.tick()
            assert await service.states(["errors"]) == {"errors": "ALARM"}
            now[0] = T0 + 20
            await service.tick()  # a period without errors: not breaching
            assert await service.states(["errors"]) == {"errors": "OK"}
            assert [(c.alarm, c.old, c.new) for c in changes] == [
                ("errors", "INSUFFICIENT_DATA", "OK"),
                ("errors", "OK", "ALARM"),
                ("errors", "ALARM", "OK"),
            ]
            # SetAlarmState (run on the stores' thread) is reported on the loop too.
            await service.run(
                set_alarm_state,
                service.context,
                {"AlarmName": "errors", "StateValue": "ALARM", "StateReason": "t"},
            )
            await asyncio.sleep(0)
            assert changes[-1].new == "ALARM" and changes[-1].reason == "t"
            unsubscribe()
            await service.tick()
            assert len(changes) == 4 and await service.states(["errors"]) == {"errors": "OK"}
        finally:
            await service.close()

    asyncio.run(scenario())


def test_the_number_of_alarms_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AlarmStore(tmp_path / "alarms.sqlite3")
    monkeypatch.setattr(alarms, "MAX_ALARMS", 3)
    try:
        for name in ("a", "b", "c"):
            store.put(replace(ALARM, name=name), T0)
        with pytest.raises(LimitExceeded, match="at most 3 alarms"):
            store.put(replace(ALARM, name="d"), T0)
        store.put(replace(ALARM, name="c", threshold=5.0), T0)  # an update is not a new alarm
        assert sorted(store.states(["a", "b", "c", "d"])) == ["a", "b", "c"]
    finally:
        store.close()
