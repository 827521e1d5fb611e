"""Batch transform driven by unchanged boto3 against a real `moorage serve` (issue 15, spec §c.2).

One server for the module; each test makes its own bucket, model and job, and reads the outputs back
through the server's S3 store. Request packing is read from the answers (see conftest.SCORE_HANDLER).
"""

from __future__ import annotations

import gzip
import json
import struct
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from support.cli import Cli, isolated_environment
from support.hosting import FAST, IMAGE
from support.servers import RunningServer, http_get

from .conftest import (
    Gate,
    create_model,
    keys,
    new_bucket,
    read,
    stage,
    start_job,
    start_staged_job,
    wait_for_end,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> tuple[Any, Any]:
    return server.client("sagemaker"), server.client("s3")


def _requests(output_lines: list[str]) -> Fraction:
    """How many requests the handler saw: every answer line names the size of its request."""
    return sum((Fraction(1, int(line.rsplit(",", 1)[1])) for line in output_lines), Fraction(0))


def _raw_describe(server: RunningServer, name: str) -> dict[str, Any]:
    request = urllib.request.Request(
        server.url + "/",
        data=json.dumps({"TransformJobName": name}).encode(),
        headers={
            "X-Amz-Target": "SageMaker.DescribeTransformJob",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        described: dict[str, Any] = json.loads(response.read())
    return described


def test_csv_lines_line_up_with_their_inputs(
    server: RunningServer, clients: tuple[Any, Any], score_tar: Path
) -> None:
    sm, s3 = clients
    bucket = new_bucket(s3)
    first = [f"{i},{i + 1},{i + 2}" for i in range(50)]
    second = ["1,1", "2,2", "3,3"]
    s3.put_object(Bucket=bucket, Key="in/part-1.csv", Body="\n".join(first) + "\n")
    s3.put_object(Bucket=bucket, Key="in/sub/part-2.csv", Body="\n".join(second))  # no final newline
    model = create_model(sm, score_tar)
    name = start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out")

    described = wait_for_end(sm, name)

    assert described["TransformJobStatus"] == "Completed"
    assert described["TransformJobArn"].endswith(f":transform-job/{name}")
    assert described["TransformStartTime"] <= described["TransformEndTime"]
    assert keys(s3, bucket, "out/") == ["out/part-1.csv.out", "out/sub/part-2.csv.out"]
    lines = read(s3, bucket, "out/part-1.csv.out").splitlines()
    assert [line.split(",")[0] for line in lines] == [str(3 * i + 3) for i in range(50)]
    assert [line.split(",")[0] for line in read(s3, bucket, "out/sub/part-2.csv.out").splitlines()] == [
        "2",
        "4",
        "6",
    ]
    assert _requests(lines) == 1  # MultiRecord: the 50 lines fit in one 6 MB request
    assert "MoorageProgress" not in described  # boto3 drops what it does not model; raw JSON has it
    progress = _raw_describe(server, name)["MoorageProgress"]
    assert (progress["ObjectsTotal"], progress["ObjectsDone"], progress["RecordsDone"]) == (2, 2, 53)


def test_single_record_sends_one_request_per_record(clients: tuple[Any, Any], score_tar: Path) -> None:
    sm, s3 = clients
    bucket = stage(s3, {"in/a.csv": "".join(f"{i}\n" for i in range(20))})
    model = create_model(sm, score_tar)
    single = start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/single", strategy="SingleRecord")
    multi = start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/multi", MaxPayloadInMB=1)

    assert wait_for_end(sm, single)["TransformJobStatus"] == "Completed"
    assert wait_for_end(sm, multi)["TransformJobStatus"] == "Completed"

    single_lines = read(s3, bucket, "single/a.csv.out").splitlines()
    multi_lines = read(s3, bucket, "multi/a.csv.out").splitlines()
    assert [line.split(",")[0] for line in single_lines] == [str(i) for i in range(20)]
    assert _requests(single_lines) == 20
    assert [line.split(",")[0] for line in multi_lines] == [str(i) for i in range(20)]
    assert _requests(multi_lines) == 1


def test_json_lines_with_filters_and_join(clients: tuple[Any, Any], score_tar: Path) -> None:
    sm, s3 = clients
    bucket = new_bucket(s3)
    rows = [{"id": i, "x": [i, 10]} for i in range(5)]
    s3.put_object(Bucket=bucket, Key="in/rows.jsonl", Body="".join(json.dumps(row) + "\n" for row in rows))
    model = create_model(sm, score_tar)
    name = start_job(
        sm,
        model,
        f"s3://{bucket}/in/",
        f"s3://{bucket}/out/",
        content_type="application/jsonlines",
        DataProcessing={
            "InputFilter": "$.x",
            "JoinSource": "Input",
            "OutputFilter": "$['id','SageMakerOutput']",
        },
    )

    assert wait_for_end(sm, name)["TransformJobStatus"] == "Completed"

    joined = [json.loads(line) for line in read(s3, bucket, "out/rows.jsonl.out").splitlines()]
    assert joined == [
        {"id": i, "SageMakerOutput": {"sum": i + 10, "n": 5, "batch": "true"}} for i in range(5)
    ]


def test_csv_join_appends_the_answer_columns(clients: tuple[Any, Any], score_tar: Path) -> None:
    sm, s3 = clients
    bucket = stage(s3, {"in/t.csv": "a,1,2\nb,3,4\n"})
    model = create_model(sm, score_tar)
    name = start_job(
        sm,
        model,
        f"s3://{bucket}/in/",
        f"s3://{bucket}/out",
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,3]"},
    )

    assert wait_for_end(sm, name)["TransformJobStatus"] == "Completed"
    assert read(s3, bucket, "out/t.csv.out").splitlines() == ["a,3", "b,7"]


def test_gzip_input_and_a_manifest(clients: tuple[Any, Any], score_tar: Path) -> None:
    sm, s3 = clients
    bucket = stage(
        s3,
        {
            "data/one.csv.gz": gzip.compress(b"1,2\n3,4\n"),
            "data/two.csv.gz": gzip.compress(b"5,6\n"),
            "data/skipped.csv.gz": gzip.compress(b"bad\n"),
        },
    )
    manifest = [{"prefix": f"s3://{bucket}/data/"}, "two.csv.gz", "one.csv.gz"]
    s3.put_object(Bucket=bucket, Key="manifest.json", Body=json.dumps(manifest))
    model = create_model(sm, score_tar)
    name = start_job(
        sm,
        model,
        f"s3://{bucket}/manifest.json",
        f"s3://{bucket}/out",
        data_type="ManifestFile",
        compression="Gzip",
    )

    assert wait_for_end(sm, name)["TransformJobStatus"] == "Completed"
    assert keys(s3, bucket, "out/") == ["out/one.csv.gz.out", "out/two.csv.gz.out"]
    assert read(s3, bucket, "out/one.csv.gz.out") == "3,2\n7,2\n"
    assert read(s3, bucket, "out/two.csv.gz.out") == "11,1\n"


def test_a_bad_record_fails_its_object_only(clients: tuple[Any, Any], score_tar: Path) -> None:
    sm, s3 = clients
    bucket = stage(s3, {"in/good.csv": "1,2\n", "in/ugly.csv": "1\n2\nbad\n4\n"})
    model = create_model(sm, score_tar)
    retries = {"InvocationsMaxRetries": 0, "InvocationsTimeoutInSeconds": 60}
    name = start_staged_job(sm, model, bucket, strategy="SingleRecord", ModelClientConfig=retries)

    with pytest.raises(WaiterError):
        wait_for_end(sm, name)
    described = sm.describe_transform_job(TransformJobName=name)
    assert described["TransformJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert f"s3://{bucket}/in/ugly.csv" in reason
    assert "record 3 (byte offset 4)" in reason
    assert "cannot score 'bad'" in reason
    assert keys(s3, bucket, "out/") == ["out/good.csv.out"]


def test_stop_keeps_what_was_completed(
    server: RunningServer, clients: tuple[Any, Any], score_tar: Path, gate: Gate
) -> None:
    sm, s3 = clients
    bucket = stage(s3, {"in/1-first.csv": "1\n", "in/2-blocked.csv": "block,1\n"})
    model = create_model(sm, score_tar, {"GATE_URL": gate.url})
    name = start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out", MaxConcurrentTransforms=1)
    gate.wait_for_arrival()
    status, metrics = http_get(server.url + "/metrics")
    assert status == 200
    assert f'moorage_transform_objects{{TransformJobName="{name}",state="done"}} 1' in metrics.decode()
    assert f'moorage_transform_objects{{TransformJobName="{name}",state="total"}} 2' in metrics.decode()

    sm.stop_transform_job(TransformJobName=name)
    described = wait_for_end(sm, name)

    assert described["TransformJobStatus"] == "Stopped"
    assert keys(s3, bucket, "out/") == ["out/1-first.csv.out"]
    with pytest.raises(ClientError) as again:
        sm.stop_transform_job(TransformJobName="no-such-job")
    assert again.value.response["Error"]["Code"] == "ResourceNotFound"


def test_validation_names_what_to_fix(clients: tuple[Any, Any], score_tar: Path) -> None:
    sm = clients[0]
    model = create_model(sm, score_tar)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"DataCaptureConfig": {"DestinationS3Uri": "s3://b/c"}}, "DataCaptureConfig"),
        ({"MaxPayloadInMB": 0}, "MaxPayloadInMB 0"),
        ({"MaxPayloadInMB": 50, "MaxConcurrentTransforms": 4}, "must not exceed 100"),
        ({"DataProcessing": {"InputFilter": "$..x"}}, "InputFilter"),
        ({"data_type": "AugmentedManifestFile"}, "AugmentedManifestFile"),
    ]
    for extra, named in cases:
        with pytest.raises(ClientError) as refused:
            start_job(sm, model, "s3://b/in/", "s3://b/out", **extra)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert named in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as missing:
        start_job(sm, "no-such-model", "s3://b/in/", "s3://b/out")
    assert 'Could not find model "arn:aws:sagemaker:' in missing.value.response["Error"]["Message"]
    sm.create_model(
        ModelName="transform-mme",
        ExecutionRoleArn="arn:aws:iam::000000000000:role/moorage-tests",
        PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": "s3://b/models/"},
    )
    with pytest.raises(ClientError) as multi:
        start_job(sm, "transform-mme", "s3://b/in/", "s3://b/out")
    assert multi.value.response["Error"]["Code"] == "ValidationException"
    assert "multi-model model (Mode MultiModel)" in multi.value.response["Error"]["Message"]


