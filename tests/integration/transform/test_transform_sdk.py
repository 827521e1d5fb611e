"""The unchanged SageMaker SDK 2.x runs a batch transform on moorage: `model.transformer(...).transform(...)`.

The SDK is pointed at the server only through the environment (AWS_ENDPOINT_URL_*), as
docs/sagemaker-sdk.md says. `logs=False`: with logs the SDK polls DescribeTransformJob only every
30 s (test_transform_logs.py runs it with `logs=True`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import boto3
import pytest

from support.hosting import IMAGE
from support.servers import REGION, RunningServer

from .conftest import keys, new_bucket, read, sdk_environment

pytestmark = pytest.mark.slow


def test_sdk_transformer_scores_csv_lines(
    server: RunningServer, score_tar: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sdk_environment(monkeypatch, server, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK's own deprecation and config notices
        from sagemaker.model import Model
        from sagemaker.session import Session

    s3 = server.client("s3")
    bucket = new_bucket(s3)
    s3.upload_file(str(score_tar), bucket, "model/score.tar.gz")
    rows = [f"{i},{2 * i}" for i in range(30)]
    s3.put_object(Bucket=bucket, Key="input/rows.csv", Body="\n".join(rows) + "\n")
    session = Session(boto_session=boto3.Session(region_name=REGION), default_bucket=bucket)
    model = Model(
        image_uri=IMAGE,
        model_data=f"s3://{bucket}/model/score.tar.gz",
        role="arn:aws:iam::000000000000:role/moorage-tests",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
        sagemaker_session=session,
    )

    transformer = model.transformer(  # type: ignore[no-untyped-call]
        instance_count=1,
        instance_type="ml.m5.large",
        strategy="MultiRecord",
        assemble_with="Line",
        output_path=f"s3://{bucket}/output",
        accept="text/csv",
        max_payload=1,
    )
    transformer.transform(
        f"s3://{bucket}/input/", content_type="text/csv", split_type="Line", wait=True, logs=False
    )

    assert keys(s3, bucket, "output/") == ["output/rows.csv.out"]
    sums = [line.split(",")[0] for line in read(s3, bucket, "output/rows.csv.out").splitlines()]
    assert sums == [str(3 * i) for i in range(30)]
    described = session.sagemaker_client.describe_transform_job(
        TransformJobName=transformer.latest_transform_job.name
    )
    assert (described["TransformJobStatus"], described["BatchStrategy"], described["MaxPayloadInMB"]) == (
        "Completed",
        "MultiRecord",
        1,
    )
