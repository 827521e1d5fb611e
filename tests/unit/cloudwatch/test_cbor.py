"""moorage's CBOR codec against botocore's own Smithy RPC v2 CBOR serializer and parser, and against
malformed bodies (every one a SerializationException, never a crash or a huge allocation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.parsers import RpcV2CBORParser
from botocore.serialize import RpcV2CBORSerializer

from moorage.api import cbor
from moorage.errors import SerializationException


def _model() -> Any:
    return botocore.session.get_session().get_service_model("cloudwatch")


def test_a_request_botocore_serializes_decodes_to_its_members() -> None:
    operation = _model().operation_model("GetMetricData")
    start, end = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 2, 4, 4, 5, 500000, tzinfo=UTC)
    query = {
        "Id": "m0",
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/SageMaker",
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "EndpointName", "Value": "é" * 30}],
            },
            "Period": 60,
            "Stat": "p99.9",
        },
        "ReturnData": False,
    }
    request = RpcV2CBORSerializer().serialize_to_request(
        {"MetricDataQueries": [query] * 30, "StartTime": start, "EndTime": end, "MaxDatapoints": 100_800},
        operation,
    )
    decoded = cbor.decode(request["body"])
    assert decoded["StartTime"] == cbor.Tagged(1, start.timestamp())
    assert decoded["EndTime"] == cbor.Tagged(1, end.timestamp())
    assert decoded["MetricDataQueries"] == [query] * 30
    assert decoded["MaxDatapoints"] == 100_800


def test_a_response_we_encode_parses_in_botocore() -> None:
    operation = _model().operation_model("DescribeAlarms")
    alarm = {
        "AlarmName": "a" * 300,
        "Threshold": -1.5,
        "Period": 70_000,
        "EvaluationPeriods": 2**33,
        "ActionsEnabled": False,
        "OKActions": [],
        "StateUpdatedTimestamp": cbor.Tagged(1, 1_800_000_000.25),
    }
    body = cbor.encode({"MetricAlarms": [alarm], "CompositeAlarms": [], "NextToken": "t"})
    parsed = RpcV2CBORParser().parse(
        {"body": body, "headers": {"x-amzn-requestid": "r"}, "status_code": 200}, operation.output_shape
    )
    (got,) = parsed["MetricAlarms"]
    assert got["AlarmName"] == "a" * 300 and got["Threshold"] == -1.5 and got["Period"] == 70_000
    assert got["EvaluationPeriods"] == 2**33 and got["ActionsEnabled"] is False and got["OKActions"] == []
    assert got["StateUpdatedTimestamp"].timestamp() == 1_800_000_000.25
    assert parsed["NextToken"] == "t"


def test_indefinite_lengths_and_small_floats_decode() -> None:
    # {_ "a": [_ 1, -2], "b": (_ "x" "y")} with a half-precision 1.5 and a single-precision 0.25
    body = bytes.fromhex("bf6161 9f0121ff 6162 7f61786179ff 6163 f93e00 6164 fa3e800000 ff".replace(" ", ""))
    assert cbor.decode(body) == {"a": [1, -2], "b": "xy", "c": 1.5, "d": 0.25}


@pytest.mark.parametrize(
    "body",
    [
        b"",  # nothing
        bytes.fromhex("5bffffffffffffffff"),  # a byte string claiming 2**64 - 1 bytes
        bytes.fromhex("9bffffffffffffffff"),  # an array claiming 2**64 - 1 items
        b"\x81" * 100 + b"\x00",  # arrays nested 100 deep
        bytes.fromhex("a1016161"),  # a map with an integer key
        bytes.fromhex("0000"),  # two items
        bytes.fromhex("ff"),  # a stray break
        bytes.fromhex("1c"),  # reserved additional info
        bytes.fromhex("6261ff"),  # invalid UTF-8
        bytes.fromhex("f8"),  # a simple value we do not use
    ],
)
def test_malformed_bodies_are_serialization_errors(body: bytes) -> None:
    with pytest.raises(SerializationException):
        cbor.decode(body)
