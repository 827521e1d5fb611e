"""One alarm's evaluation: its last EvaluationPeriods datapoints → OK, ALARM or INSUFFICIENT_DATA.

Pure logic (the service feeds it datapoints read from the history), following CloudWatch's rules:
the evaluation range is the last `EvaluationPeriods` complete periods, aligned to multiples of `Period`;
the alarm is ALARM when at least `DatapointsToAlarm` of them breach the threshold. Missing periods follow
TreatMissingData: `breaching` / `notBreaching` count them as such; `missing` and `ignore` leave them out,
and when every period is missing the alarm goes to INSUFFICIENT_DATA (`missing`) or keeps its state
(`ignore`). A percentile alarm whose period has fewer samples than CloudWatch's minimum for a statistical
answer follows EvaluateLowSampleCountPercentile (`ignore`: keep the state; `evaluate`: use the value).
The state reason and its JSON data are worded as CloudWatch words them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from moorage.cloudwatch.alarms import MetricAlarm
from moorage.cloudwatch.records import AlarmStateValue, Datapoint

__all__ = ["Verdict", "evaluate", "evaluation_range"]

_OPERATORS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda v, t: v >= t),
    "GreaterThanThreshold": ("greater than", lambda v, t: v > t),
    "LessThanThreshold": ("less than", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda v, t: v <= t),
}
# CloudWatch needs this many samples in a period before a percentile is statistically meaningful
# (10 / (1 - p)); below it EvaluateLowSampleCountPercentile decides.
_LOW_SAMPLE_FACTOR = 10.0


@dataclass(frozen=True)
class Verdict:
    """The state an evaluation arrives at; `None` value: keep the current state (nothing is written)."""

    value: AlarmStateValue | None
    reason: str
    reason_data: str


def evaluation_range(alarm: MetricAlarm, now: float) -> tuple[float, float]:
    """[start, end) of the last EvaluationPeriods complete periods before `now`."""
    end = math.floor(now / alarm.period_s) * alarm.period_s
    return end - alarm.evaluation_periods * alarm.period_s, float(end)


def evaluate(alarm: MetricAlarm, points: list[Datapoint], now: float) -> Verdict:
    """`points`: the history's datapoints inside `evaluation_range(alarm, now)` for the alarm's statistic."""
    start, _ = evaluation_range(alarm, now)
    by_start = {point.timestamp: point for point in points}
    periods = [start + i * alarm.period_s for i in range(alarm.evaluation_periods)]
    words, breaches = _OPERATORS[alarm.comparison]
    evaluated: list[tuple[float, Datapoint | None]] = [(p, by_start.get(p)) for p in reversed(periods)]
    statistic = alarm.statistic or alarm.extended_statistic or ""
    low = alarm.extended_statistic and _low_sample(alarm, [p for _, p in evaluated if p is not None])
    if low and alarm.evaluate_low_sample_count_percentile == "ignore":
        return Verdict(None, "", "")
    present = [(p, point) for p, point in evaluated if point is not None]
    missing = len(evaluated) - len(present)
    treat = alarm.treat_missing_data
    present_breaching = sum(1 for _, point in present if breaches(point.value, alarm.threshold))
    breaching = present_breaching + (missing if treat == "breaching" else 0)
    not_breaching = len(present) - present_breaching + (missing if treat == "notBreaching" else 0)
    m, n = alarm.datapoints_to_alarm, alarm.evaluation_periods
    data = _reason_data(alarm, statistic, start, now, present)
    if not present and treat in ("missing", "ignore"):
        if treat == "ignore":
            return Verdict(None, "", "")
        unknown = _plural(n, "datapoint")
        return Verdict(
            "INSUFFICIENT_DATA", f"Insufficient Data: {unknown} {'was' if n == 1 else 'were'} unknown.", data
        )
    shown = ", ".join(f"{point.value!r} ({_short_date(p)})" for p, point in present)
    if breaching >= m:
        verb = "was" if breaching == 1 else "were"
        counted = _plural(breaching, "datapoint") if n == 1 else f"{breaching} out of the last {n} datapoints"
        reason = f"Threshold Crossed: {counted} [{shown}] {verb} {words} the threshold ({alarm.threshold!r})"
        if n > 1:
            reason += f" (minimum {_plural(m, 'datapoint')} for OK -> ALARM transition)"
        return Verdict("ALARM", reason + ".", data)
    verb = "was" if not_breaching == 1 else "were"
    counted = (
        _plural(not_breaching, "datapoint") if n == 1 else f"{not_breaching} out of the last {n} datapoints"
    )
    reason = f"Threshold Crossed: {counted} [{shown}] {verb} not {words} the threshold ({alarm.threshold!r})"
    if n > 1:
        reason += f" (minimum {_plural(n - m + 1, 'datapoint')} for ALARM -> OK transition)"
    if not present:
        reason = (
            f"Threshold Crossed: no datapoints were received for {_plural(n, 'period')} and "
            f"{_plural(missing, 'missing datapoint')} {'was' if missing == 1 else 'were'} "
            "treated as [NonBreaching]"
        )
    return Verdict("OK", reason + ".", data)


def _low_sample(alarm: MetricAlarm, points: list[Datapoint]) -> bool:
    percent = float((alarm.extended_statistic or "p0")[1:] or 0)
    needed = _LOW_SAMPLE_FACTOR / max(1e-9, 1.0 - percent / 100.0)
    return any(point.sample_count < needed for point in points)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _short_date(timestamp: float) -> str:
    return time.strftime("%d/%m/%y %H:%M:%S", time.gmtime(timestamp))


def _iso(timestamp: float) -> str:
    millis = round((timestamp % 1) * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{millis:03d}+0000"


def _reason_data(
    alarm: MetricAlarm, statistic: str, start: float, now: float, present: list[tuple[float, Datapoint]]
) -> str:
    data: dict[str, object] = {
        "version": "1.0",
        "queryDate": _iso(now),
        "startDate": _iso(start),
        "unit": alarm.unit,
        "period": alarm.period_s,
        "recentDatapoints": [point.value for _, point in present],
        "threshold": alarm.threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(p), "sampleCount": point.sample_count, "value": point.value}
            for p, point in present
        ],
    }
    data["statistic" if alarm.statistic else "extendedStatistic"] = statistic
    if data["unit"] is None:
        del data["unit"]
    return json.dumps(data, separators=(",", ":"))
