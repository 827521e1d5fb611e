"""A captured invocation's record and key: SageMaker's documented sample field for field, the
encoding each content type gets, the hour prefix, and what the control plane accepts."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from moorage.capture.config import CaptureConfig, capture_summary, check_capture_config
from moorage.capture.records import Captured, encode_data, hour_prefix, record_line
from moorage.errors import ValidationException

CONFIG: dict[str, Any] = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 50,
    "DestinationS3Uri": "s3://bucket/monitor/",
    "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
}
AT = 1644859549.25  # 2022-02-14T17:25:49.25Z, the documented sample's time


def captured(config: CaptureConfig, **changes: Any) -> Captured:
    fields: dict[str, Any] = {
        "endpoint": "ep",
        "variant": "AllTraffic",
        "config": config,
        "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "at": AT,
        "inference_id": None,
        "request_body": b"69,0,153.7,109,194.0,105,256.1,114,14.1,6,1.6",
        "request_type": "text/csv",
        "response_body": b"0.0254181120544672",
        "response_type": "text/csv; charset=utf-8",
    }
    return Captured(**(fields | changes))


def test_the_record_matches_sagemakers_documented_sample() -> None:
    line = record_line(captured(CaptureConfig.from_json(CONFIG)))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "text/csv",
                "mode": "INPUT",
                "data": "69,0,153.7,109,194.0,105,256.1,114,14.1,6,1.6",
                "encoding": "CSV",
            },
            "endpointOutput": {
                "observedContentType": "text/csv; charset=utf-8",
                "mode": "OUTPUT",
                "data": "0.0254181120544672",
                "encoding": "CSV",
            },
        },
        "eventMetadata": {
            "eventId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "inferenceTime": "2022-02-14T17:25:49Z",
        },
        "eventVersion": "0",
    }


def test_inference_id_and_capture_modes() -> None:
    config = CaptureConfig.from_json(CONFIG | {"CaptureOptions": [{"CaptureMode": "Output"}]})
    record = json.loads(record_line(captured(config, inference_id="req-7")))
    assert set(record["captureData"]) == {"endpointOutput"}
    assert record["eventMetadata"]["inferenceId"] == "req-7"


@pytest.mark.parametrize(
    ("body", "content_type", "header", "encoding"),
    [
        (b"1,2", "text/csv", {}, "CSV"),
        (b"1,2", "TEXT/CSV; charset=utf-8", {}, "CSV"),
        (b'{"a": 1}', "application/json", {}, "JSON"),
        (b'{"a": 1}', "application/jsonlines", {}, "BASE64"),
        (b'{"a": 1}', "application/jsonlines", {"JsonContentTypes": ["application/jsonlines"]}, "JSON"),
        (
            b"1,2",
            "text/csv",
            {"CsvContentTypes": ["text/x-other"]},
            "BASE64",
        ),  # the list replaces the default
        (b"\x93NUMPY", "application/x-npy", {}, "BASE64"),
        (b"\xff\xfe", "text/csv", {}, "BASE64"),  # not UTF-8: kept exactly, as base64
        (b"x", None, {}, "BASE64"),
    ],
)
def test_encodings(body: bytes, content_type: str | None, header: dict[str, Any], encoding: str) -> None:
    config = CaptureConfig.from_json(CONFIG | {"CaptureContentTypeHeader": header})
    data, got = encode_data(body, content_type, config)
    assert got == encoding
    assert (base64.b64decode(data) if got == "BASE64" else data.encode()) == body


def test_the_hour_prefix_is_utc() -> None:
    config = CaptureConfig.from_json(CONFIG)
    assert hour_prefix(captured(config)) == "monitor/ep/AllTraffic/2022/02/14/17"
    bare = CaptureConfig.from_json(CONFIG | {"DestinationS3Uri": "s3://bucket"})
    assert hour_prefix(captured(bare, variant="B")) == "ep/B/2022/02/14/17"


def test_summary_and_activity() -> None:
    assert capture_summary(CONFIG | {"EnableCapture": False}) == {
        "EnableCapture": False,
        "CaptureStatus": "Stopped",
        "CurrentSamplingPercentage": 50,
        "DestinationS3Uri": "s3://bucket/monitor/",
    }
    assert CaptureConfig.from_json(CONFIG).active
    assert not CaptureConfig.from_json(CONFIG | {"EnableCapture": False}).active
    assert not CaptureConfig.from_json(CONFIG | {"InitialSamplingPercentage": 0}).active


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"DestinationS3Uri": "https://bucket/x"}, "DestinationS3Uri"),
        ({"KmsKeyId": "key"}, "KmsKeyId"),
        ({"CaptureOptions": []}, "CaptureOptions"),
    ],
)
def test_refused_configs_name_the_member(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationException) as refused:
        check_capture_config(CONFIG | change)
    assert named in refused.value.message
