# mypy: disable-error-code="attr-defined,no-untyped-call,union-attr"
# (the SageMaker SDK is typed only in part; this file is user code, written as the post writes it)
"""The seed post's notebook code, run by the unchanged SageMaker Python SDK 2.x against moorage.

test_sagemaker_sdk.py runs this file as a script, in a directory holding the seed's inference.py,
with nothing but environment variables and the SDK's defaults file (config.yaml) pointing it at
moorage, as docs/sagemaker-sdk.md tells users to. The seed's call gains `py_version='py3'` (SDK 2.x
requires it) and `env=` (one model-server worker, to keep the test light). Next to it, and at the same
time (each deploy sleeps 30 s in the SDK), the tiny TorchScript model goes through the SDK's default
NumPy predictor. The last line printed is `RESULT <json>`.

An audit hook records every connection or name lookup for anything but loopback: there must be none.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
outside: list[str] = []


def audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOOPBACK:
        outside.append(f"connect {args[1]!r}")
    elif event == "socket.getaddrinfo" and args[0] not in LOOPBACK and args[0] is not None:
        outside.append(f"lookup {args[0]!r}")


sys.addaudithook(audit)

import numpy as np  # noqa: E402  (after the audit hook, so imports are watched too)
from sagemaker.deserializers import JSONDeserializer  # noqa: E402
from sagemaker.pytorch import PyTorchModel  # noqa: E402
from sagemaker.serializers import JSONSerializer  # noqa: E402


def seed() -> dict[str, Any]:
    # ---- the seed's notebook ------------------------------------------------------------------------
    # role = get_execution_role()  needs STS at a fixed AWS address; the post's other option:
    role = "CustomSageMakerRoleName"
    pytorch_model = PyTorchModel(
        model_data="s3://pytorch-sagemaker-example/model.tar.gz",
        role=role,
        entry_point="inference.py",
        framework_version="1.3.1",
        py_version="py3",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
    )
    predictor = pytorch_model.deploy(instance_type="ml.t2.medium", initial_instance_count=1)
    # ---- then, as the post says, send {"url": ...} as JSON ------------------------------------------
    predictor.serializer = JSONSerializer()
    predictor.deserializer = JSONDeserializer()
    answer = predictor.predict({"url": os.environ["SEED_IMAGE_URL"]})
    model = pytorch_model.sagemaker_session.sagemaker_client.describe_model(ModelName=pytorch_model.name)
    predictor.delete_model()
    predictor.delete_endpoint()
    return {
        "answer": answer,
        "endpoint": predictor.endpoint_name,
        "role": model["ExecutionRoleArn"],
        "environment": model["PrimaryContainer"]["Environment"],
        "model_data": model["PrimaryContainer"]["ModelDataUrl"],
    }


def tiny() -> dict[str, Any]:
    model = PyTorchModel(
        model_data="s3://pytorch-sagemaker-example/tiny.tar.gz",
        role="arn:aws:iam::000000000000:role/SageMakerRole",
        framework_version="1.3.1",
        py_version="py3",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
    )
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    batch = (np.arange(32, dtype=np.float32) / 32).reshape(2, 16)
    answer = predictor.predict(batch)
    predictor.delete_model()
    predictor.delete_endpoint()
    return {
        "predictor": type(predictor).__name__,
        "content_type": predictor.content_type,
        "accept": predictor.accept,
        "input": batch.tolist(),
        "output": answer.tolist(),
        "dtype": str(answer.dtype),
    }


with ThreadPoolExecutor(max_workers=2) as pool:
    seed_run, tiny_run = pool.submit(seed), pool.submit(tiny)
    result = {"seed": seed_run.result(), "tiny": tiny_run.result(), "outside": outside}
print("RESULT " + json.dumps(result))
