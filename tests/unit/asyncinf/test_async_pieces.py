"""The async queue's pure pieces: result names, config checks, header checks, the SNS message and the
queue store's durability states (a real SQLite file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moorage.api.async_runtime import check_headers
from moorage.asyncinf.config import AsyncConfig, check_async_config, result_locations
from moorage.asyncinf.notify import message
from moorage.asyncinf.store import AsyncRequest, QueueStore
from moorage.errors import ValidationError, ValidationException

CONFIG = AsyncConfig.from_json(
    {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
        "OutputConfig": {
            "S3OutputPath": "s3://b/out/",
            "S3FailurePath": "s3://b/failed",
            "NotificationConfig": {"SuccessTopic": "arn:aws:sns:us-east-1:123456789012:ok"},
        },
    }
)


def test_result_names_follow_extension_and_filename() -> None:
    assert result_locations(CONFIG, "id-1", extension=None, filename=None) == (
        "s3://b/out/id-1.out",
        "s3://b/failed/id-1-error.out",
    )
    assert result_locations(CONFIG, "id-1", extension="run/7/", filename="p.json") == (
        "s3://b/out/run/7/p.json",
        "s3://b/failed/run/7/p.json-error.out",
    )
    no_failure_path = AsyncConfig.from_json({"OutputConfig": {"S3OutputPath": "s3://b/o"}})
    assert result_locations(no_failure_path, "x", extension=None, filename=None)[1] == "s3://b/o/x-error.out"


def test_the_config_survives_the_store_round_trip() -> None:
    assert AsyncConfig.from_stored(json.loads(json.dumps(CONFIG.to_json()))) == CONFIG
    assert CONFIG.max_concurrency == 2


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"OutputConfig": {}}, "S3OutputPath is required"),
        ({"OutputConfig": {"S3OutputPath": "https://h/b/k"}}, "s3://bucket/prefix"),
        ({"OutputConfig": {"S3OutputPath": "s3://b/o", "S3FailurePath": "https://h/f"}}, "S3FailurePath"),
        ({"OutputConfig": {"S3OutputPath": "s3://b/o", "KmsKeyId": "k"}}, "KmsKeyId"),
    ],
)
def test_configs_moorage_cannot_honour(config: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationException) as refused:
        check_async_config(config)
    assert named in refused.value.message


def test_headers_default_and_are_all_reported_at_once() -> None:
    prefix = "x-amzn-sagemaker-"
    checked = check_headers({prefix + "inputlocation": "s3://b/k"})
    assert (checked.ttl_s, checked.timeout_s, checked.inference_id) == (21600, 900, None)
    with pytest.raises(ValidationError) as refused:
        check_headers(
            {
                prefix + "requestttlseconds": "59",
                prefix + "invocationtimeoutseconds": "x",
                prefix + "filename": ".hidden",
            }
        )
    text = refused.value.message
    assert text.startswith("3 validation errors detected: ")
    assert "Value '59' at 'requestTTLSeconds'" in text and "greater than or equal to 60" in text
    assert "at 'invocationTimeoutSeconds' failed to satisfy constraint: Member must be an integer" in text
    assert "Value '.hidden' at 'filename'" in text


def test_the_sns_message_has_sagemakers_shape() -> None:
    body = message(
        region="us-east-1",
        endpoint="e",
        inference_id="i",
        received=0.0,
        finished=1.5,
        input_location="s3://b/in",
        request_content_type="text/csv",
        succeeded=True,
        location="s3://b/out/i.out",
        response_content_type="application/json",
        failure_reason=None,
        response=b"\xff\x00",
    )
    assert body == {
        "awsRegion": "us-east-1",
        "eventTime": "1970-01-01T00:00:01.500Z",
        "receivedTime": "1970-01-01T00:00:00.000Z",
        "invocationStatus": "Completed",
        "requestParameters": {"contentType": "text/csv", "endpointName": "e", "inputLocation": "s3://b/in"},
        "responseParameters": {
            "contentType": "application/json",
            "outputLocation": "s3://b/out/i.out",
            "responseBody": {"content": "/wA=", "encoding": "BASE64"},
        },
        "inferenceId": "i",
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    big = message(
        region="r",
        endpoint="e",
        inference_id="i",
        received=0.0,
        finished=0.0,
        input_location=None,
        request_content_type=None,
        succeeded=False,
        location="s3://b/f",
        response_content_type=None,
        failure_reason="why",
        response=b"x" * (128 * 1024 + 1),
    )
    assert big["failureReason"] == "why" and "responseBody" not in big["responseParameters"]


def test_the_store_keeps_every_state_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "async.sqlite3"
    store = QueueStore(path)
    base = AsyncRequest(
        seq=0,
        id="a",
        endpoint="e",
        inference_id="inf-a",
        received=1.0,
        ttl_s=60,
        timeout_s=900,
        content_type="application/json",
        accept=None,
        custom_attributes=None,
        input_location=None,
        output_location="s3://b/out/a.out",
        failure_location="s3://b/failed/a-error.out",
        config=CONFIG,
    )
    first = store.add(base, b"{}").result()
    second = store.add(AsyncRequest(**{**base.__dict__, "id": "b", "inference_id": "inf-b"}), None).result()
    third = store.add(AsyncRequest(**{**base.__dict__, "id": "c", "inference_id": "inf-c"}), None).result()
    assert first.seq < second.seq < third.seq
    assert store.start("a").result() == 0 and store.start("a").result() == 1
    owed = {"topic": "t", "message": {"m": 1}, "location": "s3://b/out/a.out"}
    store.owes("a", owed).result()  # owed before the publish: the row stays `running`
    store.owes("b", owed).result()
    store.published("b")  # not waited on: close commits it
    store.finish("c")
    store.close()
    reopened = QueueStore(path)
    found = {request.id: request for request in reopened.unfinished()}
    assert set(found) == {"a", "b"}
    assert (found["a"].state, found["a"].attempts, found["a"].config) == ("running", 2, CONFIG)
    assert found["a"].outcome == owed
    assert reopened.body("a") == b"{}"
    assert (found["b"].state, found["b"].outcome) == ("notify", owed)
    reopened.close()
