"""PutMetricAlarm, DescribeAlarms, DeleteAlarms and SetAlarmState over the alarm store.

Metric alarms on one metric with a static threshold, as SageMaker deployment guardrails use them.
Alarm actions (SNS, Auto Scaling, EC2), metric math, anomaly-detection thresholds, tags and the newer
evaluation options are refused by name: an alarm that was accepted does everything it says.
"""

from __future__ import annotations

import json

from moorage.cloudwatch.alarms import MetricAlarm, StoredAlarm
from moorage.cloudwatch.context import CloudWatchContext, Params, Timestamp
from moorage.cloudwatch.errors import (
    InvalidFormat,
    InvalidParameterCombination,
    InvalidParameterValue,
    ResourceNotFound,
)
from moorage.cloudwatch.inputs import (
    check_period,
    dimensions,
    integer,
    make_token,
    number,
    page_token,
    refuse,
    required,
    statistic_name,
    string,
)
from moorage.cloudwatch.records import ALARM_STATES, STATISTICS, AlarmStateChange

__all__ = ["REFUSED_MEMBERS", "delete_alarms", "describe_alarms", "put_metric_alarm", "set_alarm_state"]

_COMPARISONS = (
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
)
_TREAT_MISSING = ("breaching", "notBreaching", "ignore", "missing")
_MAX_EVALUATION_S = 7 * 24 * 3600  # EvaluationPeriods × Period: CloudWatch's one-week bound
_NO_ACTIONS = "moorage runs no alarm actions (SNS, Auto Scaling, EC2, Systems Manager); leave it empty."
REFUSED_MEMBERS = {
    "OKActions": _NO_ACTIONS,
    "AlarmActions": _NO_ACTIONS,
    "InsufficientDataActions": _NO_ACTIONS,
    "Metrics": "metric math alarms are not evaluated; alarm on one metric with MetricName and Namespace.",
    "ThresholdMetricId": "anomaly-detection thresholds are not computed; use a static Threshold.",
    "Tags": "alarms carry no tags here (there is no TagResource or ListTagsForResource).",
    "EvaluationWindow": "alarms evaluate the last EvaluationPeriods periods only.",
    "WarmUpConfiguration": "alarms have no warm-up period here.",
    "EvaluationCriteria": "only metric alarms with a static Threshold are evaluated.",
    "EvaluationInterval": "alarms are evaluated at every metric sample (MOORAGE_CLOUDWATCH_SAMPLE).",
    "ActionConfiguration": _NO_ACTIONS,
}


def put_metric_alarm(ctx: CloudWatchContext, params: Params) -> Params:
    refuse(params, REFUSED_MEMBERS)
    name = string(params, "AlarmName", need=True)
    assert name is not None
    namespace = string(params, "Namespace", need=True)
    metric = string(params, "MetricName", need=True)
    assert namespace is not None and metric is not None
    if namespace.startswith(":"):
        raise InvalidParameterValue("The parameter Namespace must not start with ':'.")
    statistic, extended = params.get("Statistic"), params.get("ExtendedStatistic")
    if (statistic is None) == (extended is None):
        raise InvalidParameterCombination("Exactly one of Statistic and ExtendedStatistic must be given.")
    if statistic is not None and statistic not in STATISTICS:
        raise InvalidParameterValue(f"The parameter Statistic must be one of {', '.join(STATISTICS)}.")
    if extended is not None and (not isinstance(extended, str) or not extended.startswith("p")):
        raise InvalidParameterValue(
            f"The parameter ExtendedStatistic must be a percentile such as p99 (got {extended!r}; moorage "
            "does not compute trimmed means, IQM or other extended statistics)."
        )
    if extended is not None:
        statistic_name(extended, "ExtendedStatistic")
    period = integer(params, "Period", need=True)
    evaluation_periods = integer(params, "EvaluationPeriods", need=True)
    assert period is not None and evaluation_periods is not None
    check_period(period, ctx.min_period_s)
    if period * evaluation_periods > _MAX_EVALUATION_S:
        raise InvalidParameterValue(
            f"EvaluationPeriods × Period is {period * evaluation_periods} s; it may be at most one week "
            f"({_MAX_EVALUATION_S} s)."
        )
    to_alarm = integer(params, "DatapointsToAlarm") or evaluation_periods
    if to_alarm > evaluation_periods:
        raise InvalidParameterValue(
            f"DatapointsToAlarm ({to_alarm}) must not exceed EvaluationPeriods ({evaluation_periods})."
        )
    threshold = number(params, "Threshold", need=True)
    assert threshold is not None
    comparison = required(params, "ComparisonOperator")
    if comparison not in _COMPARISONS:
        raise InvalidParameterValue(
            f"The parameter ComparisonOperator must be one of {', '.join(_COMPARISONS)} (got {comparison!r}; "
            "the anomaly-band operators need anomaly detection, which moorage does not compute)."
        )
    treat = params.get("TreatMissingData") or "missing"
    if treat not in _TREAT_MISSING:
        raise InvalidParameterValue(
            f"The parameter TreatMissingData must be one of {', '.join(_TREAT_MISSING)}."
        )
    low_sample = params.get("EvaluateLowSampleCountPercentile") or None
    if low_sample not in (None, "evaluate", "ignore"):
        raise InvalidParameterValue(
            "The parameter EvaluateLowSampleCountPercentile must be evaluate or ignore."
        )
    if low_sample is not None and extended is None:
        raise InvalidParameterCombination(
            "EvaluateLowSampleCountPercentile applies only with an ExtendedStatistic."
        )
    actions_enabled = params.get("ActionsEnabled", True)
    if not isinstance(actions_enabled, bool):
        raise InvalidParameterValue("The parameter ActionsEnabled must be a boolean.")
    alarm = MetricAlarm(
        name=name,
        namespace=namespace,
        metric=metric,
        dimensions=tuple((n, v or "") for n, v in dimensions(params)),
        period_s=period,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=to_alarm,
        threshold=threshold,
        comparison=comparison,
        statistic=statistic,
        extended_statistic=extended,
        treat_missing_data=treat,
        description=string(params, "AlarmDescription", low=0, high=1024),
        unit=string(params, "Unit", high=32),
        actions_enabled=actions_enabled,
        evaluate_low_sample_count_percentile=low_sample,
    )
    ctx.alarms.put(alarm, ctx.clock())
    return {}


