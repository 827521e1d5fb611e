"""The CloudWatch Logs operations over synthetic files: pagination tokens, time filters, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.logs import OPERATIONS, LogsContext
from moorage.logs.errors import InvalidParameterException, ResourceNotFoundException
from moorage.logs.operations import MAX_SCAN_BYTES
from moorage.logs.reader import MAX_LINE_BYTES
from support.logfiles import BASE_MS, GROUP, context, logged, write_stream

STREAM = "AllTraffic/i-0123456789abcdef0"


def call(ctx: LogsContext, operation: str, **params: Any) -> dict[str, Any]:
    return OPERATIONS[operation](ctx, params)


def messages(result: dict[str, Any]) -> list[str]:
    return [event["message"].rsplit(": ", 1)[-1] for event in result["events"]]


@pytest.fixture
def ten(tmp_path: Path) -> LogsContext:
    """One stream of ten events e0..e9, stamped BASE_MS + 0, 10, ..., 90."""
    write_stream(tmp_path, STREAM, "".join(logged(BASE_MS + 10 * i, f"e{i}") for i in range(10)))
    return context(tmp_path)


ALL = [f"e{i}" for i in range(10)]


def get(ctx: LogsContext, **params: Any) -> dict[str, Any]:
    return call(ctx, "GetLogEvents", logGroupName=GROUP, logStreamName=STREAM, **params)


# GetLogEvents ---------------------------------------------------------------------------------------
def test_forward_pages_cover_the_stream_and_the_last_token_repeats(ten: LogsContext) -> None:
    page = get(ten, startFromHead=True, limit=4)
    seen = messages(page)
    while True:
        token = page["nextForwardToken"]
        page = get(ten, nextToken=token, limit=4)
        seen += messages(page)
        if page["nextForwardToken"] == token:
            break
    assert seen == ALL
    assert page["events"] == []
    assert token.startswith("f/")


def test_without_start_from_head_the_newest_come_first_and_backward_tokens_go_back(ten: LogsContext) -> None:
    page = get(ten, limit=4)
    assert messages(page) == ["e6", "e7", "e8", "e9"]
    pages = [messages(page)]
    while True:
        token = page["nextBackwardToken"]
        page = get(ten, nextToken=token, limit=4)
        if not page["events"]:
            assert page["nextBackwardToken"] == token  # the beginning: the token stays put
            break
        pages.append(messages(page))
    assert pages == [["e6", "e7", "e8", "e9"], ["e2", "e3", "e4", "e5"], ["e0", "e1"]]
    forward = get(ten, nextToken=get(ten, limit=4)["nextForwardToken"])
    assert forward["events"] == []  # the first backward call's forward token points past the newest


def test_a_forward_token_sees_lines_appended_later(ten: LogsContext, tmp_path: Path) -> None:
    token = get(ten)["nextForwardToken"]
    with (tmp_path / "ep" / f"{STREAM}.log").open("a") as log:
        log.write(logged(BASE_MS + 100, "late") + "unfinish")
    page = get(ten, nextToken=token)
    assert messages(page) == ["late"]
    with (tmp_path / "ep" / f"{STREAM}.log").open("a") as log:
        log.write("ed\n")
    assert [e["message"] for e in get(ten, nextToken=page["nextForwardToken"])["events"]] == ["unfinished"]


def test_time_window_start_inclusive_end_exclusive(ten: LogsContext) -> None:
    window = {"startTime": BASE_MS + 20, "endTime": BASE_MS + 50}
    assert messages(get(ten, startFromHead=True, **window)) == ["e2", "e3", "e4"]
    assert messages(get(ten, **window)) == ["e2", "e3", "e4"]
    assert messages(get(ten, limit=2, **window)) == ["e3", "e4"]
    assert messages(get(ten, startFromHead=True, startTime=BASE_MS + 85)) == ["e9"]
    assert messages(get(ten, endTime=BASE_MS)) == []
    event = get(ten, startFromHead=True, limit=1)["events"][0]
    assert event["timestamp"] == event["ingestionTime"] == BASE_MS


def test_time_window_on_a_stream_too_large_to_scan_whole(tmp_path: Path) -> None:
    lines = [logged(BASE_MS + i, f"n{i} " + "x" * 200) for i in range(45_000)]  # about 11 MiB
    write_stream(tmp_path, STREAM, "".join(lines))
    ctx = context(tmp_path)
    assert (tmp_path / "ep" / f"{STREAM}.log").stat().st_size > MAX_SCAN_BYTES
    late = {"startTime": BASE_MS + 44_000, "endTime": BASE_MS + 44_003}
    found = call(ctx, "GetLogEvents", logGroupName=GROUP, logStreamName=STREAM, startFromHead=True, **late)
    assert [e["timestamp"] - BASE_MS for e in found["events"]] == [44_000, 44_001, 44_002]
    early = {"startTime": BASE_MS + 10, "endTime": BASE_MS + 12}
    found = call(ctx, "GetLogEvents", logGroupName=GROUP, logStreamName=STREAM, **early)
    assert [e["timestamp"] - BASE_MS for e in found["events"]] == [10, 11]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 10_001},
        {"startTime": BASE_MS + 5, "endTime": BASE_MS},
        {"startTime": -1},
        {"nextToken": "f/abc"},
        {"nextToken": "x/00000000000000000001"},
        {"startFromHead": "yes"},
    ],
)
def test_bad_parameters_are_invalid(ten: LogsContext, params: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterException):
        get(ten, **params)


def test_missing_group_or_stream_is_not_found(ten: LogsContext) -> None:
    with pytest.raises(ResourceNotFoundException, match="log group does not exist"):
        call(ten, "GetLogEvents", logGroupName="/aws/sagemaker/Endpoints/other", logStreamName=STREAM)
    with pytest.raises(ResourceNotFoundException, match="log stream does not exist"):
        call(ten, "GetLogEvents", logGroupName=GROUP, logStreamName="AllTraffic/i-ffffffffffffffff0")
    arn = f"arn:aws:logs:us-east-1:000000000000:log-group:{GROUP}:*"
    assert len(call(ten, "GetLogEvents", logGroupIdentifier=arn, logStreamName=STREAM)["events"]) == 10


# FilterLogEvents ------------------------------------------------------------------------------------
@pytest.fixture
def two(tmp_path: Path) -> LogsContext:
    """Stream a gets even stamps (a0, a2, ...), stream b odd ones (b1, b3, ...), up to 19."""
    write_stream(tmp_path, "AllTraffic/a", "".join(logged(BASE_MS + i, f"a{i}") for i in range(0, 20, 2)))
    write_stream(tmp_path, "AllTraffic/b", "".join(logged(BASE_MS + i, f"b{i}") for i in range(1, 20, 2)))
    return context(tmp_path)


def filter_all(ctx: LogsContext, **params: Any) -> tuple[list[dict[str, Any]], int]:
    events, pages, token = [], 0, None
    while True:
        page = call(
            ctx, "FilterLogEvents", logGroupName=GROUP, **params, **({"nextToken": token} if token else {})
        )
        events += page["events"]
        pages += 1
        token = page.get("nextToken")
        if token is None:
            return events, pages


def test_filter_interleaves_streams_by_time_across_pages(two: LogsContext) -> None:
    events, pages = filter_all(two, limit=3)
    assert [e["message"].rsplit(": ", 1)[1] for e in events] == [f"{'ab'[i % 2]}{i}" for i in range(20)]
    assert [e["logStreamName"] for e in events[:2]] == ["AllTraffic/a", "AllTraffic/b"]
    assert pages == 7
    assert len({e["eventId"] for e in events}) == 20


def test_filter_by_stream_names_pattern_and_time(two: LogsContext) -> None:
    events, _ = filter_all(two, logStreamNames=["AllTraffic/b"], startTime=BASE_MS + 5, endTime=BASE_MS + 11)
    assert [e["message"].rsplit(": ", 1)[1] for e in events] == ["b5", "b7", "b9"]
    events, _ = filter_all(two, filterPattern='"a1"')
    assert [e["message"].rsplit(": ", 1)[1] for e in events] == ["a10", "a12", "a14", "a16", "a18"]
    events, _ = filter_all(two, logStreamNamePrefix="AllTraffic/a", filterPattern="A1")
    assert events == []  # case-sensitive, as CloudWatch's terms are
    result = call(two, "FilterLogEvents", logGroupName=GROUP, logStreamNames=["AllTraffic/zz"])
    assert (result["events"], result["searchedLogStreams"]) == ([], [])


def test_filter_token_picks_up_a_stream_that_appeared_between_pages(two: LogsContext, tmp_path: Path) -> None:
    first = call(two, "FilterLogEvents", logGroupName=GROUP, limit=2)
    write_stream(tmp_path, "AllTraffic/c", logged(BASE_MS + 100, "c100"))
    rest, _ = filter_all(two, nextToken=first["nextToken"])
    assert [e["message"].rsplit(": ", 1)[1] for e in rest][-1] == "c100"
    assert len(first["events"]) + len(rest) == 21


def test_filter_stops_at_the_scan_budget_and_resumes(tmp_path: Path) -> None:
    filler = "".join(logged(BASE_MS, "filler " + "y" * 100) for _ in range(MAX_SCAN_BYTES // 140 + 1000))
    write_stream(tmp_path, STREAM, filler + logged(BASE_MS + 1, "needle"))
    ctx = context(tmp_path)
    first = call(ctx, "FilterLogEvents", logGroupName=GROUP, filterPattern="needle")
    assert first["events"] == [] and "nextToken" in first
    assert first["searchedLogStreams"] == [{"logStreamName": STREAM, "searchedCompletely": False}]
    second = call(
        ctx, "FilterLogEvents", logGroupName=GROUP, filterPattern="needle", nextToken=first["nextToken"]
    )
    assert messages(second) == ["needle"] and "nextToken" not in second


def test_filter_rejects_bad_tokens_and_mixed_stream_selectors(two: LogsContext) -> None:
    with pytest.raises(InvalidParameterException):
        call(two, "FilterLogEvents", logGroupName=GROUP, nextToken="not-a-token")
    with pytest.raises(InvalidParameterException):
        call(two, "FilterLogEvents", logGroupName=GROUP, logStreamNames=["a"], logStreamNamePrefix="a")
    with pytest.raises(InvalidParameterException):
        call(two, "FilterLogEvents", logGroupName=GROUP, logStreamNames=[])


# DescribeLogGroups / DescribeLogStreams -------------------------------------------------------------
def test_describe_log_groups_filters_and_pages(tmp_path: Path) -> None:
    for endpoint in ("alpha", "beta", "Gamma-1"):
        write_stream(tmp_path, "AllTraffic/i-1", logged(BASE_MS, "x"), endpoint=endpoint)
    (tmp_path / "forkserver.log").write_text("not an endpoint\n")
    ctx = context(tmp_path)
    names, token = [], None
    while True:
        page = call(ctx, "DescribeLogGroups", limit=1, **({"nextToken": token} if token else {}))
        names += [group["logGroupName"] for group in page["logGroups"]]
        if (token := page.get("nextToken")) is None:
            break
    assert names == [f"/aws/sagemaker/Endpoints/{n}" for n in ("Gamma-1", "alpha", "beta")]
    pattern = call(ctx, "DescribeLogGroups", logGroupNamePattern="GAMMA")["logGroups"]
    assert [g["logGroupName"] for g in pattern] == ["/aws/sagemaker/Endpoints/Gamma-1"]
    prefix = call(ctx, "DescribeLogGroups", logGroupNamePrefix="/aws/sagemaker/Endpoints/b")["logGroups"]
    assert [g["logGroupName"] for g in prefix] == ["/aws/sagemaker/Endpoints/beta"]
    assert prefix[0]["storedBytes"] == len(logged(BASE_MS, "x"))
    assert call(ctx, "DescribeLogGroups", logGroupNamePrefix="/aws/lambda/")["logGroups"] == []


def test_describe_log_streams_orders_and_pages(tmp_path: Path) -> None:
    write_stream(tmp_path, "AllTraffic/i-b", logged(BASE_MS + 5, "old") + logged(BASE_MS + 50, "newest"))
    write_stream(tmp_path, "AllTraffic/i-a", logged(BASE_MS + 20, "middle"))
    write_stream(tmp_path, "Canary/i-c", logged(BASE_MS + 30, "x"))
    ctx = context(tmp_path)
    page = call(ctx, "DescribeLogStreams", logGroupName=GROUP, limit=2)
    assert [s["logStreamName"] for s in page["logStreams"]] == ["AllTraffic/i-a", "AllTraffic/i-b"]
    rest = call(ctx, "DescribeLogStreams", logGroupName=GROUP, nextToken=page["nextToken"])
    assert [s["logStreamName"] for s in rest["logStreams"]] == ["Canary/i-c"] and "nextToken" not in rest
    b = page["logStreams"][1]
    assert (b["firstEventTimestamp"], b["lastEventTimestamp"]) == (BASE_MS + 5, BASE_MS + 50)
    by_time = call(ctx, "DescribeLogStreams", logGroupName=GROUP, orderBy="LastEventTime", descending=True)
    assert [s["logStreamName"] for s in by_time["logStreams"]] == [
        "AllTraffic/i-b",
        "Canary/i-c",
        "AllTraffic/i-a",
    ]
    canary = call(ctx, "DescribeLogStreams", logGroupName=GROUP, logStreamNamePrefix="Canary/")
    assert [s["logStreamName"] for s in canary["logStreams"]] == ["Canary/i-c"]
    with pytest.raises(InvalidParameterException):
        call(ctx, "DescribeLogStreams", logGroupName=GROUP, orderBy="LastEventTime", logStreamNamePrefix="C")


def test_backward_and_forward_pages_agree_on_an_overlong_line(tmp_path: Path) -> None:
    long_line = "".join(chr(ord("a") + i % 26) for i in range(MAX_LINE_BYTES * 2 + 100))
    write_stream(tmp_path, STREAM, logged(BASE_MS, "first") + long_line + "\n" + logged(BASE_MS + 1, "last"))
    ctx = context(tmp_path)
    forward = [e["message"] for e in get(ctx, startFromHead=True)["events"]]
    backward: list[str] = []
    page = get(ctx, limit=1)
    while page["events"]:
        backward[:0] = [e["message"] for e in page["events"]]
        page = get(ctx, limit=1, nextToken=page["nextBackwardToken"])
    assert backward == forward
    assert "".join(forward[1:4]) == long_line and len(forward) == 5
