"""Every input member of the CloudWatch operations moorage serves is implemented or refused by name, so a
member that a newer botocore adds cannot be accepted and ignored unnoticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session
import pytest

from moorage.cloudwatch.alarm_ops import REFUSED_MEMBERS
from moorage.cloudwatch.alarms import AlarmStore
from moorage.cloudwatch.context import CloudWatchContext
from moorage.cloudwatch.errors import InvalidParameterValue
from moorage.cloudwatch.history import MetricHistory
from moorage.cloudwatch.metric_ops import QUERY_REFUSED
from moorage.cloudwatch.operations import OPERATIONS

IMPLEMENTED: dict[str, set[str]] = {
    "PutMetricAlarm": {
        "AlarmName", "AlarmDescription", "ActionsEnabled", "MetricName", "Namespace", "Statistic",
        "ExtendedStatistic", "Dimensions", "Period", "Unit", "EvaluationPeriods", "DatapointsToAlarm",
        "Threshold", "ComparisonOperator", "TreatMissingData", "EvaluateLowSampleCountPercentile",
    },
    "DescribeAlarms": {
        "AlarmNames", "AlarmNamePrefix", "AlarmTypes", "ChildrenOfAlarmName", "ParentsOfAlarmName",
        "StateValue", "ActionPrefix", "MaxRecords", "NextToken",
    },
    "DeleteAlarms": {"AlarmNames"},
    "SetAlarmState": {"AlarmName", "StateValue", "StateReason", "StateReasonData"},
    "GetMetricStatistics": {
        "Namespace", "MetricName", "Dimensions", "StartTime", "EndTime", "Period", "Statistics",
        "ExtendedStatistics", "Unit",
    },
    # LabelOptions only changes dynamic labels, which are refused.
    "GetMetricData": {
        "MetricDataQueries", "StartTime", "EndTime", "NextToken", "ScanBy", "MaxDatapoints", "LabelOptions",
    },
    "ListMetrics": {
        "Namespace", "MetricName", "Dimensions", "NextToken", "RecentlyActive", "IncludeLinkedAccounts",
        "OwningAccount",
    },
}  # fmt: skip
REFUSED = {"PutMetricAlarm": set(REFUSED_MEMBERS)}


def _input_members(operation: str) -> set[str]:
    model = botocore.session.get_session().get_service_model("cloudwatch")
    return set(model.operation_model(operation).input_shape.members)


def test_every_member_of_a_metric_data_query_is_implemented_or_refused() -> None:
    model = botocore.session.get_session().get_service_model("cloudwatch")
    members = set(model.shape_for("MetricDataQuery").members)
    assert members == {"Id", "MetricStat", "Label", "ReturnData", "AccountId"} | set(QUERY_REFUSED)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_member_is_implemented_or_refused(operation: str) -> None:
    assert _input_members(operation) == IMPLEMENTED[operation] | REFUSED.get(operation, set())


@pytest.mark.parametrize("member", sorted(REFUSED_MEMBERS))
def test_refused_members_name_themselves(member: str, tmp_path: Path) -> None:
    ctx = CloudWatchContext(
        MetricHistory(tmp_path / "h.sqlite3"), AlarmStore(tmp_path / "a.sqlite3"), "us-east-1", "0" * 12, 10
    )
    value: Any = 60 if member == "EvaluationInterval" else {"x": 1} if member[0] in "EWA" else ["x"]
    with pytest.raises(InvalidParameterValue, match=f"does not support {member}:"):
        OPERATIONS["PutMetricAlarm"](ctx, {"AlarmName": "a", member: value})
    assert ctx.alarms.states(["a"]) == {}
