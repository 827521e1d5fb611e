"""A transform job's logs: the group /aws/sagemaker/TransformJobs, one stream `<job>/<instance>` per instance.

Read back by unchanged clients: boto3's `logs` client and the aws CLI, `moorage logs --transform-job`,
and the SageMaker SDK's `transform(..., wait=True, logs=True)`, which tails the streams prefixed with the
job's name and prints them. Each stream holds the workers' output (here a line the handler prints per
record) and the job's own `[sagemaker logs]` lines, among them the line of a failing record, which names
the object, the record, its byte offset and the handler's error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.hosting import IMAGE
from support.servers import REGION, RunningServer, base_environment

from .conftest import create_model, pack_handler, sdk_environment, stage, start_staged_job

pytestmark = pytest.mark.slow

GROUP = "/aws/sagemaker/TransformJobs"
AWS_CLI = Path(sys.executable).parent / "aws"

LOGGING_HANDLER = textwrap.dedent("""
    def model_fn(model_dir):
        return {}


    def transform_fn(model, data, content_type, accept):
        text = data.decode() if isinstance(data, (bytes, bytearray)) else data
        out = []
        for line in text.splitlines():
            print(f"handler-scored {line!r}", flush=True)
            if "bad" in line:
                raise ValueError(f"cannot score {line!r}")
            out.append(str(sum(float(cell) for cell in line.split(","))))
        return "\\n".join(out) + "\\n", "text/csv"
""")

# `ugly.csv`'s second record (byte offset 4) makes the handler raise; SingleRecord sends it alone.
INPUTS = {"in/good.csv": "1,2\n3,4\n", "in/ugly.csv": "5,6\nbad,7\n"}
FAILING_LINE = "in/ugly.csv: record 2 (byte offset 4) failed after 1 attempts: the handler answered 500"


@pytest.fixture(scope="module")
def logging_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("logging"), LOGGING_HANDLER)


@dataclass(frozen=True)
class FinishedJob:
    server: RunningServer
    name: str
    bucket: str


def _ended(sm: Any, name: str) -> dict[str, Any]:
    """DescribeTransformJob once the job has ended (polls; the job's own timeouts bound the wait)."""
    while True:
        described: dict[str, Any] = sm.describe_transform_job(TransformJobName=name)
        if described["TransformJobStatus"] not in ("InProgress", "Stopping"):
            return described
        time.sleep(0.5)


@pytest.fixture(scope="module")
def finished(server: RunningServer, logging_tar: Path) -> FinishedJob:
    sm, s3 = server.client("sagemaker"), server.client("s3")
    bucket = stage(s3, dict(INPUTS))
    model = create_model(sm, logging_tar)
    name = start_staged_job(
        sm, model, bucket, strategy="SingleRecord", ModelClientConfig={"InvocationsMaxRetries": 0}
    )
    described = _ended(sm, name)
    assert described["TransformJobStatus"] == "Failed"
    assert FAILING_LINE in described["FailureReason"]
    return FinishedJob(server, name, bucket)


def _messages(logs: Any, stream: str) -> list[str]:
    messages: list[str] = []
    token = None
    while True:
        page = logs.get_log_events(
            logGroupName=GROUP,
            logStreamName=stream,
            startFromHead=True,
            **({"nextToken": token} if token else {}),
        )
        messages += [event["message"] for event in page["events"]]
        if page["nextForwardToken"] == token:
            return messages
        token = page["nextForwardToken"]


def test_boto3_lists_the_group_and_one_stream_per_instance(finished: FinishedJob) -> None:
    logs = finished.server.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/TransformJobs")["logGroups"]
    assert [group["logGroupName"] for group in groups] == [GROUP]
    streams = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=f"{finished.name}/")
    names = [stream["logStreamName"] for stream in streams["logStreams"]]
    assert len(names) == 1 and names[0].startswith(f"{finished.name}/i-")  # InstanceCount 1
    messages = _messages(logs, names[0])
    # The workers' output and the job's own lines share the stream.
    assert any("handler-scored '3,4'" in message for message in messages)
    assert any("[sagemaker logs]: MaxConcurrentTransforms=" in message for message in messages)
    # The object's line (the job's last line repeats it in the FailureReason).
    failing = [m for m in messages if f"[sagemaker logs]: s3://{finished.bucket}/{FAILING_LINE}" in m]
    assert len(failing) == 1 and failing[0].endswith("cannot score 'bad,7'")
    assert "[sagemaker logs]: the job failed: 1 of 2 input objects failed" in messages[-1]


