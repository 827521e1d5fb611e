"""The records of moorage's CloudWatch: metric names, queries, datapoints and alarm states.

Frozen dataclasses, shared by the history store, the alarm evaluator, the API operations and the rooms
that read them (deployment guardrails read alarm states; the web console charts `query` results).
Metric names and units are SageMaker's endpoint invocation metrics as CloudWatch reports them, under the
namespace `AWS/SageMaker` with the dimensions `EndpointName` and `VariantName`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ALARM_STATES",
    "DIMENSION_NAMES",
    "METRICS",
    "NAMESPACE",
    "STATISTICS",
    "AlarmState",
    "AlarmStateChange",
    "Datapoint",
    "MetricKey",
    "MetricQuery",
    "metric_key",
]

NAMESPACE = "AWS/SageMaker"
DIMENSION_NAMES = ("EndpointName", "VariantName")

# Metric name → CloudWatch unit. Counters are published as SageMaker does: one value per request (1 for
# Invocations; 1 or 0 for the error metrics), so SampleCount is the request count and Average is a rate.
METRICS: dict[str, str] = {
    "Invocations": "None",
    "Invocation4XXErrors": "None",
    "Invocation5XXErrors": "None",
    "InvocationModelErrors": "None",
    "InvocationsPerInstance": "None",
    "ModelLatency": "Microseconds",
    "OverheadLatency": "Microseconds",
}

STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")

AlarmStateValue = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
ALARM_STATES: tuple[AlarmStateValue, ...] = ("OK", "ALARM", "INSUFFICIENT_DATA")


@dataclass(frozen=True, order=True)
class MetricKey:
    """One metric of one variant: SageMaker's metric name and its two dimensions."""

    metric: str
    endpoint: str
    variant: str
    namespace: str = NAMESPACE

    def dimensions(self) -> list[dict[str, str]]:
        """CloudWatch's `Dimensions` member for this metric."""
        return [
            {"Name": "EndpointName", "Value": self.endpoint},
            {"Name": "VariantName", "Value": self.variant},
        ]


@dataclass(frozen=True)
class MetricQuery:
    """One statistic of one metric over [start, end) in periods of `period_s` seconds.

    `statistic` is one of `STATISTICS` or a percentile `p0.0`..`p100` (an ExtendedStatistic).
    Periods are aligned to multiples of `period_s` since the epoch, as CloudWatch aligns them.
    """

    key: MetricKey
    start: float  # epoch seconds
    end: float
    period_s: int
    statistic: str


@dataclass(frozen=True)
class Datapoint:
    """One period's aggregate. `value` is the queried statistic; the others are there for
    GetMetricStatistics, which returns several statistics at once."""

    timestamp: float  # the period's start, epoch seconds
    value: float
    sample_count: float
    sum: float
    minimum: float
    maximum: float
    unit: str
    percentiles: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AlarmState:
    """An alarm's state as DescribeAlarms reports it."""

    value: AlarmStateValue
    reason: str
    reason_data: str  # JSON text, as CloudWatch's StateReasonData
    updated: float  # StateUpdatedTimestamp, epoch seconds
    transitioned: float  # StateTransitionedTimestamp: the last time `value` changed


@dataclass(frozen=True)
class AlarmStateChange:
    """What `CloudWatchService.subscribe` callbacks receive when an alarm's state value changes."""

    alarm: str
    old: AlarmStateValue
    new: AlarmStateValue
    reason: str
    timestamp: float


def metric_key(
    namespace: str,
    metric: str,
    dimensions: list[tuple[str, str | None]] | tuple[tuple[str, str], ...],
    unit: str | None,
) -> MetricKey | None:
    """The history's metric for these names, or None when no datapoint can match them: CloudWatch
    matches the whole set of dimensions, and a Unit other than the metric's own finds nothing."""
    names = dict(dimensions)
    if namespace != NAMESPACE or metric not in METRICS or set(names) != set(DIMENSION_NAMES):
        return None
    if unit is not None and unit != METRICS[metric]:
        return None
    return MetricKey(metric, str(names["EndpointName"]), str(names["VariantName"]), namespace)
