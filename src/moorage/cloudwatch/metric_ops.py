"""GetMetricStatistics, GetMetricData and ListMetrics over moorage's metric history.

The metrics are SageMaker's endpoint invocation metrics (`records.METRICS`) under `AWS/SageMaker`, with
exactly the dimensions `EndpointName` and `VariantName`, as SageMaker publishes them. A query for any
other metric, namespace or set of dimensions finds no datapoints, as it would in CloudWatch. Metric math
expressions, dynamic labels and cross-account queries are refused by name.
"""

from __future__ import annotations

import re
from typing import Any

from moorage.cloudwatch.context import CloudWatchContext, Params, Timestamp
from moorage.cloudwatch.errors import InvalidParameterCombination, InvalidParameterValue, MissingParameter
from moorage.cloudwatch.inputs import (
    check_period,
    dimensions,
    integer,
    make_token,
    page_token,
    refuse,
    required,
    seconds,
    statistic_name,
    string,
)
from moorage.cloudwatch.records import STATISTICS, Datapoint, MetricKey, MetricQuery, metric_key

__all__ = ["QUERY_REFUSED", "get_metric_data", "get_metric_statistics", "list_metrics"]

_MAX_STATISTICS_POINTS = 1440  # GetMetricStatistics' limit per call
_MAX_QUERIES = 500
_DEFAULT_MAX_DATAPOINTS = 100_800
_LIST_PAGE = 500
_RECENT_S = 3 * 3600  # RecentlyActive=PT3H
_QUERY_ID = re.compile(r"[a-z][a-zA-Z0-9_]*")
_ONE_ACCOUNT = "moorage serves one account"
# Members of a MetricDataQuery refused by name (a query's own Period is for expressions only).
QUERY_REFUSED = {
    "Expression": "metric math expressions are not evaluated; query one MetricStat per Id.",
    "Period": "a query's Period applies to an Expression; give MetricStat.Period.",
}


def get_metric_statistics(ctx: CloudWatchContext, params: Params) -> Params:
    namespace = string(params, "Namespace", need=True)
    metric = string(params, "MetricName", need=True)
    assert namespace is not None and metric is not None
    pairs = dimensions(params)
    start, end = _time_range(params)
    period = integer(params, "Period", need=True)
    assert period is not None
    check_period(period, ctx.min_period_s)
    statistics = params.get("Statistics") or []
    extended = params.get("ExtendedStatistics") or []
    if not statistics and not extended:
        raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics.")
    if not isinstance(statistics, list) or any(s not in STATISTICS for s in statistics):
        raise InvalidParameterValue(f"The parameter Statistics may hold {', '.join(STATISTICS)}.")
    if not isinstance(extended, list) or len(extended) > 10:
        raise InvalidParameterValue(
            "The parameter ExtendedStatistics must be a list of at most 10 percentiles."
        )
    for name in extended:
        if statistic_name(name, "ExtendedStatistics") in STATISTICS:
            raise InvalidParameterValue(f"ExtendedStatistics holds percentiles such as p99, not {name!r}.")
    wanted = (end - start) / period
    if wanted > _MAX_STATISTICS_POINTS:
        raise InvalidParameterCombination(
            f"You have requested up to {int(wanted)} datapoints, which exceeds the limit of "
            f"{_MAX_STATISTICS_POINTS}. You may reduce the datapoints requested by increasing Period, "
            "or decreasing the time range."
        )
    key = metric_key(namespace, metric, pairs, string(params, "Unit", high=32))
    datapoints: list[Params] = []
    if key is not None:
        by_time: dict[float, Params] = {}
        for point in ctx.history.query(MetricQuery(key, start, end, period, "Sum")):
            entry: Params = {"Timestamp": Timestamp(point.timestamp), "Unit": point.unit}
            entry.update({s: _statistic(point, s) for s in statistics})
            by_time[point.timestamp] = entry
        for percentile in extended:
            for point in ctx.history.query(MetricQuery(key, start, end, period, percentile)):
                by_time[point.timestamp].setdefault("ExtendedStatistics", {})[percentile] = point.value
        datapoints = [by_time[t] for t in sorted(by_time)]
    return {"Label": metric, "Datapoints": datapoints}


def get_metric_data(ctx: CloudWatchContext, params: Params) -> Params:
    queries = required(params, "MetricDataQueries")
    if not isinstance(queries, list) or not 1 <= len(queries) <= _MAX_QUERIES:
        raise InvalidParameterValue(f"The parameter MetricDataQueries must hold 1 to {_MAX_QUERIES} queries.")
    start, end = _time_range(params)
    scan = params.get("ScanBy") or "TimestampDescending"
    if scan not in ("TimestampDescending", "TimestampAscending"):
        raise InvalidParameterValue("The parameter ScanBy must be TimestampDescending or TimestampAscending.")
    limit = integer(params, "MaxDatapoints") or _DEFAULT_MAX_DATAPOINTS
    skip = page_token(params.get("NextToken")).get("skip", 0)
    if not isinstance(skip, int) or skip < 0:
        raise InvalidParameterValue("The NextToken is not one this server gave out.")
    results: list[Params] = []
    seen: set[str] = set()
    for index, query in enumerate(queries, 1):
        result = _one_query(ctx, query, index, start, end, seen)
        if result is None:
            continue
        if scan == "TimestampDescending":
            result["Timestamps"].reverse()
            result["Values"].reverse()
        results.append(result)
    return _page(results, skip, limit)


