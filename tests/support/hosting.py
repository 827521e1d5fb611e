"""Deploying and calling endpoints the way a user's boto3 script does, shared by the hosting tests.

Every helper takes unchanged boto3 clients (`server.client("sagemaker")`, `"sagemaker-runtime"`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FAST = {"Delay": 0.25, "MaxAttempts": 400}  # waiters: poll often, give up after ~100 s
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310"


def pack_handler(root: Path, source: str, *, folder: str = "model", archive: str = "model.tar.gz") -> Path:
    """`root/<archive>` with no weights, whose code/inference.py is `source` (built in `root/<folder>`)."""
    from moorage.examples.builders import pack

    model_dir = root / folder
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(source)
    return pack(model_dir, root / archive)


def pack_fault_handler(root: Path) -> Path:
    """fault.tar.gz with no weights and the fault handler (tests/support/handlers.py) as code/inference.py."""
    from support.handlers import FAULT_HANDLER

    return pack_handler(root, FAULT_HANDLER, folder="fault", archive="fault.tar.gz")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deploy(
    sm: Any,
    tarball: Path,
    *,
    name: str | None = None,
    env: dict[str, str] | None = None,
    variants: Sequence[tuple[str, float]] = (("AllTraffic", 1.0),),
    instances: int = 1,
    instance_type: str = "ml.m5.large",
    wait: bool = True,
    async_config: dict[str, Any] | None = None,
    capture_config: dict[str, Any] | None = None,
    serverless_config: dict[str, Any] | None = None,
) -> str:
    """CreateModel + CreateEndpointConfig + CreateEndpoint, as a user's script does; returns the name.

    `async_config`: the config's AsyncInferenceConfig (an asynchronous endpoint); `capture_config`: its
    DataCaptureConfig; `serverless_config`: the variants' ServerlessConfig instead of an instance type
    and count (a serverless endpoint)."""
    name = name or unique("ep")
    model = unique("model")
    sm.create_model(
        ModelName=model,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/moorage-tests",
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": f"file://{tarball}",
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **(env or {})},
        },
    )
    config = unique("config")
    sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                **(
                    {"ServerlessConfig": serverless_config}
                    if serverless_config is not None
                    else {"InitialInstanceCount": instances, "InstanceType": instance_type}
                ),
                "InitialVariantWeight": weight,
            }
            for variant, weight in variants
        ],
        **({"AsyncInferenceConfig": async_config} if async_config is not None else {}),
        **({"DataCaptureConfig": capture_config} if capture_config is not None else {}),
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config)
    if wait:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    return name


def new_config(
    sm: Any,
    tarball: Path,
    env: dict[str, str] | None = None,
    instances: int = 1,
    instance_type: str = "ml.m5.large",
) -> str:
    """A model and an endpoint config for UpdateEndpoint; returns the config's name."""
    model = unique("model")
    sm.create_model(
        ModelName=model,
        PrimaryContainer={
            "ModelDataUrl": f"file://{tarball}",
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **(env or {})},
        },
    )
    return one_variant_config(sm, model, instances=instances, instance_type=instance_type)


def one_variant_config(
    sm: Any, model: str, *, name: str | None = None, instances: int = 1, instance_type: str = "ml.m5.large"
) -> str:
    """CreateEndpointConfig whose one variant, AllTraffic, serves `model`; returns the config's name."""
    config = name or unique("config")
    sm.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": instances,
                "InstanceType": instance_type,
            }
        ],
    )
    return config


def delete(sm: Any, name: str) -> None:
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST)


def act(runtime: Any, endpoint: str, **request: Any) -> Any:
    """InvokeEndpoint with a JSON request for the fault handler (tests/support/handlers.py)."""
    return runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps(request),
        ContentType="application/json",
        Accept="application/json",
    )


def answer(runtime: Any, endpoint: str, **request: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(act(runtime, endpoint, **request)["Body"].read())
    return result


def variant_counts(sm: Any, name: str, variant: str = "AllTraffic") -> tuple[str, int, int]:
    """(EndpointStatus, CurrentInstanceCount, DesiredInstanceCount) of a variant, from DescribeEndpoint."""
    described = sm.describe_endpoint(EndpointName=name)
    summary = next(v for v in described["ProductionVariants"] if v["VariantName"] == variant)
    return described["EndpointStatus"], summary["CurrentInstanceCount"], summary["DesiredInstanceCount"]


def wait_for_counts(
    sm: Any,
    name: str,
    current: int,
    desired: int,
    timeout: float = 120.0,
    variant: str = "AllTraffic",
    status: str = "InService",
) -> list[tuple[str, int, int]]:
    """Poll DescribeEndpoint until it shows these counts; returns every state seen on the way."""
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        state = variant_counts(sm, name, variant)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == (status, current, desired):
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {name} never reached {status} {current}/{desired}: {seen}")
        time.sleep(0.05)


def current_instances(sm: Any, name: str, variant: str = "AllTraffic") -> int:
    """A variant's CurrentInstanceCount from DescribeEndpoint (a serverless one has no desired count)."""
    described = sm.describe_endpoint(EndpointName=name)
    summary = next(v for v in described["ProductionVariants"] if v["VariantName"] == variant)
    count: int = summary["CurrentInstanceCount"]
    return count


def wait_for_instances(sm: Any, name: str, count: int, timeout: float = 60.0) -> None:
    """Poll DescribeEndpoint until the variant's CurrentInstanceCount is `count`."""
    deadline = time.monotonic() + timeout
    while current_instances(sm, name) != count:
        assert time.monotonic() < deadline, f"{name} never reached {count} instance(s)"
        time.sleep(0.1)
