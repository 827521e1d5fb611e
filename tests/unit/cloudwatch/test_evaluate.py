"""Alarm evaluation over datapoints: M out of N, TreatMissingData, percentiles with few samples, and
the state reasons CloudWatch writes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from moorage.cloudwatch.alarms import MetricAlarm
from moorage.cloudwatch.evaluate import evaluate, evaluation_range
from moorage.cloudwatch.records import Datapoint

NOW = 1_800_000_125.0  # five seconds into a minute (1_800_000_120 is a multiple of 60)
ALARM = MetricAlarm(
    name="a",
    namespace="AWS/SageMaker",
    metric="Invocation5XXErrors",
    dimensions=(("EndpointName", "e"), ("VariantName", "AllTraffic")),
    period_s=60,
    evaluation_periods=3,
    datapoints_to_alarm=2,
    threshold=1.0,
    comparison="GreaterThanOrEqualToThreshold",
    statistic="Sum",
    extended_statistic=None,
)


def points(*values: float | None, alarm: MetricAlarm = ALARM) -> list[Datapoint]:
    """Datapoints for the evaluation range, oldest first; None: that period has none."""
    start, _ = evaluation_range(alarm, NOW)
    return [
        Datapoint(start + i * alarm.period_s, v, 10.0, v, 0.0, 1.0, "None")
        for i, v in enumerate(values)
        if v is not None
    ]


def test_the_range_is_the_last_complete_periods() -> None:
    assert evaluation_range(ALARM, NOW) == (1_800_000_120.0 - 180, 1_800_000_120.0)


@pytest.mark.parametrize(
    ("values", "treat", "state"),
    [
        ((0, 2, 3), "missing", "ALARM"),  # 2 of 3 breach
        ((0, 0, 3), "missing", "OK"),
        ((None, None, None), "missing", "INSUFFICIENT_DATA"),
        ((None, None, None), "ignore", None),  # keeps its state
        ((None, None, None), "breaching", "ALARM"),
        ((None, None, None), "notBreaching", "OK"),
        ((None, 5, None), "missing", "OK"),  # one present breach: fewer than 2
        ((None, 5, None), "breaching", "ALARM"),
        ((5, 5, None), "missing", "ALARM"),
        ((5, 5, None), "notBreaching", "ALARM"),
    ],
)
def test_m_out_of_n_with_missing_data(
    values: tuple[float | None, ...], treat: str, state: str | None
) -> None:
    alarm = replace(ALARM, treat_missing_data=treat)
    assert evaluate(alarm, points(*values), NOW).value == state


@pytest.mark.parametrize(
    ("comparison", "value", "breaches"),
    [
        ("GreaterThanOrEqualToThreshold", 1.0, True),
        ("GreaterThanThreshold", 1.0, False),
        ("LessThanThreshold", 0.5, True),
        ("LessThanOrEqualToThreshold", 1.5, False),
    ],
)
def test_each_comparison(comparison: str, value: float, breaches: bool) -> None:
    alarm = replace(ALARM, comparison=comparison, evaluation_periods=1, datapoints_to_alarm=1)
    assert evaluate(alarm, points(value, alarm=alarm), NOW).value == ("ALARM" if breaches else "OK")


def test_reasons_are_worded_as_cloudwatch_words_them() -> None:
    one = replace(ALARM, evaluation_periods=1, datapoints_to_alarm=1)
    verdict = evaluate(one, points(3.0, alarm=one), NOW)
    assert verdict.reason == (
        "Threshold Crossed: 1 datapoint [3.0 (15/01/27 08:01:00)] "
        "was greater than or equal to the threshold (1.0)."
    )
    data = json.loads(verdict.reason_data)
    assert data["statistic"] == "Sum" and data["period"] == 60 and data["recentDatapoints"] == [3.0]
    assert data["evaluatedDatapoints"] == [
        {"timestamp": "2027-01-15T08:01:00.000+0000", "sampleCount": 10.0, "value": 3.0}
    ]
    several = evaluate(ALARM, points(0, 2, 3), NOW)
    assert several.reason.startswith("Threshold Crossed: 2 out of the last 3 datapoints [")
    assert several.reason.endswith("(minimum 2 datapoints for OK -> ALARM transition).")
    assert evaluate(replace(ALARM, evaluation_periods=1, datapoints_to_alarm=1), [], NOW).reason == (
        "Insufficient Data: 1 datapoint was unknown."
    )


def test_a_percentile_on_few_samples_follows_evaluate_low_sample_count_percentile() -> None:
    p99 = replace(
        ALARM, statistic=None, extended_statistic="p99", evaluation_periods=1, datapoints_to_alarm=1
    )
    few = points(5.0, alarm=p99)  # 10 samples: fewer than the 1000 a p99 needs
    assert evaluate(replace(p99, evaluate_low_sample_count_percentile="ignore"), few, NOW).value is None
    assert evaluate(replace(p99, evaluate_low_sample_count_percentile="evaluate"), few, NOW).value == "ALARM"