def describe_alarms(ctx: CloudWatchContext, params: Params) -> Params:
    names = params.get("AlarmNames")
    prefix = string(params, "AlarmNamePrefix")
    if names and prefix:
        raise InvalidParameterCombination("Give AlarmNames or AlarmNamePrefix, not both.")
    if names is not None and (not isinstance(names, list) or len(names) > 100):
        raise InvalidParameterValue("The parameter AlarmNames must be a list of at most 100 names.")
    state = params.get("StateValue")
    if state is not None and state not in ALARM_STATES:
        raise InvalidParameterValue(f"The parameter StateValue must be one of {', '.join(ALARM_STATES)}.")
    types = params.get("AlarmTypes") or ["MetricAlarm"]  # CloudWatch: omitted means metric alarms only
    if not isinstance(types, list) or any(t not in ("MetricAlarm", "CompositeAlarm") for t in types):
        raise InvalidParameterValue("The parameter AlarmTypes may hold MetricAlarm and CompositeAlarm.")
    limit = integer(params, "MaxRecords", high=100) or 50
    after = page_token(params.get("NextToken")).get("after", "")
    if not isinstance(after, str):
        raise InvalidParameterValue("The NextToken is not one this server gave out.")
    # No composite alarms exist here, so the composite-only filters match nothing; an ActionPrefix matches
    # nothing either, since no alarm has actions.
    composite_only = (
        params.get("ChildrenOfAlarmName") or params.get("ParentsOfAlarmName") or params.get("ActionPrefix")
    )
    if "MetricAlarm" not in types or composite_only:
        return {"MetricAlarms": [], "CompositeAlarms": []}
    if names is not None:
        found = [s for s in ctx.alarms.get(str(n) for n in names) if s.alarm.name > after]
        if state:
            found = [s for s in found if s.state.value == state]
        stored = found[: limit + 1]
    else:
        stored = ctx.alarms.page(after=after, limit=limit + 1, prefix=prefix, state=state)
    result: Params = {"MetricAlarms": [_describe(ctx, s) for s in stored[:limit]], "CompositeAlarms": []}
    if len(stored) > limit:
        result["NextToken"] = make_token({"after": stored[limit - 1].alarm.name})
    return result


def delete_alarms(ctx: CloudWatchContext, params: Params) -> Params:
    names = required(params, "AlarmNames")
    if not isinstance(names, list) or len(names) > 100 or not all(isinstance(n, str) for n in names):
        raise InvalidParameterValue("The parameter AlarmNames must be a list of at most 100 names.")
    ctx.alarms.delete(names)
    return {}


def set_alarm_state(ctx: CloudWatchContext, params: Params) -> Params:
    name = string(params, "AlarmName", need=True)
    value = required(params, "StateValue")
    reason = string(params, "StateReason", low=0, high=1023, need=True)
    data = string(params, "StateReasonData", low=0, high=4000) or "{}"
    assert name is not None and reason is not None
    if value not in ALARM_STATES:
        raise InvalidParameterValue(f"The parameter StateValue must be one of {', '.join(ALARM_STATES)}.")
    try:
        json.loads(data)
    except ValueError:
        raise InvalidFormat("The parameter StateReasonData must be valid JSON.") from None
    now = ctx.clock()
    old = ctx.alarms.set_state(name, value, reason, data, now)
    if old is None:
        raise ResourceNotFound(f"No alarm is named {name!r}.")
    if old != value:
        ctx.changed(AlarmStateChange(name, old, value, reason, now))
    return {}


def _describe(ctx: CloudWatchContext, stored: StoredAlarm) -> Params:
    alarm, state = stored.alarm, stored.state
    described: Params = {
        "AlarmName": alarm.name,
        "AlarmArn": ctx.alarm_arn(alarm.name),
        "AlarmConfigurationUpdatedTimestamp": Timestamp(stored.configured),
        "ActionsEnabled": alarm.actions_enabled,
        "OKActions": [],
        "AlarmActions": [],
        "InsufficientDataActions": [],
        "StateValue": state.value,
        "StateReason": state.reason,
        "StateReasonData": state.reason_data,
        "StateUpdatedTimestamp": Timestamp(state.updated),
        "StateTransitionedTimestamp": Timestamp(state.transitioned),
        "MetricName": alarm.metric,
        "Namespace": alarm.namespace,
        "Dimensions": [{"Name": n, "Value": v} for n, v in alarm.dimensions],
        "Period": alarm.period_s,
        "EvaluationPeriods": alarm.evaluation_periods,
        "DatapointsToAlarm": alarm.datapoints_to_alarm,
        "Threshold": alarm.threshold,
        "ComparisonOperator": alarm.comparison,
        "TreatMissingData": alarm.treat_missing_data,
    }
    optional = {
        "AlarmDescription": alarm.description,
        "Statistic": alarm.statistic,
        "ExtendedStatistic": alarm.extended_statistic,
        "Unit": alarm.unit,
        "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile,
    }
    described.update({key: value for key, value in optional.items() if value is not None})
    if state.reason_data == "{}":
        del described["StateReasonData"]
    return described
