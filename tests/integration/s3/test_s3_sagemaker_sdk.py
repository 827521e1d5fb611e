"""The SageMaker Python SDK's own S3 use against the embedded store (spec §6.2, §6.4, must-match 24).

`default_bucket()` (ListBuckets → HeadBucket → CreateBucket) and `upload_data` (s3transfer, multipart
above 8 MiB) with only AWS_ENDPOINT_URL_S3 set; the bucket is configured, so STS is never needed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
import pytest


@pytest.fixture
def sagemaker_session(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[str]]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    from sagemaker.session import Session  # imported once the v2 deprecation notice is silenced

    boto_session = boto3.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    services: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]
        services.append(service)
        if service not in ("s3",):
            raise AssertionError(f"the SDK called {event_name}; only S3 may be used here")

    boto_session.events.register("before-send", record)
    session = Session(boto_session=boto_session, default_bucket="my-sagemaker-bucket")
    return session, services


def test_default_bucket_is_created_through_s3_only(sagemaker_session: tuple[Any, list[str]], s3: Any) -> None:
    session, services = sagemaker_session
    assert session.default_bucket() == "my-sagemaker-bucket"
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["my-sagemaker-bucket"]
    assert services and set(services) == {"s3"}


def test_default_bucket_that_exists_is_reused(sagemaker_session: tuple[Any, list[str]], s3: Any) -> None:
    s3.create_bucket(Bucket="my-sagemaker-bucket")
    s3.put_object(Bucket="my-sagemaker-bucket", Key="keep", Body=b"x")
    session, _ = sagemaker_session
    assert session.default_bucket() == "my-sagemaker-bucket"
    assert s3.get_object(Bucket="my-sagemaker-bucket", Key="keep")["Body"].read() == b"x"


def test_upload_data_small_and_multipart(
    sagemaker_session: tuple[Any, list[str]], s3: Any, tmp_path: Path
) -> None:
    session, services = sagemaker_session
    small = tmp_path / "inference.py"
    small.write_text("def model_fn(model_dir):\n    return None\n")
    large = tmp_path / "model.tar.gz"
    payload = os.urandom(9 * 1024 * 1024 + 17)  # above s3transfer's 8 MiB threshold
    large.write_bytes(payload)

    small_uri = session.upload_data(str(small), key_prefix="pytorch-inference/code")
    large_uri = session.upload_data(str(large), key_prefix="pytorch-inference")
    assert small_uri == "s3://my-sagemaker-bucket/pytorch-inference/code/inference.py"
    assert large_uri == "s3://my-sagemaker-bucket/pytorch-inference/model.tar.gz"
    assert (
        s3.get_object(Bucket="my-sagemaker-bucket", Key="pytorch-inference/code/inference.py")["Body"].read()
        == small.read_bytes()
    )
    head = s3.head_object(Bucket="my-sagemaker-bucket", Key="pytorch-inference/model.tar.gz")
    assert head["ETag"].endswith('-2"')  # multipart: 8 MiB + the rest

    downloaded = session.download_data(
        str(tmp_path / "out"), "my-sagemaker-bucket", "pytorch-inference/model.tar.gz"
    )
    assert [Path(path).name for path in downloaded] == ["model.tar.gz"]
    assert hashlib.md5(Path(downloaded[0]).read_bytes()).digest() == hashlib.md5(payload).digest()
    assert set(services) == {"s3"}
