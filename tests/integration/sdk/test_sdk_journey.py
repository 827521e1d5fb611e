"""The seed's notebook code through `moorage.PyTorchModel`, on the embedded S3 store and on moto's.

The client is configured only by the environment (MOORAGE_URL, AWS_ENDPOINT_URL_S3, dummy keys).
Each journey deploys, predicts, checks what the server was asked to create, and deletes.
"""

from __future__ import annotations

import json
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

import moorage
from moorage.examples.builders import SEED_HANDLER
from moorage.sdk.staging import ARTIFACT_BUCKET

pytestmark = pytest.mark.slow

FAST = {"Delay": 0.25, "MaxAttempts": 400}
SDK_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "SAGEMAKER_REGION": "us-east-1",
}


@pytest.fixture
def client(stack: Any, client_env: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MOORAGE_URL", stack.server.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", stack.s3_url)
    return stack


def read_members(s3: Any, uri: str, dest: Path) -> dict[str, bytes | None]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3.download_file(bucket, key, str(dest))
    found: dict[str, bytes | None] = {}
    with tarfile.open(dest, "r:gz") as archive:
        for member in archive:
            extracted = archive.extractfile(member) if member.isfile() else None
            found[member.name] = extracted.read() if extracted else None
    return found


def assert_deleted(sm: Any, predictor: moorage.Predictor, model_name: str) -> None:
    sm.get_waiter("endpoint_deleted").wait(EndpointName=predictor.endpoint_name, WaiterConfig=FAST)
    for call, argument in (
        (sm.describe_endpoint_config, {"EndpointConfigName": predictor.endpoint_name}),
        (sm.describe_model, {"ModelName": model_name}),
    ):
        with pytest.raises(ClientError) as gone:
            call(**argument)
        assert gone.value.response["Error"]["Code"] == "ValidationException"


def test_the_seed_notebook_with_moorages_sdk(
    client: Any, seed_weights_tar: Path, seed_request: dict[str, str], seed_top3: list[str]
) -> None:
    bucket = client.new_bucket("pytorch-sagemaker-example")
    client.s3().upload_file(str(seed_weights_tar), bucket, "model.tar.gz")  # the post's `aws s3 cp`
    steps: list[str] = []

    pytorch_model = moorage.PyTorchModel(
        model_data=f"s3://{bucket}/model.tar.gz",
        role="CustomSageMakerRoleName",
        entry_point=str(SEED_HANDLER),
        framework_version="1.3.1",
        py_version="py3",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
    )
    predictor = pytorch_model.deploy(
        instance_type="ml.t2.medium",
        initial_instance_count=1,
        serializer=moorage.JSONSerializer(),
        deserializer=moorage.JSONDeserializer(),
        progress=steps.append,
    )
    top3 = predictor.predict(seed_request)
    assert [entry["prediction"] for entry in top3] == seed_top3
    assert all(entry["score"].endswith("%") for entry in top3)

    # What the server was asked for: SageMaker's calls, names and environment (spec §1.3, §6.2).
    sm = client.server.client("sagemaker")
    model = sm.describe_model(ModelName=pytorch_model.name)
    assert model["ExecutionRoleArn"] == "arn:aws:iam::000000000000:role/CustomSageMakerRoleName"
    assert model["PrimaryContainer"]["Environment"] == {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        **SDK_ENVIRONMENT,
    }
    model_data_url = model["PrimaryContainer"]["ModelDataUrl"]
    assert model_data_url.startswith(f"s3://{bucket}/pytorch-inference-")
    assert model_data_url.endswith("/model.tar.gz")
    client.s3().head_object(Bucket=bucket, Key=model_data_url.split("/", 3)[3])  # in the same bucket
    endpoint = sm.describe_endpoint(EndpointName=predictor.endpoint_name)
    assert endpoint["EndpointConfigName"] == predictor.endpoint_name  # as SageMaker's SDK names it
    config = sm.describe_endpoint_config(EndpointConfigName=predictor.endpoint_name)
    (variant,) = config["ProductionVariants"]
    assert (
        variant["VariantName"],
        variant["ModelName"],
        variant["InstanceType"],
        variant["InitialInstanceCount"],
    ) == (
        "AllTraffic",
        pytorch_model.name,
        "ml.t2.medium",
        1,
    )
    assert any(step.startswith("Repacking") for step in steps)
    assert f"Endpoint {predictor.endpoint_name}: InService" in steps
    # The endpoints as a notebook shows them: a table whose rows are what DescribeEndpoint says.
    table = moorage.list_endpoints()
    (row,) = [row for row in table if row.name == predictor.endpoint_name]
    assert (row.status, row.instances, row.desired_instances, row.variants) == (
        "InService",
        1,
        1,
        ("AllTraffic",),
    )
    assert f"{predictor.endpoint_name}  InService  1/1" in repr(table)
    assert f"<td>{predictor.endpoint_name}</td><td>InService</td><td>1/1</td>" in table._repr_html_()

    predictor.delete_endpoint()
    predictor.delete_model()  # after delete_endpoint too: the SDK learned the models first
    assert_deleted(sm, predictor, str(pytorch_model.name))
    if client.kind == "moto":  # the server read model data from moto: its own store stayed empty
        assert client.embedded_s3().list_buckets()["Buckets"] == []


