"""The endpoint journey, written once and run on every backend (local processes, Ray actors).

Only unchanged boto3 clients talk to the server; what they see must not depend on where the
instances run: deploy, invoke, a handler error as ModelError, a dead worker as ModelError and its
replacement, instance counts in place, a blue/green update, delete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.backends import instance_logs
from support.hosting import (
    FAST,
    act,
    answer,
    delete,
    deploy,
    new_config,
    unique,
    variant_counts,
    wait_for_counts,
    wait_for_instances,
)
from support.servers import RunningServer

pytestmark = pytest.mark.slow


def model_error(runtime: Any, endpoint: str, **request: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        act(runtime, endpoint, **request)
    response: dict[str, Any] = caught.value.response
    assert response["Error"]["Code"] == "ModelError", response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    return response


def test_deploy_invoke_fail_update_delete(server: RunningServer, fault_tar: Path, tmp_path: Path) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, fault_tar, env={"MODEL_VERSION": "1"}, instances=2)
    assert variant_counts(sm, name) == ("InService", 2, 2)

    first = act(runtime, name, action="echo")
    assert first["ContentType"] == "application/json"
    assert first["InvokedProductionVariant"] == "AllTraffic"
    body = json.loads(first["Body"].read())
    assert (body["version"], body["echo"]) == ("1", {"action": "echo"})
    pids = {answer(runtime, name, action="echo")["pid"] for _ in range(8)}
    assert len(pids) == 2, "both instances take requests"

    # A handler exception is the container's 500, shown as ModelError; its traceback goes to the log.
    failed = model_error(runtime, name, action="raise", where="predict_fn")
    assert failed["OriginalStatusCode"] == 500
    assert failed["OriginalMessage"] == "boom in predict_fn"
    assert "ValueError: boom in predict_fn" in instance_logs(server, name)

    # Blue/green: the old configuration serves until the new one is up, then never again.
    # The new model's model_fn waits for `release`: the update is Updating, and the old model serves,
    # for as long as the test holds it, not for however long a load happens to take.
    release = tmp_path / "release"
    loading = {"MODEL_VERSION": "2", "FAULT_LOAD": "block", "FAULT_RELEASE": str(release)}
    sm.update_endpoint(EndpointName=name, EndpointConfigName=new_config(sm, fault_tar, env=loading))
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
    assert {answer(runtime, name, action="echo")["version"] for _ in range(4)} == {"1"}
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
    release.touch()
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    assert {answer(runtime, name, action="echo")["version"] for _ in range(4)} == {"2"}
    assert variant_counts(sm, name) == ("InService", 1, 1)

    delete(sm, name)
    with pytest.raises(ClientError) as gone:
        sm.describe_endpoint(EndpointName=name)
    assert gone.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as unknown:
        act(runtime, name, action="echo")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"


def test_a_dead_worker_is_a_model_error_and_is_replaced(server: RunningServer, fault_tar: Path) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, fault_tar)
    try:
        before = answer(runtime, name, action="echo")["pid"]
        died = model_error(runtime, name, action="kill")
        assert died["OriginalStatusCode"] == 500
        assert "Worker died." in died["OriginalMessage"]
        # The request that follows waits for the replacement instead of failing (the variant expects it).
        after = answer(runtime, name, action="echo")
        assert after["version"] == "1" and after["pid"] != before
        wait_for_counts(sm, name, current=1, desired=1)
    finally:
        delete(sm, name)


def test_instance_count_changes_in_place(server: RunningServer, fault_tar: Path) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, fault_tar)
    try:
        first_pid = answer(runtime, name, action="echo")["pid"]
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
        # Updating until the new instance is up (unless it is up before DescribeEndpoint asks).
        assert variant_counts(sm, name) in {("Updating", 1, 2), ("InService", 2, 2)}
        wait_for_counts(sm, name, current=2, desired=2)
        pids = {answer(runtime, name, action="echo")["pid"] for _ in range(8)}
        assert first_pid in pids and len(pids) == 2, "scaling out kept the running instance"

        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
        )
        wait_for_counts(sm, name, current=1, desired=1)
        assert len({answer(runtime, name, action="echo")["pid"] for _ in range(4)}) == 1
    finally:
        delete(sm, name)


def test_a_serverless_variant_goes_to_zero_and_answers_the_next_call(
    server: RunningServer, fault_tar: Path
) -> None:
    """Serverless variants (moorage.serverless) on every backend: the variant stops its idle instance
    and starts one for the next call, which waits for it."""
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    config = {"MemorySizeInMB": 1024, "MaxConcurrency": 2}
    name = deploy(sm, fault_tar, name=unique("sls"), serverless_config=config)
    try:
        wait_for_instances(sm, name, 0)
        assert answer(runtime, name, action="echo")["version"] == "1"
        wait_for_instances(sm, name, 1)
    finally:
        delete(sm, name)