def test_list_filters_sorts_and_pages(clients: tuple[Any, Any], score_tar: Path) -> None:
    sm, s3 = clients
    bucket = stage(s3, {"in/a.csv": "1\n"})
    model = create_model(sm, score_tar)
    names = [start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out-{i}") for i in range(3)]
    for name in names:
        wait_for_end(sm, name)

    listed = sm.list_transform_jobs(NameContains=names[1][4:], StatusEquals="Completed")
    assert [job["TransformJobName"] for job in listed["TransformJobSummaries"]] == [names[1]]
    pages = sm.get_paginator("list_transform_jobs").paginate(
        SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 2}
    )
    seen = [job["TransformJobName"] for page in pages for job in page["TransformJobSummaries"]]
    assert seen == sorted(seen, key=str.lower)
    assert set(names) <= set(seen)
    newest = sm.list_transform_jobs(
        CreationTimeAfter=sm.describe_transform_job(TransformJobName=names[0])["CreationTime"]
    )
    assert names[0] not in [job["TransformJobName"] for job in newest["TransformJobSummaries"]]
    sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=names[2], WaiterConfig=FAST)


def test_the_cli_creates_waits_and_shows_progress(
    server: RunningServer, clients: tuple[Any, Any], score_tar: Path, tmp_path: Path
) -> None:
    sm, s3 = clients
    bucket = stage(s3, {"in/a.csv": "1\n2\n3\n"})
    model = create_model(sm, score_tar)
    cli = Cli(tmp_path, isolated_environment(tmp_path, {"MOORAGE_URL": server.url}))

    created = cli.run(
        "transform", "create", "cli-job", "--model", model, "--input", f"s3://{bucket}/in/",
        "--output", f"s3://{bucket}/out", "--content-type", "text/csv", "--split-type", "Line",
        "--assemble-with", "Line", "--wait",
    )  # fmt: skip
    described = cli.run("transform", "describe", "cli-job", "--output", "json")
    listed = cli.run("transform", "list")

    assert created.code == 0, created
    assert created.stdout.strip().endswith(":transform-job/cli-job")
    assert "Completed: objects 1/1, records 3" in created.stderr
    progress = json.loads(described.stdout)["MoorageProgress"]
    assert (progress["ObjectsDone"], progress["RecordsDone"], progress["BytesTotal"]) == (1, 3, 6)
    assert "cli-job" in listed.stdout and "Completed" in listed.stdout
    assert read(s3, bucket, "out/a.csv.out") == "1,3\n2,3\n3,3\n"


def test_recordio_records_reach_the_handler_without_their_framing(
    clients: tuple[Any, Any], score_tar: Path
) -> None:
    sm, s3 = clients
    framed = b"".join(
        struct.pack("<II", 0xCED7230A, len(item)) + item + b"\0" * (-len(item) % 4)
        for item in (b"1,2", b"3,4,5")
    )
    bucket = stage(s3, {"in/data.rec": framed})
    model = create_model(sm, score_tar)
    name = start_job(
        sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out", split="RecordIO", strategy="SingleRecord"
    )

    assert wait_for_end(sm, name)["TransformJobStatus"] == "Completed"
    assert read(s3, bucket, "out/data.rec.out") == "3,1\n12,1\n"