def test_a_local_model_goes_to_the_servers_store_and_speaks_numpy(
    client: Any, artifacts: Any, tmp_path: Path
) -> None:
    import torch

    model = moorage.PyTorchModel(artifacts.tiny_tar, model_server_workers=1)
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    assert isinstance(predictor, moorage.PyTorchPredictor)
    assert (predictor.content_type, predictor.accept) == ("application/x-npy", "application/x-npy")

    batch = np.random.default_rng(0).random((3, 16), dtype=np.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript; SageMaker loads it
        tiny = torch.jit.load(str(artifacts.tiny_dir / "model.pt"))  # type: ignore[no-untyped-call]
        expected = tiny(torch.from_numpy(batch)).numpy()
    answer = predictor.predict(batch)
    # float64: the default output_fn goes through a Python list before np.save (spec §2.8).
    assert isinstance(answer, np.ndarray) and answer.dtype == np.float64
    np.testing.assert_allclose(answer, expected, rtol=1e-5)

    # The archive went to the store the server reads from, unchanged (there was no code to add).
    sm = client.server.client("sagemaker")
    url = sm.describe_model(ModelName=model.name)["PrimaryContainer"]["ModelDataUrl"]
    assert url.startswith(f"s3://{ARTIFACT_BUCKET}/pytorch-inference-")
    assert read_members(client.s3(), url, tmp_path / "staged.tar.gz") == {
        "model.pt": (artifacts.tiny_dir / "model.pt").read_bytes()
    }

    # Attach to the endpoint by name, with other formats.
    attached = moorage.Predictor(
        predictor.endpoint_name, serializer=moorage.JSONSerializer(), deserializer=moorage.JSONDeserializer()
    )
    np.testing.assert_allclose(np.array(attached.predict(batch.tolist())), expected, rtol=1e-5)
    as_csv = moorage.Predictor(
        predictor.endpoint_name, serializer=moorage.CSVSerializer(), deserializer=moorage.CSVDeserializer()
    ).predict(batch[0])
    # One CSV row decodes to a vector (spec §2.8), so the answer is one value per line.
    assert len(as_csv) == 4
    np.testing.assert_allclose(np.array(as_csv, dtype=np.float32).ravel(), expected[0], rtol=1e-5)
    raw = moorage.Predictor(predictor.endpoint_name).predict(  # bytes in, bytes out; Accept */*
        moorage.JSONSerializer().serialize(batch.tolist()), initial_args={"ContentType": "application/json"}
    )
    assert isinstance(raw, bytes)
    np.testing.assert_allclose(np.array(json.loads(raw)), expected, rtol=1e-5)

    predictor.delete_model()
    predictor.delete_endpoint()
    assert_deleted(sm, predictor, str(model.name))
