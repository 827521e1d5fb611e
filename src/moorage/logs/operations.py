"""The CloudWatch Logs operations we answer, over the endpoints' log files: JSON in, JSON out.

DescribeLogGroups, DescribeLogStreams, GetLogEvents and FilterLogEvents, with the members and
defaults of botocore's `logs` model. Each runs on a thread (it reads files), holding the rotation
lock for reading so it never sees a stream half-rotated. Deliberate subset:
- filterPattern is a plain, case-sensitive substring (surrounding double quotes are dropped, so
  CloudWatch's quoted-phrase form works too); CloudWatch's term and JSON syntax is not parsed.
- One request scans at most `MAX_SCAN_BYTES`; FilterLogEvents then returns what it found with a
  nextToken (possibly no events), as CloudWatch does, and clients page on.
- Data protection, accounts, classes other than STANDARD and retention do not exist here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moorage.logs.errors import InvalidParameterException, ResourceNotFoundException
from moorage.logs.layout import LogsLayout, StreamFiles, endpoint_of_group, group_name, resolve_group
from moorage.logs.reader import (
    SKEW_MS,
    WINDOW,
    Budget,
    ForwardScan,
    LogEvent,
    TimeRange,
    read_backward,
    seek_time,
)
from moorage.logs.rotation import ReadWriteLock
from moorage.logs.tokens import (
    decode_event_token,
    decode_filter_token,
    decode_page_token,
    encode_event_token,
    encode_filter_token,
    encode_page_token,
)

__all__ = ["MAX_SCAN_BYTES", "OPERATIONS", "LogsContext"]

JsonObject = dict[str, Any]

MAX_SCAN_BYTES = 8 * 1024 * 1024
MAX_RESPONSE_BYTES = 1024 * 1024  # CloudWatch's cap on the events of one response
MAX_EVENTS = 10_000
MAX_DESCRIBE = 50


@dataclass(frozen=True)
class LogsContext:
    layout: LogsLayout
    lock: ReadWriteLock
    region: str
    account_id: str

    def group_arn(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{group}"


# Parameters ---------------------------------------------------------------------------------------
def _integer(params: JsonObject, name: str, *, minimum: int = 0, maximum: int | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
        bound = f" and {maximum}" if maximum is not None else ""
        raise InvalidParameterException(f"{name} must be an integer between {minimum}{bound}.")
    return value


def _limit(params: JsonObject, maximum: int) -> int:
    return _integer(params, "limit", minimum=1, maximum=maximum) or maximum


def _string(params: JsonObject, name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidParameterException(f"{name} must be a string.")
    return value


def _flag(params: JsonObject, name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise InvalidParameterException(f"{name} must be true or false.")
    return value


def _endpoint(params: JsonObject) -> str:
    return endpoint_of_group(resolve_group(params.get("logGroupName"), params.get("logGroupIdentifier")))


def _window(params: JsonObject) -> TimeRange:
    window = TimeRange(_integer(params, "startTime"), _integer(params, "endTime"))
    if window.start is not None and window.end is not None and window.start > window.end:
        raise InvalidParameterException("startTime must not be after endTime.")
    return window


def _first_position(files: StreamFiles, window: TimeRange) -> int:
    return files.start if window.start is None else seek_time(files, window.start - SKEW_MS)


# DescribeLogGroups --------------------------------------------------------------------------------
def describe_log_groups(ctx: LogsContext, params: JsonObject) -> JsonObject:
    limit = _limit(params, MAX_DESCRIBE)
    prefix, pattern = _string(params, "logGroupNamePrefix"), _string(params, "logGroupNamePattern")
    if prefix is not None and pattern is not None:
        raise InvalidParameterException(
            "LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters."
        )
    identifiers = params.get("logGroupIdentifiers")
    if identifiers is not None and not (
        isinstance(identifiers, list) and all(isinstance(name, str) for name in identifiers)
    ):
        raise InvalidParameterException("logGroupIdentifiers must be a list of names or ARNs.")
    wanted = None if identifiers is None else {resolve_group(None, name) for name in identifiers}
    standard = params.get("logGroupClass") in (None, "STANDARD")
    after, _ = decode_page_token(params["nextToken"]) if params.get("nextToken") else (None, 0)
    names = [
        name
        for name in map(group_name, ctx.layout.groups())
        if standard
        and (prefix is None or name.startswith(prefix))
        and (pattern is None or pattern.lower() in name.lower())
        and (wanted is None or name in wanted)
        and (after is None or name > after)
    ]
    groups = []
    with ctx.lock.reading():
        for name in names[:limit]:
            try:
                created, stored = ctx.layout.group_info(endpoint_of_group(name))
            except (ResourceNotFoundException, FileNotFoundError):
                continue  # removed while we listed
            arn = ctx.group_arn(name)
            groups.append(
                {
                    "logGroupName": name,
                    "creationTime": created,
                    "metricFilterCount": 0,
                    "arn": f"{arn}:*",
                    "storedBytes": stored,
                    "logGroupClass": "STANDARD",
                    "logGroupArn": arn,
                }
            )
    result: JsonObject = {"logGroups": groups}
    if len(names) > limit:
        result["nextToken"] = encode_page_token(after=names[limit - 1])
    return result


# DescribeLogStreams -------------------------------------------------------------------------------
def _stream_summary(ctx: LogsContext, group: str, files: StreamFiles) -> JsonObject:
    summary: JsonObject = {
        "logStreamName": files.name,
        "creationTime": files.mtime_ms,
        "arn": f"{ctx.group_arn(group)}:log-stream:{files.name}",
        "storedBytes": files.stored_bytes,
    }
    first = ForwardScan(files, files.start, TimeRange()).next_event(Budget(1))
    if first is not None:
        last, _, _ = read_backward(files, files.end, 1, TimeRange(), WINDOW)
        latest = last[-1].timestamp if last else files.mtime_ms
        summary.update(
            creationTime=min(first.timestamp, files.mtime_ms),
            firstEventTimestamp=first.timestamp,
            lastEventTimestamp=latest,
            lastIngestionTime=latest,
        )
    return summary


def describe_log_streams(ctx: LogsContext, params: JsonObject) -> JsonObject:
    endpoint = _endpoint(params)
    group = group_name(endpoint)
    limit = _limit(params, MAX_DESCRIBE)
    order = params.get("orderBy", "LogStreamName")
    if order not in ("LogStreamName", "LastEventTime"):
        raise InvalidParameterException("orderBy must be LogStreamName or LastEventTime.")
    prefix = _string(params, "logStreamNamePrefix")
    if prefix is not None and order == "LastEventTime":
        raise InvalidParameterException("Cannot order by LastEventTime with a logStreamNamePrefix.")
    descending = _flag(params, "descending")
    after, skip = decode_page_token(params["nextToken"]) if params.get("nextToken") else (None, 0)
    with ctx.lock.reading():
        summaries = []
        for name in ctx.layout.streams(endpoint):
            if prefix is None or name.startswith(prefix):
                try:
                    summaries.append(_stream_summary(ctx, group, ctx.layout.snapshot(endpoint, name)))
                except ResourceNotFoundException:
                    continue  # removed while we listed
    if order == "LastEventTime":
        summaries.sort(key=lambda s: (s.get("lastEventTimestamp", 0), s["logStreamName"]), reverse=descending)
        page, more = summaries[skip : skip + limit], len(summaries) > skip + limit
        token = encode_page_token(skip=skip + limit)
    else:
        summaries.sort(key=lambda s: str(s["logStreamName"]), reverse=descending)
        if after is not None:
            summaries = [
                s
                for s in summaries
                if (s["logStreamName"] < after if descending else s["logStreamName"] > after)
            ]
        page, more = summaries[:limit], len(summaries) > limit
        token = encode_page_token(after=page[-1]["logStreamName"]) if page else ""
    result: JsonObject = {"logStreams": page}
    if more:
        result["nextToken"] = token
    return result


# GetLogEvents -------------------------------------------------------------------------------------
def _output(event: LogEvent) -> JsonObject:
    return {"timestamp": event.timestamp, "message": event.message, "ingestionTime": event.timestamp}


def get_log_events(ctx: LogsContext, params: JsonObject) -> JsonObject:
    endpoint = _endpoint(params)
    stream = _string(params, "logStreamName")
    if not stream:
        raise InvalidParameterException("logStreamName is required.")
    limit = _limit(params, MAX_EVENTS)
    window = _window(params)
    token = _string(params, "nextToken")
    from_head = _flag(params, "startFromHead")
    # A token carries its own direction; without one, startFromHead picks the oldest or newest events.
    direction, position = decode_event_token(token) if token else ("f" if from_head else "b", None)
    with ctx.lock.reading():
        files = ctx.layout.snapshot(endpoint, stream)
        if direction == "f":
            events, older, newer = _forward_page(files, position, window, limit)
        else:
            before = files.end if position is None else position
            events, older, newer = read_backward(files, before, limit, window, MAX_SCAN_BYTES)
            size = sum(event.size for event in events)
            while size > MAX_RESPONSE_BYTES:  # keep the newest that fit; the rest is on the next page
                size -= events.pop(0).size
                older = events[0].start
    return {
        "events": [_output(event) for event in events],
        "nextForwardToken": encode_event_token("f", newer),
        "nextBackwardToken": encode_event_token("b", older),
    }


def _forward_page(
    files: StreamFiles, position: int | None, window: TimeRange, limit: int
) -> tuple[list[LogEvent], int, int]:
    """(events, where older ones end, where newer ones start) reading forward from `position`."""
    scan = ForwardScan(files, _first_position(files, window) if position is None else position, window)
    start, budget = scan.position, Budget(MAX_SCAN_BYTES)
    events: list[LogEvent] = []
    size = 0
    while len(events) < limit and (event := scan.next_event(budget)) is not None:
        if events and size + event.size > MAX_RESPONSE_BYTES:
            return events, events[0].start, event.start
        events.append(event)
        size += event.size
    return events, events[0].start if events else start, scan.position


# FilterLogEvents ----------------------------------------------------------------------------------
def _pattern(params: JsonObject) -> str | None:
    pattern = (_string(params, "filterPattern") or "").strip()
    if len(pattern) >= 2 and pattern[0] == pattern[-1] == '"':
        pattern = pattern[1:-1]
    return pattern or None


def _filtered(event: LogEvent) -> JsonObject:
    return {"logStreamName": event.stream, **_output(event), "eventId": event.event_id}


def _filter_streams(ctx: LogsContext, endpoint: str, params: JsonObject) -> list[str]:
    names, prefix = params.get("logStreamNames"), _string(params, "logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise InvalidParameterException("logStreamNames and logStreamNamePrefix are mutually exclusive.")
    if names is None:
        return [name for name in ctx.layout.streams(endpoint) if prefix is None or name.startswith(prefix)]
    if (
        not isinstance(names, list)
        or not 1 <= len(names) <= 100
        or not all(isinstance(n, str) for n in names)
    ):
        raise InvalidParameterException("logStreamNames must list 1 to 100 stream names.")
    return list(dict.fromkeys(names))


def filter_log_events(ctx: LogsContext, params: JsonObject) -> JsonObject:
    endpoint = _endpoint(params)
    limit = _limit(params, MAX_EVENTS)
    window, pattern = _window(params), _pattern(params)
    token = _string(params, "nextToken")
    positions = decode_filter_token(token) if token else {}
    with ctx.lock.reading():
        ctx.layout.group_dir(endpoint)
        scans = []
        for name in _filter_streams(ctx, endpoint, params):
            try:
                files = ctx.layout.snapshot(endpoint, name)
            except ResourceNotFoundException:
                continue  # CloudWatch searches the streams that exist
            start = positions[name] if name in positions else _first_position(files, window)
            scans.append(ForwardScan(files, start, window, pattern))
        events, heads = _merge(scans, limit)
    result: JsonObject = {
        "events": [_filtered(event) for event in events],
        "searchedLogStreams": [
            {"logStreamName": scan.files.name, "searchedCompletely": scan.exhausted and i not in heads}
            for i, scan in enumerate(scans)
        ],
    }
    if heads or not all(scan.exhausted for scan in scans):
        result["nextToken"] = encode_filter_token(
            {scan.files.name: heads[i].start if i in heads else scan.position for i, scan in enumerate(scans)}
        )
    return result


def _merge(scans: list[ForwardScan], limit: int) -> tuple[list[LogEvent], dict[int, LogEvent]]:
    """Interleave the streams by time stamp: (events, each stream's next event not yet returned).

    An event is returned only once every stream still open has shown its next one, so the order
    holds across pages; the scan stops at `limit` events, 1 MB of them, or the byte budget.
    """
    budget = Budget(MAX_SCAN_BYTES)
    heads: dict[int, LogEvent] = {}
    events: list[LogEvent] = []
    size = 0
    while len(events) < limit:
        for i, scan in enumerate(scans):
            if i not in heads and not scan.exhausted:
                event = scan.next_event(budget)
                if event is not None:
                    heads[i] = event
                elif not scan.exhausted:
                    return events, heads  # out of budget: this stream's next event is unknown
        if not heads:
            break
        first = min(heads, key=lambda i: (heads[i].timestamp, i))
        if events and size + heads[first].size > MAX_RESPONSE_BYTES:
            break
        event = heads.pop(first)
        events.append(event)
        size += event.size
    return events, heads


Operation = Callable[[LogsContext, JsonObject], JsonObject]

OPERATIONS: dict[str, Operation] = {
    "DescribeLogGroups": describe_log_groups,
    "DescribeLogStreams": describe_log_streams,
    "GetLogEvents": get_log_events,
    "FilterLogEvents": filter_log_events,
}