def test_aws_cli_reads_the_stream(finished: FinishedJob, tmp_path: Path) -> None:
    env = base_environment(
        uuid.uuid4().hex,
        {
            "HOME": str(tmp_path),
            "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": finished.server.url,
            "MOORAGE_URL": finished.server.url,
        },
    )
    base = [str(AWS_CLI), "logs", "--output", "json"]
    listed = subprocess.run(
        [*base, "describe-log-streams", "--log-group-name", GROUP, "--log-stream-name-prefix", finished.name],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr.decode()
    (stream,) = [s["logStreamName"] for s in json.loads(listed.stdout)["logStreams"]]
    got = subprocess.run(
        [*base, "get-log-events", "--log-group-name", GROUP, "--log-stream-name", stream],
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr.decode()
    assert any(FAILING_LINE in event["message"] for event in json.loads(got.stdout)["events"])

    # moorage logs --transform-job: every line prefixed with its stream, in time order.
    printed = subprocess.run(
        [sys.executable, "-m", "moorage", "logs", "--transform-job", finished.name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert all(line.startswith(f"{stream} ") for line in lines)
    assert any(line.endswith("handler-scored '5,6'") for line in lines)
    assert sum(f"[sagemaker logs]: s3://{finished.bucket}/{FAILING_LINE}" in line for line in lines) == 1
    missing = subprocess.run(
        [sys.executable, "-m", "moorage", "logs", "--transform-job", "no-such-job"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode != 0
    assert "Transform job 'no-such-job' has no logs on this server" in missing.stderr


def test_sdk_transform_with_logs_prints_the_handlers_and_the_jobs_lines(
    server: RunningServer,
    logging_tar: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sdk_environment(monkeypatch, server, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's own deprecation and config notices
        from sagemaker.exceptions import UnexpectedStatusException
        from sagemaker.model import Model
        from sagemaker.session import Session

    s3 = server.client("s3")
    bucket = stage(s3, dict(INPUTS))
    s3.upload_file(str(logging_tar), bucket, "model/logging.tar.gz")
    session = Session(boto_session=boto3.Session(region_name=REGION), default_bucket=bucket)
    model = Model(
        image_uri=IMAGE,
        model_data=f"s3://{bucket}/model/logging.tar.gz",
        role="arn:aws:iam::000000000000:role/moorage-tests",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        sagemaker_session=session,
    )
    transformer = model.transformer(  # type: ignore[no-untyped-call]
        instance_count=1,
        instance_type="ml.m5.large",
        strategy="SingleRecord",
        assemble_with="Line",
        output_path=f"s3://{bucket}/out",
        accept="text/csv",
    )
    capsys.readouterr()
    # One record fails, so the job ends Failed: the SDK prints the logs, then raises.
    with pytest.raises(UnexpectedStatusException):
        transformer.transform(
            f"s3://{bucket}/in/",
            content_type="text/csv",
            split_type="Line",
            model_client_config={"InvocationsMaxRetries": 0},
            wait=True,
            logs=True,
        )
    printed = capsys.readouterr().out
    assert "handler-scored '1,2'" in printed  # a line the handler printed, in a worker
    assert f"s3://{bucket}/{FAILING_LINE}" in printed  # the job's line for the failing record
