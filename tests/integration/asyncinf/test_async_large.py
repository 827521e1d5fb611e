"""Large async bodies cross between S3 and the worker as files, not through the server's memory.

A LARGE_INPUT-byte object (uploaded with multipart of one repeated part) goes through an async endpoint
whose handler counts the bytes it was given: the output object holds the count, and the server's peak
resident size (VmHWM in /proc/<pid>/status, what the kernel recorded, the upload included) grows by far
less than the input. An answer above the real-time 6 MiB cap reaches S3 whole, with the handler's
Content-Type. `moorage queue` shows the queue while a request is held. (The per-request
InvocationTimeoutSeconds is tested in test_async_inference.py.) One server for the module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli import Cli, isolated_environment
from support.gates import Gate
from support.hosting import deploy
from support.memory import memory_kib
from support.servers import RunningServer, server_with_bucket

from .conftest import one_at_a_time, wait_for_object

pytestmark = pytest.mark.slow

BUCKET = "async-large"
# SageMaker's async input limit (1 GB, issue 14 item 4), as 16 parts of 64 MiB.
PART_BYTES = 64 * 1024 * 1024
PARTS = 16
LARGE_INPUT = PART_BYTES * PARTS
# What the server may add to its resident size while it receives the upload and runs the request:
# an upload part or two in flight, chunks, the queue; not the input.
PEAK_GROWTH_BOUND = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with server_with_bucket(tmp_path_factory.mktemp("async-large") / "data", BUCKET) as running:
        yield running


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, async_tarball: Path) -> str:
    """The handler of conftest.py (it counts the bytes of a non-JSON input), one request at a time."""
    return deploy(server.client("sagemaker"), async_tarball, async_config=one_at_a_time(f"s3://{BUCKET}/out"))


def upload_repeated(s3: Any, key: str, part: bytes, parts: int) -> None:
    """One object of `parts` copies of `part`, by multipart upload (the test holds one part)."""
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="application/octet-stream")
    etags = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=n, Body=part
            )["ETag"],
        }
        for n in range(1, parts + 1)
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": etags}
    )


def test_a_1_gb_input_is_counted_and_the_servers_peak_memory_stays_bounded(
    server: RunningServer, endpoint: str
) -> None:
    pid = server.process.pid
    before = memory_kib(pid)["VmRSS"]
    s3 = server.client("s3")
    part = bytes(range(256)) * (PART_BYTES // 256)
    upload_repeated(s3, "in/large.bin", part, PARTS)
    del part

    accepted = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=f"s3://{BUCKET}/in/large.bin", InvocationTimeoutSeconds=3600
    )
    answer = wait_for_object(s3, accepted["OutputLocation"])

    assert json.loads(answer["Body"].read()) == {
        "bytes": LARGE_INPUT,
        "content_type": "application/octet-stream",
    }
    peak = memory_kib(pid)["VmHWM"]
    growth = (peak - before) * 1024
    assert growth < PEAK_GROWTH_BOUND, f"the server's peak grew by {growth / 2**20:.0f} MiB"
    print(f"{LARGE_INPUT >> 20} MiB input: VmRSS before {before >> 10} MiB, VmHWM {peak >> 10} MiB")
    leftovers = list((server.data_dir / "async" / "bodies").iterdir())
    assert leftovers == []


def test_an_answer_over_the_real_time_cap_reaches_s3_whole(server: RunningServer, endpoint: str) -> None:
    """A 16 MiB JSON input, echoed: above the 1 MiB file threshold both ways and the 6 MiB real-time cap."""
    document = json.dumps({"pad": "z" * (16 * 1024 * 1024)})
    s3 = server.client("s3")
    s3.put_object(Bucket=BUCKET, Key="in/echo.json", Body=document.encode(), ContentType="application/json")
    accepted = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=f"s3://{BUCKET}/in/echo.json"
    )
    answer = wait_for_object(s3, accepted["OutputLocation"])

    assert answer["ContentType"] == "application/json"
    assert answer["Body"].read() == document.encode()


def test_moorage_queue_shows_backlog_oldest_age_and_in_flight(
    server: RunningServer, endpoint: str, gate: Gate, tmp_path: Path
) -> None:
    runtime, s3 = server.client("sagemaker-runtime"), server.client("s3")
    held = runtime.invoke_endpoint_async(
        EndpointName=endpoint,
        Body=json.dumps({"gate": gate.url("held")}).encode(),
        ContentType="application/json",
    )
    assert gate.arrived["held"].wait(60)
    behind = runtime.invoke_endpoint_async(
        EndpointName=endpoint, Body=b'{"behind": 1}', ContentType="application/json"
    )
    cli = Cli(tmp_path, isolated_environment(tmp_path, {"MOORAGE_URL": server.url}))

    shown = cli.run("queue", endpoint, "--output", "json")
    text = cli.run("queue", endpoint)
    missing = cli.run("queue", "no-such-endpoint")
    gate.open("held")

    assert shown.code == 0, shown
    figures = json.loads(shown.stdout)
    assert figures["EndpointName"] == endpoint and figures["EndpointStatus"] == "InService"
    assert figures["ApproximateBacklogSize"] == 2 and figures["InFlight"] == 1
    assert figures["ApproximateBacklogSizePerInstance"] == 2 and figures["HasBacklogWithoutCapacity"] == 0
    assert figures["ApproximateAgeOfOldestRequest"] >= 0
    assert text.code == 0, text
    assert "Backlog      2 (1 queued, 1 in flight)" in text.stdout
    assert missing.code != 0 and "no-such-endpoint" in missing.stderr
    assert json.loads(wait_for_object(s3, behind["OutputLocation"])["Body"].read()) == {"behind": 1}
    wait_for_object(s3, held["OutputLocation"])
