"""Shared pieces of the shadow-variant and guarded-update tests: one handler whose behaviour its
model's environment chooses (so an old and a new model differ only by environment), the archive,
deploying configs with a shadow, and reading /metrics by variant.

GUARD_MODE: "" answers {"version": MODEL_VERSION, "pid": ...}; "fail" raises in predict_fn (a 500 from
the model); "block" waits until the file GUARD_RELEASE exists (at most 60 s), then answers.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from support.hosting import FAST, pack_handler, unique
from support.servers import RunningServer, http_get

GUARD_HANDLER = textwrap.dedent("""
    import json
    import os
    import time


    def model_fn(model_dir):
        return {"version": os.environ.get("MODEL_VERSION", "1")}


    def input_fn(body, content_type):
        return json.loads(body or b"{}")


    def predict_fn(request, model):
        mode = os.environ.get("GUARD_MODE", "")
        if mode == "fail":
            raise RuntimeError("this model version is broken")
        if mode == "block":
            deadline = time.monotonic() + 60
            while not os.path.exists(os.environ["GUARD_RELEASE"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"version": model["version"], "pid": os.getpid(), "echo": request}


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
""")


@pytest.fixture(scope="session")
def guard_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("guard-model"), GUARD_HANDLER, archive="guard.tar.gz")


def guard_model(sm: Any, tarball: Path, **env: str) -> str:
    """A model of the guard handler with this environment; returns its name."""
    name = unique("model")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={
            "ModelDataUrl": f"file://{tarball}",
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **env},
        },
    )
    return name


def variant(name: str, model: str, weight: float = 1.0, instances: int = 1) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": instances,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": weight,
    }


def config(
    sm: Any, production: list[dict[str, Any]], shadows: list[dict[str, Any]] | None = None, **extra: Any
) -> str:
    """CreateEndpointConfig with these variants; returns its name."""
    name = unique("config")
    members: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": production, **extra}
    if shadows:
        members["ShadowProductionVariants"] = shadows
    sm.create_endpoint_config(**members)
    return name


def endpoint_on(server: RunningServer, config_name: str) -> str:
    """CreateEndpoint on this config, InService; returns its name."""
    sm = server.client("sagemaker")
    name = unique("ep")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config_name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    return name


def invoke(runtime: Any, endpoint: str, **request: Any) -> tuple[str, dict[str, Any]]:
    """(the variant that answered, the answer) of one InvokeEndpoint."""
    response = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps(request), ContentType="application/json"
    )
    answer: dict[str, Any] = json.loads(response["Body"].read())
    return response["InvokedProductionVariant"], answer


def metric(server: RunningServer, family: str, endpoint: str, variant_name: str) -> int:
    """One counter of /metrics for an endpoint's variant (0 when absent)."""
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    labels = f'{{EndpointName="{endpoint}",VariantName="{variant_name}"}}'
    for line in body.decode().splitlines():
        if line.startswith(f"{family}_total{labels} "):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def wait_for_metric(
    server: RunningServer, family: str, endpoint: str, variant_name: str, value: int, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while (seen := metric(server, family, endpoint, variant_name)) != value:
        assert time.monotonic() < deadline, f"{family} of {variant_name} stayed {seen}, not {value}"
        time.sleep(0.05)
