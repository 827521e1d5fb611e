"""Asynchronous inference through unchanged boto3 and the SageMaker SDK: the control plane,
InvokeEndpointAsync with each header, the SDK's journey, results in S3, bad headers, TTL expiry and the
per-request timeout, SNS notifications through moto's SNS, and /metrics.

One `moorage serve` for the module, whose SNS API is a moto server on loopback; an HTTP subscriber
served here receives what moto delivers.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from support.aws import point_sdk_at
from support.cli import Cli, isolated_environment
from support.gates import Gate
from support.hosting import FAST, deploy
from support.servers import REGION, RunningServer, http_get, server_with_bucket

from .conftest import Subscriber, exists, one_at_a_time, wait_for_object

pytestmark = pytest.mark.slow

BUCKET = "async-tests"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sns_url: str) -> Iterator[RunningServer]:
    with server_with_bucket(
        tmp_path_factory.mktemp("async") / "data",
        BUCKET,
        env={"AWS_ENDPOINT_URL_SNS": sns_url, "MOORAGE_ASYNC_NOTIFY_ATTEMPTS": "2"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, async_tarball: Path) -> str:
    """An async endpoint with one worker and one invocation at a time."""
    serial = one_at_a_time(f"s3://{BUCKET}/out", S3FailurePath=f"s3://{BUCKET}/failures")
    return deploy(server.client("sagemaker"), async_tarball, async_config=serial)


def put_input(server: RunningServer, key: str, request: dict[str, Any]) -> str:
    server.client("s3").put_object(
        Bucket=BUCKET, Key=key, Body=json.dumps(request).encode(), ContentType="application/json"
    )
    return f"s3://{BUCKET}/{key}"


def metric(server: RunningServer, line_start: str) -> float:
    _, body = http_get(server.url + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} is not in /metrics")


def test_the_config_is_echoed_and_invoke_endpoint_is_refused(server: RunningServer, endpoint: str) -> None:
    sm = server.client("sagemaker")
    described = sm.describe_endpoint(EndpointName=endpoint)
    expected = {
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/out", "S3FailurePath": f"s3://{BUCKET}/failures"},
    }
    assert described["AsyncInferenceConfig"] == expected
    config = sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["AsyncInferenceConfig"] == expected
    with pytest.raises(ClientError) as refused:
        server.client("sagemaker-runtime").invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "accepts only InvokeEndpointAsync" in error["Message"]


@pytest.mark.parametrize(
    ("async_config", "named"),
    [
        ({"OutputConfig": {"S3FailurePath": "s3://b/f"}}, "S3OutputPath is required"),
        ({"OutputConfig": {"S3OutputPath": "https://b.s3.amazonaws.com/o"}}, "give an s3://bucket/prefix"),
        ({"OutputConfig": {"S3OutputPath": "s3://b/o", "KmsKeyId": "key"}}, "KmsKeyId"),
        (
            {
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1001},
                "OutputConfig": {"S3OutputPath": "s3://b/o"},
            },
            "less than or equal to 1000",
        ),
    ],
)
def test_configs_moorage_cannot_honour_are_refused(
    server: RunningServer, async_tarball: Path, async_config: dict[str, Any], named: str
) -> None:
    with pytest.raises(ClientError) as refused:
        deploy(server.client("sagemaker"), async_tarball, async_config=async_config, wait=False)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert named in refused.value.response["Error"]["Message"]


def test_invoke_endpoint_async_with_every_header(server: RunningServer, endpoint: str) -> None:
    runtime, s3 = server.client("sagemaker-runtime"), server.client("s3")
    location = put_input(server, "in/every-header.json", {"hello": "async"})
    accepted = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=location,
        ContentType="application/json",
        Accept="application/json",
        CustomAttributes="trace=1",
        InferenceId="my-inference-1",
        S3OutputPathExtension="runs/a",
        Filename="prediction.json",
        RequestTTLSeconds=600,
        InvocationTimeoutSeconds=120,
    )
    assert accepted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert accepted["InferenceId"] == "my-inference-1"
    assert accepted["OutputLocation"] == f"s3://{BUCKET}/out/runs/a/prediction.json"
    assert accepted["FailureLocation"] == f"s3://{BUCKET}/failures/runs/a/prediction.json-error.out"
    answer = wait_for_object(s3, accepted["OutputLocation"])
    assert answer["ContentType"] == "application/json"
    assert json.loads(answer["Body"].read()) == {"hello": "async"}
    assert not exists(s3, accepted["FailureLocation"])
    # Accept reaches the handler, whose Content-Type becomes the object's.
    csv = runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=location, ContentType="application/json", Accept="text/csv"
    )
    assert csv["OutputLocation"] == f"s3://{BUCKET}/out/{csv['InferenceId']}.out"
    answer = wait_for_object(s3, csv["OutputLocation"])
    assert (answer["ContentType"], answer["Body"].read()) == ("text/csv", b"echo,csv\n")


def test_a_model_failure_goes_to_the_failure_path(server: RunningServer, endpoint: str) -> None:
    runtime, s3 = server.client("sagemaker-runtime"), server.client("s3")
    location = put_input(server, "in/fail.json", {"fail": "boom in predict_fn"})
    accepted = runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=location, ContentType="application/json"
    )
    failure = json.loads(wait_for_object(s3, accepted["FailureLocation"])["Body"].read())
    assert failure["ErrorCode"] == "ModelError"
    assert failure["Message"].startswith("Received server error (500) from primary with message")
    assert "boom in predict_fn" in failure["Message"]
    assert not exists(s3, accepted["OutputLocation"])
    assert accepted["InferenceId"] in server.log()  # logged with its inference id
    missing = runtime.invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=f"s3://{BUCKET}/in/absent.json", ContentType="application/json"
    )
    failure = json.loads(wait_for_object(s3, missing["FailureLocation"])["Body"].read())
    assert "s3://async-tests/in/absent.json does not exist" in failure["Message"]
    assert metric(server, f'sagemaker_RequestDownloadFailures_total{{EndpointName="{endpoint}"}}') >= 1


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"InputLocation": "ftp://bucket/key"}, "at 'inputLocation' failed to satisfy constraint"),
        ({"InputLocation": "https://bucket.s3.amazonaws.com/key"}, "give an s3://bucket/key URL"),
        ({"InferenceId": "tab\there"}, "at 'inferenceId' failed to satisfy constraint"),
        ({"InferenceId": "x" * 65}, "Member must have length between 1 and 64"),
        ({"S3OutputPathExtension": "s3://elsewhere"}, "at 's3OutputPathExtension' failed"),
        ({"Filename": "two.dots.json"}, "at 'filename' failed to satisfy constraint"),
        ({"Filename": "f" * 33}, "Member must have length between 1 and 32"),
        ({"RequestTTLSeconds": 21601}, "Member must have value less than or equal to 21600"),
        ({"InvocationTimeoutSeconds": 3601}, "Member must have value less than or equal to 3600"),
        ({"CustomAttributes": "é"}, "at 'customAttributes' failed"),
    ],
)
def test_bad_headers_each_get_sagemakers_error(
    server: RunningServer, endpoint: str, request_: dict[str, Any], message: str
) -> None:
    arguments = {"InputLocation": f"s3://{BUCKET}/in/x.json"} | request_
    with pytest.raises(ClientError) as refused:
        server.client("sagemaker-runtime").invoke_endpoint_async(EndpointName=endpoint, **arguments)
    error = refused.value.response
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (400, "ValidationError")
    assert message in error["Error"]["Message"]


def test_invoke_endpoint_async_on_a_missing_or_real_time_endpoint(server: RunningServer) -> None:
    runtime = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as missing:
        runtime.invoke_endpoint_async(EndpointName="nowhere", InputLocation=f"s3://{BUCKET}/in/x")
    assert missing.value.response["Error"]["Message"] == "Endpoint nowhere of account 000000000000 not found."


def test_sns_success_and_error_notifications(
    server: RunningServer, async_tarball: Path, sns_url: str
) -> None:
    sns = boto3.client(
        "sns", endpoint_url=sns_url, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    subscriber = Subscriber()
    topics = {name: sns.create_topic(Name=f"async-{name}")["TopicArn"] for name in ("success", "error")}
    for arn in topics.values():
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=subscriber.url)
    name = deploy(
        server.client("sagemaker"),
        async_tarball,
        async_config={
            "OutputConfig": {
                "S3OutputPath": f"s3://{BUCKET}/sns-out",
                "NotificationConfig": {
                    "SuccessTopic": topics["success"],
                    "ErrorTopic": topics["error"],
                    "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
                },
            }
        },
    )
    runtime = server.client("sagemaker-runtime")
    location = put_input(server, "in/sns.json", {"notify": "me"})
    good = runtime.invoke_endpoint_async(
        EndpointName=name, InputLocation=location, ContentType="application/json"
    )
    success = subscriber.messages.get(timeout=60)
    assert success["invocationStatus"] == "Completed"
    assert success["inferenceId"] == good["InferenceId"]
    assert success["requestParameters"] == {
        "contentType": "application/json",
        "endpointName": name,
        "inputLocation": location,
    }
    assert success["responseParameters"]["outputLocation"] == good["OutputLocation"]
    assert success["responseParameters"]["contentType"] == "application/json"
    assert json.loads(success["responseParameters"]["responseBody"]["content"]) == {"notify": "me"}
    assert (success["eventVersion"], success["eventSource"], success["eventName"]) == (
        "1.0",
        "aws:sagemaker",
        "InferenceResult",
    )
    assert success["awsRegion"] == "us-east-1"
    assert success["eventTime"] >= success["receivedTime"]
    bad = runtime.invoke_endpoint_async(
        EndpointName=name, Body=json.dumps({"fail": "sns boom"}).encode(), ContentType="application/json"
    )
    error = subscriber.messages.get(timeout=60)
    assert (error["invocationStatus"], error["inferenceId"]) == ("Failed", bad["InferenceId"])
    assert "sns boom" in error["failureReason"]
    assert error["responseParameters"]["failureLocation"] == bad["FailureLocation"]
    assert "responseBody" not in error["responseParameters"]  # not asked for on the error topic
    assert "inputLocation" not in error["requestParameters"]  # an inline Body has none
    assert metric(server, f'sagemaker_NotificationFailures_total{{EndpointName="{name}"}}') == 0


def test_ttl_expiry_backlog_metrics_and_concurrency(server: RunningServer, endpoint: str, gate: Gate) -> None:
    """One invocation at a time: a gated request holds the instance; one queued behind it with the
    shortest TTL (60 s) expires without running; a third runs once the gate opens."""
    runtime, s3 = server.client("sagemaker-runtime"), server.client("s3")
    held = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=put_input(server, "in/held.json", {"gate": gate.url("held")}),
        ContentType="application/json",
    )
    assert gate.arrived["held"].wait(60)
    expiring = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=put_input(server, "in/expiring.json", {"gate": gate.url("expiring")}),
        ContentType="application/json",
        RequestTTLSeconds=60,
    )
    after = runtime.invoke_endpoint_async(
        EndpointName=endpoint, Body=b'{"after": 1}', ContentType="application/json"
    )
    label = f'{{EndpointName="{endpoint}"}}'
    assert metric(server, f"sagemaker_ApproximateBacklogSize{label}") == 3
    assert metric(server, f"sagemaker_HasBacklogWithoutCapacity{label}") == 0
    assert metric(server, f"sagemaker_ApproximateAgeOfOldestRequest{label}") >= 0
    failure = json.loads(wait_for_object(s3, expiring["FailureLocation"])["Body"].read())
    assert failure["ErrorCode"] == "ExpiredRequest"
    assert "RequestTTLSeconds (60 s)" in failure["Message"]
    assert metric(server, f"sagemaker_ExpiredRequests_total{label}") == 1
    assert not exists(s3, after["OutputLocation"])  # still behind the held request
    gate.open("held")
    assert json.loads(wait_for_object(s3, held["OutputLocation"])["Body"].read())["gate"] == gate.url("held")
    assert json.loads(wait_for_object(s3, after["OutputLocation"])["Body"].read()) == {"after": 1}
    assert gate.calls["expiring"] == 0  # never ran
    assert not exists(s3, expiring["OutputLocation"])
    deadline = time.monotonic() + 30
    while metric(server, f"sagemaker_ApproximateBacklogSize{label}") != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, f"sagemaker_ApproximateBacklogSize{label}") == 0
    assert metric(server, f"sagemaker_InvocationsProcesssed_total{label}") >= 3
    assert metric(server, f"sagemaker_TimeInBacklog_milliseconds_count{label}") >= 3


def test_invocation_timeout_is_per_request(server: RunningServer, endpoint: str, gate: Gate) -> None:
    """InvocationTimeoutSeconds bounds one request (here 2 s, not the variant's 60 s): the worker that
    overran it is replaced and the failure object says why."""
    runtime, s3 = server.client("sagemaker-runtime"), server.client("s3")
    slow = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        Body=json.dumps({"gate": gate.url("never-opened")}).encode(),
        ContentType="application/json",
        InvocationTimeoutSeconds=2,
    )
    failure = json.loads(wait_for_object(s3, slow["FailureLocation"])["Body"].read())
    assert "InvocationTimeoutSeconds (2 s)" in failure["Message"]
    assert gate.calls["never-opened"] == 1
    quick = runtime.invoke_endpoint_async(
        EndpointName=endpoint, Body=b'{"next": 1}', ContentType="application/json"
    )
    assert json.loads(wait_for_object(s3, quick["OutputLocation"])["Body"].read()) == {"next": 1}


def test_the_sagemaker_sdk_async_journey(
    server: RunningServer, async_tarball: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`deploy(async_inference_config=...)`, `predict_async(data=...)`, `predict_async(input_path=...)`,
    `get_result(WaiterConfig(...))` and AsyncInferenceModelError, with only the environment set."""
    assert server.s3_url is not None
    point_sdk_at(monkeypatch, server.url, server.s3_url, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's own deprecation and config notices
        from sagemaker.async_inference.async_inference_config import AsyncInferenceConfig
        from sagemaker.async_inference.waiter_config import WaiterConfig
        from sagemaker.base_deserializers import JSONDeserializer
        from sagemaker.base_serializers import JSONSerializer
        from sagemaker.exceptions import AsyncInferenceModelError
        from sagemaker.pytorch.model import PyTorchModel
        from sagemaker.session import Session

    s3 = server.client("s3")
    s3.upload_file(str(async_tarball), BUCKET, "sdk/model.tar.gz")
    session = Session(boto_session=boto3.Session(region_name=REGION), default_bucket=BUCKET)
    model = PyTorchModel(
        model_data=f"s3://{BUCKET}/sdk/model.tar.gz",
        role="arn:aws:iam::000000000000:role/moorage-tests",
        framework_version="2.1",
        py_version="py310",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        sagemaker_session=session,
    )
    predictor = model.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        async_inference_config=AsyncInferenceConfig(  # type: ignore[no-untyped-call]
            output_path=f"s3://{BUCKET}/sdk-out", failure_path=f"s3://{BUCKET}/sdk-failures"
        ),
        serializer=JSONSerializer(),  # type: ignore[no-untyped-call]
        deserializer=JSONDeserializer(),  # type: ignore[no-untyped-call]
        wait=False,  # the SDK's own wait sleeps 30 s first; boto3's waiter polls
    )
    session.sagemaker_client.get_waiter("endpoint_in_service").wait(
        EndpointName=predictor.endpoint_name, WaiterConfig=FAST
    )
    # The SDK polls both locations in two threads; the one whose object never comes keeps polling for
    # the whole WaiterConfig: keep it short, and let those threads end before the server stops.
    fast = WaiterConfig(max_attempts=40, delay=0.25)  # type: ignore[no-untyped-call]
    try:
        assert predictor.predict_async(data={"sdk": "data"}).get_result(fast) == {"sdk": "data"}
        location = put_input(server, "in/sdk.json", {"sdk": "input_path"})
        response = predictor.predict_async(input_path=location)
        assert response.output_path.startswith(f"s3://{BUCKET}/sdk-out/")
        assert response.get_result(fast) == {"sdk": "input_path"}
        failing = predictor.predict_async(data={"fail": "sdk boom"})
        with pytest.raises(AsyncInferenceModelError) as failed:
            failing.get_result(fast)
        assert "sdk boom" in str(failed.value)
        assert failing.failure_path.startswith(f"s3://{BUCKET}/sdk-failures/")
        predictor.delete_endpoint()
    finally:
        for thread in threading.enumerate():
            if thread.name.endswith(("(check_output_file)", "(check_failure_file)")):
                thread.join()


def test_the_cli_invokes_asynchronously(server: RunningServer, endpoint: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path, isolated_environment(tmp_path, {"MOORAGE_URL": server.url}))
    done = cli.run("invoke", endpoint, "--async", "--json", '{"cli": 1}', "--wait")
    assert done.code == 0, done
    assert json.loads(done.stdout) == {"cli": 1}
    assert "InferenceId: " in done.stderr
    location = put_input(server, "in/cli.json", {"cli": "input"})
    queued = cli.run("invoke", endpoint, "--async", "--input", location)
    assert queued.code == 0, queued
    fields = dict(line.split(": ", 1) for line in queued.stdout.splitlines())
    assert set(fields) == {"InferenceId", "OutputLocation", "FailureLocation"}
    answer = wait_for_object(server.client("s3"), fields["OutputLocation"])
    assert json.loads(answer["Body"].read()) == {"cli": "input"}
    failed = cli.run("invoke", endpoint, "--async", "--json", '{"fail": "cli boom"}', "--wait")
    assert failed.code == 1, failed
    assert "the request failed" in failed.stderr and "cli boom" in failed.stderr
    misused = cli.run("invoke", endpoint, "--input", location)
    assert misused.code != 0 and "add --async" in misused.stderr


def test_a_notification_that_cannot_be_published_is_counted_and_the_result_kept(
    server: RunningServer, async_tarball: Path
) -> None:
    missing_topic = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    name = deploy(
        server.client("sagemaker"),
        async_tarball,
        async_config={
            "OutputConfig": {
                "S3OutputPath": f"s3://{BUCKET}/unnotified",
                "NotificationConfig": {"SuccessTopic": missing_topic},
            }
        },
    )
    accepted = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=name, Body=b'{"kept": true}', ContentType="application/json"
    )
    answer = wait_for_object(server.client("s3"), accepted["OutputLocation"])
    assert json.loads(answer["Body"].read()) == {"kept": True}
    label = f'{{EndpointName="{name}"}}'
    deadline = time.monotonic() + 30
    while metric(server, f"sagemaker_ApproximateBacklogSize{label}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, f"sagemaker_NotificationFailures_total{label}") == 1
    assert server.log().count(f"SNS publish to {missing_topic} failed") == 2  # MOORAGE_ASYNC_NOTIFY_ATTEMPTS
