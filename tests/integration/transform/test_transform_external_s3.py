"""Batch transform with an external S3 (moto's server on 127.0.0.1 as AWS_ENDPOINT_URL_S3).

The server lists and streams the inputs and uploads the outputs with boto3 there; its embedded store
stays empty. A failed object leaves no output and no multipart upload behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import WaiterError

from support.servers import REGION, RunningServer, start_server, wait_until_gone

from .conftest import create_model, keys, read, stage, start_job, wait_for_end

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory, moto_s3: str) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("external") / "data", env={"AWS_ENDPOINT_URL_S3": moto_s3})
    try:
        yield running
    finally:
        running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def test_inputs_and_outputs_on_an_external_s3(external: RunningServer, moto_s3: str, score_tar: Path) -> None:
    s3: Any = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sm = external.client("sagemaker")
    big = "".join(f"{i},1\n" for i in range(200_000))  # about 1.5 MB: several MultiRecord requests
    bucket = stage(s3, {"in/big.csv": big, "in/broken.csv": "1\nbad\n"})
    model = create_model(sm, score_tar)
    name = start_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out", MaxPayloadInMB=1)

    with pytest.raises(WaiterError):
        wait_for_end(sm, name)

    described = sm.describe_transform_job(TransformJobName=name)
    assert described["TransformJobStatus"] == "Failed"
    assert f"s3://{bucket}/in/broken.csv" in described["FailureReason"]
    assert keys(s3, bucket, "out/") == ["out/big.csv.out"]
    sums = [line.split(",")[0] for line in read(s3, bucket, "out/big.csv.out").splitlines()]
    assert sums == [str(i + 1) for i in range(200_000)]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert external.client("s3").list_buckets()["Buckets"] == []
