"""The CloudWatch operations moorage serves, by name (the HTTP edge looks them up here)."""

from __future__ import annotations

from moorage.cloudwatch.alarm_ops import delete_alarms, describe_alarms, put_metric_alarm, set_alarm_state
from moorage.cloudwatch.context import Operation
from moorage.cloudwatch.metric_ops import get_metric_data, get_metric_statistics, list_metrics

__all__ = ["OPERATIONS"]

OPERATIONS: dict[str, Operation] = {
    "PutMetricAlarm": put_metric_alarm,
    "DescribeAlarms": describe_alarms,
    "DeleteAlarms": delete_alarms,
    "SetAlarmState": set_alarm_state,
    "GetMetricStatistics": get_metric_statistics,
    "GetMetricData": get_metric_data,
    "ListMetrics": list_metrics,
}