def list_metrics(ctx: CloudWatchContext, params: Params) -> Params:
    namespace = string(params, "Namespace")
    metric = string(params, "MetricName")
    filters = dimensions(params, values_required=False)
    if len(filters) > 10:
        raise InvalidParameterValue("The parameter Dimensions may hold at most 10 filters.")
    recently = params.get("RecentlyActive")
    if recently not in (None, "PT3H"):
        raise InvalidParameterValue("The parameter RecentlyActive must be PT3H.")
    owner = string(params, "OwningAccount")
    skip = page_token(params.get("NextToken")).get("skip", 0)
    if not isinstance(skip, int) or skip < 0:
        raise InvalidParameterValue("The NextToken is not one this server gave out.")
    since = ctx.clock() - _RECENT_S if recently else None
    keys = [] if owner not in (None, ctx.account_id) else ctx.history.list_metrics(since)
    matching = [
        key
        for key in keys
        if namespace in (None, key.namespace)
        and metric in (None, key.metric)
        and all(_has_dimension(key, name, value) for name, value in filters)
    ]
    page = matching[skip : skip + _LIST_PAGE]
    result: Params = {
        "Metrics": [
            {"Namespace": k.namespace, "MetricName": k.metric, "Dimensions": k.dimensions()} for k in page
        ]
    }
    if params.get("IncludeLinkedAccounts"):
        result["OwningAccounts"] = [ctx.account_id] * len(page)
    if skip + _LIST_PAGE < len(matching):
        result["NextToken"] = make_token({"skip": skip + _LIST_PAGE})
    return result


def _one_query(
    ctx: CloudWatchContext, query: Any, index: int, start: float, end: float, seen: set[str]
) -> Params | None:
    where = f"MetricDataQueries.member.{index}"
    if not isinstance(query, dict):
        raise InvalidParameterValue(f"The parameter {where} must be a structure.")
    query_id = query.get("Id")
    if not isinstance(query_id, str) or not _QUERY_ID.fullmatch(query_id) or len(query_id) > 255:
        raise InvalidParameterValue(
            f"The parameter {where}.Id must start with a lower-case letter and hold only letters, "
            "digits and _."
        )
    if query_id in seen:
        raise InvalidParameterValue(f"The Id {query_id!r} is used by more than one query.")
    seen.add(query_id)
    refuse(query, QUERY_REFUSED)
    account = query.get("AccountId")
    if account not in (None, ctx.account_id):
        raise InvalidParameterValue(f"{where}.AccountId {account!r}: {_ONE_ACCOUNT}, {ctx.account_id}.")
    stat = query.get("MetricStat")
    if not isinstance(stat, dict):
        raise MissingParameter(f"The parameter {where}.MetricStat is required (without an Expression).")
    metric = stat.get("Metric")
    if not isinstance(metric, dict):
        raise MissingParameter(f"The parameter {where}.MetricStat.Metric is required.")
    period = integer(stat, "Period", need=True)
    assert period is not None
    check_period(period, ctx.min_period_s, f"{where}.MetricStat.Period")
    statistic = statistic_name(required(stat, "Stat"), f"{where}.MetricStat.Stat")
    name = string(metric, "MetricName", need=True)
    namespace = string(metric, "Namespace", need=True)
    assert name is not None and namespace is not None
    label = query.get("Label") or name
    if not isinstance(label, str) or "${" in label:
        raise InvalidParameterValue(f"{where}.Label: dynamic labels (${{...}}) are not expanded here.")
    key = metric_key(namespace, name, dimensions(metric), string(stat, "Unit", high=32))
    points = ctx.history.query(MetricQuery(key, start, end, period, statistic)) if key is not None else []
    if query.get("ReturnData", True) is False:
        return None
    return {
        "Id": query_id,
        "Label": label,
        "Timestamps": [Timestamp(p.timestamp) for p in points],
        "Values": [p.value for p in points],
        "StatusCode": "Complete",
    }


def _page(results: list[Params], skip: int, limit: int) -> Params:
    """At most `limit` datapoints in all, after the first `skip` (a NextToken's position)."""
    out: list[Params] = []
    position, taken, more = 0, 0, False
    for result in results:
        count = len(result["Values"])
        begin = min(count, max(0, skip - position))
        room = limit - taken
        stop = min(count, begin + room)
        position += count
        sliced = {
            **result,
            "Timestamps": result["Timestamps"][begin:stop],
            "Values": result["Values"][begin:stop],
        }
        taken += stop - begin
        if stop < count:
            sliced["StatusCode"] = "PartialData"
            more = True
        out.append(sliced)
    response: Params = {"MetricDataResults": out, "Messages": []}
    if more:
        response["NextToken"] = make_token({"skip": skip + taken})
    return response


def _time_range(params: Params) -> tuple[float, float]:
    start, end = seconds(params, "StartTime"), seconds(params, "EndTime")
    if end <= start:
        raise InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
    return start, end


def _has_dimension(key: MetricKey, name: str, value: str | None) -> bool:
    values = {"EndpointName": key.endpoint, "VariantName": key.variant}
    return name in values and value in (None, values[name])


def _statistic(point: Datapoint, name: str) -> float:
    return {
        "SampleCount": point.sample_count,
        "Sum": point.sum,
        "Minimum": point.minimum,
        "Maximum": point.maximum,
        "Average": point.sum / point.sample_count if point.sample_count else 0.0,
    }[name]
