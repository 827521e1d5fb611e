"""`kill -9` of the server with async requests in flight and queued, then a restart on the same data
dir: every accepted request is run (at least once) and gets exactly one result object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.gates import Gate
from support.hosting import deploy
from support.servers import start_server, wait_until_gone

from .conftest import exists, wait_for_object

pytestmark = pytest.mark.slow

BUCKET = "async-restart"


def keys(s3: Any, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_kill_9_loses_no_accepted_request(
    tmp_path_factory: pytest.TempPathFactory, async_tarball: Path, gate: Gate
) -> None:
    data_dir = tmp_path_factory.mktemp("async-restart") / "data"
    first = start_server(data_dir)
    try:
        first.client("s3").create_bucket(Bucket=BUCKET)
        endpoint = deploy(
            first.client("sagemaker"),
            async_tarball,
            async_config={
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
                "OutputConfig": {
                    "S3OutputPath": f"s3://{BUCKET}/out",
                    "S3FailurePath": f"s3://{BUCKET}/failed",
                },
            },
        )
        runtime = first.client("sagemaker-runtime")
        requests: list[dict[str, Any]] = [
            {"gate": gate.url("in-flight")},  # running when the server dies
            {"queued": 1},
            {"queued": 2, "gate": gate.url("queued")},
            {"fail": "queued and failing"},
        ]
        accepted = []
        for index, request in enumerate(requests):
            accepted.append(
                runtime.invoke_endpoint_async(
                    EndpointName=endpoint, Body=json.dumps(request).encode(), ContentType="application/json"
                )
            )
            if index == 0:
                assert gate.arrived["in-flight"].wait(60)
        first.kill()  # SIGKILL: no shutdown code runs
    finally:
        first.kill()
    assert not wait_until_gone(first.tag), "workers outlived the killed server"
    gate.open("in-flight")
    gate.open("queued")
    second = start_server(data_dir)
    try:
        s3 = second.client("s3")
        for request, answer in zip(requests, accepted, strict=True):
            if "fail" in request:
                failure = json.loads(wait_for_object(s3, answer["FailureLocation"])["Body"].read())
                assert "queued and failing" in failure["Message"]
                assert not exists(s3, answer["OutputLocation"])
            else:
                assert json.loads(wait_for_object(s3, answer["OutputLocation"])["Body"].read()) == request
                assert not exists(s3, answer["FailureLocation"])
        # Exactly one object per request, nothing half-written or doubled.
        assert len(keys(s3, "out/")) == 3
        assert len(keys(s3, "failed/")) == 1
        assert gate.calls["in-flight"] == 2  # run before the kill and again after it (at least once)
        assert gate.calls["queued"] == 1
    finally:
        second.stop()
    assert not wait_until_gone(second.tag), second.log()[-3000:]
