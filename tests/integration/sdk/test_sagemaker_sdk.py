"""The unchanged SageMaker Python SDK 2.257.7 deploys the seed to moorage and predicts (issue 4, item 2).

`seed_notebook.py` is the post's notebook code, run in its own process with only the recipe of
docs/sagemaker-sdk.md: endpoint variables, dummy credentials, a region and a config.yaml naming the
default bucket. Once on moorage's embedded S3 store, once with moto's S3 behind both the SDK and the
server. Each run takes at least 30 s: the SDK sleeps that long before its first DescribeEndpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from moorage.examples.builders import SEED_HANDLER
from support.servers import REGION

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).with_name("seed_notebook.py")
DEFAULT_BUCKET = "sagemaker-moorage-tests"
CONFIG_YAML = f"""\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      Session:
        DefaultS3Bucket: {DEFAULT_BUCKET}
"""
FAST = {"Delay": 0.25, "MaxAttempts": 400}


def recipe(server_url: str, s3_url: str, home: Path) -> dict[str, str]:
    """The environment of docs/sagemaker-sdk.md, and nothing of the developer's."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_ENDPOINT_URL_SAGEMAKER": server_url,
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": server_url,
        "AWS_ENDPOINT_URL_IAM": server_url,
        "AWS_ENDPOINT_URL_S3": s3_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(home / "config.yaml"),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    }


def tiny_answer(model_pt: Path, batch: list[list[float]]) -> Any:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript; SageMaker loads it
        model = torch.jit.load(str(model_pt))  # type: ignore[no-untyped-call]
        return model(torch.tensor(batch)).numpy()


def test_the_seed_notebook_with_the_sagemaker_sdk(
    stack: Any,
    artifacts: Any,
    seed_weights_tar: Path,
    seed_request: dict[str, str],
    seed_top3: list[str],
    tmp_path: Path,
) -> None:
    work, home = tmp_path / "notebook", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    shutil.copyfile(SEED_HANDLER, work / "inference.py")
    (home / "config.yaml").write_text(CONFIG_YAML)
    # The post's first step: aws s3 cp ./model.tar.gz s3://pytorch-sagemaker-example
    s3 = stack.s3()
    s3.create_bucket(Bucket="pytorch-sagemaker-example")
    # Both deploys run at once, and each SDK session creates the default bucket if ListBuckets lacks it.
    # S3 in us-east-1 (and moto) answer a second CreateBucket of an owned bucket with 200; the
    # embedded store answers BucketAlreadyOwnedByYou, which the SDK does not tolerate. Creating the
    # bucket first keeps the race out of this test (tests/integration/s3 covers the SDK creating it).
    s3.create_bucket(Bucket=DEFAULT_BUCKET)
    s3.upload_file(str(seed_weights_tar), "pytorch-sagemaker-example", "model.tar.gz")
    s3.upload_file(str(artifacts.tiny_tar), "pytorch-sagemaker-example", "tiny.tar.gz")

    env = {**recipe(stack.server.url, stack.s3_url, home), "SEED_IMAGE_URL": seed_request["url"]}
    run = subprocess.run(
        [sys.executable, str(NOTEBOOK)], cwd=work, env=env, capture_output=True, timeout=480, check=False
    )
    output = run.stdout.decode(errors="replace")
    assert run.returncode == 0, (output + run.stderr.decode(errors="replace"))[-6000:]
    result = json.loads(output.rsplit("RESULT ", 1)[1])
    assert result["outside"] == []  # nothing but loopback was contacted, not even STS

    seed = result["seed"]
    assert [entry["prediction"] for entry in seed["answer"]] == seed_top3
    assert seed["role"] == "arn:aws:iam::000000000000:role/CustomSageMakerRoleName"  # through IAM GetRole
    assert seed["environment"] == {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": REGION,
    }
    assert seed["model_data"].startswith(f"s3://{DEFAULT_BUCKET}/pytorch-inference-")

    tiny = result["tiny"]
    assert (tiny["predictor"], tiny["content_type"], tiny["dtype"]) == (
        "PyTorchPredictor",
        "application/x-npy",
        "float64",  # the default output_fn goes through a list (spec §2.8)
    )
    np.testing.assert_allclose(
        np.array(tiny["output"]), tiny_answer(artifacts.tiny_dir / "model.pt", tiny["input"]), rtol=1e-5
    )

    # The SDK cleaned up after itself through moorage's API: nothing is left.
    sm = stack.server.client("sagemaker")
    sm.get_waiter("endpoint_deleted").wait(EndpointName=seed["endpoint"], WaiterConfig=FAST)
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    if stack.kind == "moto":  # the SDK and the server both used moto; the embedded store stayed empty
        assert stack.embedded_s3().list_buckets()["Buckets"] == []
