"""Data capture through unchanged boto3, the SageMaker SDK and the CLI, with the embedded S3 store:
DataCaptureConfig on CreateEndpointConfig and its summary in DescribeEndpoint, the records field for
field (CSV, JSON and base64 content types, InferenceId), the S3 layout, sampling at 100 % and at a
low rate, the SDK's enable / disable / update calls (UpdateEndpoint, in place), `moorage capture`.

One `moorage serve` for the module, flushing captures every 0.1 s.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import math
import re
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.aws import point_sdk_at
from support.cli import Cli, isolated_environment
from support.hosting import FAST, deploy, unique
from support.servers import REGION, RunningServer, server_with_bucket

from .conftest import captured_records, settled_counts

pytestmark = pytest.mark.slow

BUCKET = "capture-tests"
ROLE = "arn:aws:iam::000000000000:role/moorage-tests"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with server_with_bucket(
        tmp_path_factory.mktemp("capture") / "data", BUCKET, env={"MOORAGE_CAPTURE_FLUSH": "0.1"}
    ) as running:
        yield running


def deploy_capturing(server: RunningServer, tarball: Path, capture: dict[str, Any]) -> str:
    return deploy(server.client("sagemaker"), tarball, name=unique("cap"), capture_config=capture)


@pytest.fixture(scope="module")
def full(server: RunningServer, echo_tarball: Path) -> str:
    """An endpoint capturing every request and answer, with one extra CSV content type."""
    return deploy_capturing(
        server,
        echo_tarball,
        {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{BUCKET}/full",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv", "application/x-csvish"]},
        },
    )


def test_describe_endpoint_summarises_the_capture_config(server: RunningServer, full: str) -> None:
    sm = server.client("sagemaker")
    assert sm.describe_endpoint(EndpointName=full)["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{BUCKET}/full",
    }
    config = sm.describe_endpoint(EndpointName=full)["EndpointConfigName"]
    assert sm.describe_endpoint_config(EndpointConfigName=config)["DataCaptureConfig"]["CaptureOptions"] == [
        {"CaptureMode": "Input"},
        {"CaptureMode": "Output"},
    ]


def test_every_request_is_captured_in_sagemakers_format(
    server: RunningServer, full: str, tmp_path: Path
) -> None:
    runtime = server.client("sagemaker-runtime")
    binary = bytes(range(256))
    calls: list[tuple[bytes, str, str | None]] = [
        (b"69,0,153.7,109", "text/csv", "csv-1"),
        (b'{"instances": [1, 2]}', "application/json", None),
        (b"a,b\n1,2", "application/x-csvish", None),
        (binary, "application/x-npy", "npy-1"),
        (b"\xff\xfe not utf-8", "application/x-csvish", None),
    ]
    answers = []
    for body, content_type, inference_id in calls:
        extra = {"InferenceId": inference_id} if inference_id else {}
        answer = runtime.invoke_endpoint(
            EndpointName=full, Body=body, ContentType=content_type, Accept=content_type, **extra
        )
        assert answer["Body"].read() == body
        answers.append(answer)
    counts = settled_counts(server, full, at_least=5)
    assert counts == {"sampled": 5, "records": 5, "dropped": 0}

    files = captured_records(server.client("s3"), BUCKET, "full/")
    hour = r"\d{4}/\d{2}/\d{2}/\d{2}"
    for key in files:
        assert re.fullmatch(
            rf"full/{full}/AllTraffic/{hour}/\d{{2}}-\d{{2}}-\d{{3}}-[0-9a-f-]{{36}}\.jsonl", key
        ), key
    records = [record for key in sorted(files) for record in files[key]]
    assert len(records) == 5
    by_data = {record["captureData"]["endpointInput"]["data"]: record for record in records}

    csv = by_data["69,0,153.7,109"]
    assert set(csv) == {"captureData", "eventMetadata", "eventVersion"}
    assert csv["eventVersion"] == "0"
    assert csv["captureData"] == {
        "endpointInput": {
            "observedContentType": "text/csv",
            "mode": "INPUT",
            "data": "69,0,153.7,109",
            "encoding": "CSV",
        },
        "endpointOutput": {
            "observedContentType": "text/csv",
            "mode": "OUTPUT",
            "data": "69,0,153.7,109",
            "encoding": "CSV",
        },
    }
    metadata = csv["eventMetadata"]
    assert set(metadata) == {"eventId", "inferenceTime", "inferenceId"}
    assert metadata["inferenceId"] == "csv-1"
    assert str(uuid.UUID(metadata["eventId"])) == metadata["eventId"]
    inference_time = datetime.datetime.strptime(metadata["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert f"/{inference_time:%Y/%m/%d/%H}/" in next(key for key, found in files.items() if csv in found)

    json_record = by_data['{"instances": [1, 2]}']
    assert json_record["captureData"]["endpointOutput"]["encoding"] == "JSON"
    assert "inferenceId" not in json_record["eventMetadata"]
    assert by_data["a,b\n1,2"]["captureData"]["endpointInput"]["encoding"] == "CSV"  # CsvContentTypes
    npy = by_data[base64.b64encode(binary).decode()]
    assert npy["captureData"]["endpointInput"] == {
        "observedContentType": "application/x-npy",
        "mode": "INPUT",
        "data": base64.b64encode(binary).decode(),
        "encoding": "BASE64",
    }
    assert npy["eventMetadata"]["inferenceId"] == "npy-1"
    not_text = by_data[base64.b64encode(b"\xff\xfe not utf-8").decode()]
    assert not_text["captureData"]["endpointInput"]["encoding"] == "BASE64"  # a CSV type, but not UTF-8
    assert len({record["eventMetadata"]["eventId"] for record in records}) == 5

    cli = Cli(tmp_path, isolated_environment(tmp_path, {"MOORAGE_URL": server.url}))
    shown = cli.run("capture", full, "--last", "2")
    assert shown.code == 0, shown
    lines = shown.stdout.splitlines()
    assert len(lines) == 2
    as_json = cli.run("capture", full, "--output", "json")
    assert as_json.code == 0, as_json
    assert sorted(
        json.loads(line)["eventMetadata"]["eventId"] for line in as_json.stdout.splitlines()
    ) == sorted(record["eventMetadata"]["eventId"] for record in records)


def test_a_low_rate_samples_within_binomial_bounds(server: RunningServer, echo_tarball: Path) -> None:
    endpoint = deploy_capturing(
        server,
        echo_tarball,
        {
            "InitialSamplingPercentage": 10,
            "DestinationS3Uri": f"s3://{BUCKET}/low",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
    )
    runtime = server.client("sagemaker-runtime")
    requests = 400
    for index in range(requests):
        runtime.invoke_endpoint(EndpointName=endpoint, Body=f"{index}".encode(), ContentType="text/csv")
    counts = settled_counts(server, endpoint)
    mean, spread = requests * 0.1, math.sqrt(requests * 0.1 * 0.9)
    # Six standard deviations: a false failure about once in 10^9 runs.
    assert mean - 6 * spread <= counts["sampled"] <= mean + 6 * spread, counts
    assert counts["records"] == counts["sampled"] and counts["dropped"] == 0
    records = [r for found in captured_records(server.client("s3"), BUCKET, "low/").values() for r in found]
    assert len(records) == counts["sampled"]
    assert all(set(record["captureData"]) == {"endpointInput"} for record in records)  # Input only


def test_the_sagemaker_sdk_capture_controls(
    server: RunningServer, echo_tarball: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`deploy(data_capture_config=...)`, `disable_data_capture()`, `enable_data_capture()` and
    `update_data_capture_config(...)`, each an UpdateEndpoint that switches without new instances."""
    assert server.s3_url is not None
    point_sdk_at(monkeypatch, server.url, server.s3_url, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's own deprecation and config notices
        from sagemaker.base_deserializers import BytesDeserializer
        from sagemaker.base_serializers import CSVSerializer
        from sagemaker.model_monitor.data_capture_config import DataCaptureConfig
        from sagemaker.pytorch.model import PyTorchModel
        from sagemaker.session import Session

    # The SDK's update waits poll DescribeEndpoint every 30 s (sleeping first); poll every 0.25 s instead.
    monkeypatch.setattr(
        Session, "wait_for_endpoint", functools.partialmethod(Session.wait_for_endpoint, poll=0.25)
    )
    s3 = server.client("s3")
    s3.upload_file(str(echo_tarball), BUCKET, "sdk/model.tar.gz")
    session = Session(boto_session=boto3.Session(region_name=REGION), default_bucket=BUCKET)
    model = PyTorchModel(
        model_data=f"s3://{BUCKET}/sdk/model.tar.gz",
        role=ROLE,
        framework_version="2.1",
        py_version="py310",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        sagemaker_session=session,
    )
    predictor = model.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        data_capture_config=DataCaptureConfig(  # type: ignore[no-untyped-call]
            enable_capture=True,
            sampling_percentage=100,
            destination_s3_uri=f"s3://{BUCKET}/sdk-capture",
            sagemaker_session=session,
        ),
        serializer=CSVSerializer(),  # type: ignore[no-untyped-call]
        deserializer=BytesDeserializer(),  # type: ignore[no-untyped-call]
        wait=False,  # the SDK's own wait sleeps 30 s first; boto3's waiter polls
    )
    name = predictor.endpoint_name
    sm = session.sagemaker_client
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    pid_before = _worker_pid(server, name)

    def summary() -> dict[str, Any]:
        return dict(sm.describe_endpoint(EndpointName=name)["DataCaptureConfig"])

    assert predictor.predict([1, 2]) == b"1,2"
    assert settled_counts(server, name, at_least=2)["records"] == 2  # the pid call and this one

    predictor.disable_data_capture()
    assert summary()["CaptureStatus"] == "Stopped"
    assert predictor.predict([3, 4]) == b"3,4"  # not captured: checked at the end

    # The SDK's defaults: 20 %, s3://<default bucket>/model-monitor/data-capture.
    predictor.enable_data_capture()
    assert summary() == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 20,
        "DestinationS3Uri": f"s3://{BUCKET}/model-monitor/data-capture",
    }

    predictor.update_data_capture_config(
        DataCaptureConfig(  # type: ignore[no-untyped-call]
            enable_capture=True,
            sampling_percentage=100,
            destination_s3_uri=f"s3://{BUCKET}/sdk-updated",
            capture_options=["REQUEST"],
            sagemaker_session=session,
        )
    )
    assert summary()["DestinationS3Uri"] == f"s3://{BUCKET}/sdk-updated"
    assert predictor.predict([5, 6]) == b"5,6"
    assert settled_counts(server, name, at_least=3) == {"sampled": 3, "records": 3, "dropped": 0}
    updated = [r for found in captured_records(s3, BUCKET, "sdk-updated/").values() for r in found]
    assert [(r["captureData"]["endpointInput"]["data"], set(r["captureData"])) for r in updated] == [
        ("5,6", {"endpointInput"})
    ]
    first = [r for found in captured_records(s3, BUCKET, "sdk-capture/").values() for r in found]
    assert sorted(r["captureData"]["endpointOutput"]["data"] for r in first) == sorted(
        ["1,2", base64.b64encode(pid_before.encode()).decode()]  # text/plain: not a CSV or JSON type
    )
    # Capture-only updates switch in place: the same worker processes serve throughout.
    assert _worker_pid(server, name) == pid_before
    predictor.delete_endpoint()


def _worker_pid(server: RunningServer, endpoint: str) -> str:
    runtime = server.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=b"1", ContentType="text/csv", Accept="application/x-pid"
    )
    return str(answer["Body"].read().decode())
