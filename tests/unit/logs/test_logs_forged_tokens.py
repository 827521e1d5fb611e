"""Pagination tokens are client input: a forged one is InvalidParameterException (400), whatever it
holds. A deeply nested payload used to escape as a 500 (RecursionError, security probe 2 #56's twin);
an offset that no log file can reach is refused with it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from moorage.logs import OPERATIONS, LogsContext
from moorage.logs.errors import InvalidParameterException
from support.logfiles import BASE_MS, GROUP, context, logged, write_stream

STREAM = "AllTraffic/i-0123456789abcdef0"


def forged(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


@pytest.fixture
def one(tmp_path: Path) -> LogsContext:
    write_stream(tmp_path, STREAM, "".join(logged(BASE_MS + i, f"e{i}") for i in range(3)))
    return context(tmp_path)


@pytest.mark.parametrize(
    ("operation", "token"),
    [
        ("FilterLogEvents", forged(b"[" * 100_000)),
        ("FilterLogEvents", forged(b'{"p":' * 50_000)),
        ("FilterLogEvents", forged(json.dumps({"p": {STREAM: 10**40}}).encode())),
        ("FilterLogEvents", forged(json.dumps({"p": {STREAM: 1 << 63}}).encode())),
        ("DescribeLogStreams", forged(b"[" * 100_000)),
        ("DescribeLogGroups", forged(b'{"s":' * 50_000)),
    ],
    ids=["arrays", "objects", "position-1e40", "position-2^63", "streams-arrays", "groups-objects"],
)
def test_a_forged_token_is_an_invalid_parameter(one: LogsContext, operation: str, token: str) -> None:
    params: dict[str, Any] = {"nextToken": token}
    if operation != "DescribeLogGroups":
        params["logGroupName"] = GROUP
    with pytest.raises(InvalidParameterException) as caught:
        OPERATIONS[operation](one, params)
    assert caught.value.message == "The specified nextToken is invalid."
