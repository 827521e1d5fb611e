"""The control plane over real HTTP, driven by an unchanged boto3 `sagemaker` client.

The reconciler is not part of this test: where an endpoint must move on (InService, Failed, gone),
the test calls the store's reconciler methods itself, as the reconciler would.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, WaiterError

from moorage.api.control import ControlPlane
from moorage.control.arns import ControlContext
from moorage.control.records import EndpointStatus, VariantState
from moorage.control.store import Store
from moorage.httpd import Request, Response
from support.background import serve_in_thread

pytestmark = pytest.mark.slow

REGION = "us-east-1"
ACCOUNT = "000000000000"
PREFIX = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
FAST = {"Delay": 0.1, "MaxAttempts": 100}
SERVING = (VariantState("AllTraffic", 1.0, 1.0, 1, 1),)


class RecordingHooks:
    """Remembers every endpoint_changed call and whether it ran on the event loop."""

    def __init__(self) -> None:
        self.changed: list[str] = []
        self.on_loop: list[bool] = []

    def endpoint_changed(self, name: str) -> None:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        self.changed.append(name)


@dataclass
class Harness:
    client: Any
    store: Store
    hooks: RecordingHooks
    url: str
    describe_seen: threading.Event


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[Harness]:
    store = Store(tmp_path / "state.sqlite3")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
    hooks = RecordingHooks()
    plane = ControlPlane(store, ControlContext(REGION, ACCOUNT), hooks, executor)
    describe_seen = threading.Event()

    async def app(request: Request) -> Response:
        response = await plane.handle(request)
        if request.headers.get("X-Amz-Target") == "SageMaker.DescribeEndpoint":
            describe_seen.set()
        return response

    try:
        with serve_in_thread(app) as url:
            client = boto3.client(
                "sagemaker",
                endpoint_url=url,
                region_name=REGION,
                aws_access_key_id="x",
                aws_secret_access_key="y",
            )
            try:
                yield Harness(client, store, hooks, url, describe_seen)
            finally:
                client.close()
    finally:
        executor.shutdown(wait=True)
        store.close()


def error(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RequestId"]
    return response["Error"]["Code"], response["Error"]["Message"]


def create_model(sm: Harness, name: str = "m") -> None:
    sm.client.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": "pytorch-inference:2.1",
            "ModelDataUrl": "s3://bucket/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
        },
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole",
    )


def create_config(sm: Harness, name: str = "cfg", model: str = "m", count: int = 1) -> None:
    sm.client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
                "InitialVariantWeight": 1,
            }
        ],
    )


def create_endpoint(sm: Harness, name: str = "ep") -> None:
    sm.client.create_endpoint(EndpointName=name, EndpointConfigName="cfg", Tags=[])  # the SDK sends Tags=[]


# Models and configs -------------------------------------------------------------------------------
def test_model_operations(sm: Harness) -> None:
    created = sm.client.create_model(
        ModelName="My-Model",
        PrimaryContainer={"Image": "img", "ModelDataUrl": "file:///srv/model.tar.gz"},
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    assert created["ModelArn"] == f"{PREFIX}:model/my-model"
    described = sm.client.describe_model(ModelName="my-model")
    assert described["ModelName"] == "My-Model"
    assert described["ModelArn"] == f"{PREFIX}:model/my-model"
    assert described["PrimaryContainer"] == {"Image": "img", "ModelDataUrl": "file:///srv/model.tar.gz"}
    record = sm.store.get_model("my-model")
    assert record is not None
    assert described["CreationTime"] == datetime.fromtimestamp(record.creation_time, UTC)
    listed = sm.client.list_models()["Models"]
    assert [(item["ModelName"], item["ModelArn"]) for item in listed] == [
        ("My-Model", f"{PREFIX}:model/my-model")
    ]
    assert sm.client.delete_model(ModelName="MY-MODEL")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert error(sm.client.describe_model, ModelName="My-Model") == (
        "ValidationException",
        f'Could not find model "{PREFIX}:model/my-model".',
    )
    assert error(sm.client.delete_model, ModelName="gone") == (
        "ValidationException",
        f'Could not find model "{PREFIX}:model/gone".',
    )
    assert sm.hooks.changed == []


def test_endpoint_config_operations(sm: Harness) -> None:
    assert error(create_config, sm=sm) == ("ValidationException", f'Could not find model "{PREFIX}:model/m".')
    create_model(sm)
    create_config(sm)
    described = sm.client.describe_endpoint_config(EndpointConfigName="cfg")
    assert described["EndpointConfigArn"] == f"{PREFIX}:endpoint-config/cfg"
    assert described["ProductionVariants"] == [
        {
            "VariantName": "AllTraffic",
            "ModelName": "m",
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1,
            "InitialVariantWeight": 1.0,
        }
    ]
    assert [item["EndpointConfigName"] for item in sm.client.list_endpoint_configs()["EndpointConfigs"]] == [
        "cfg"
    ]
    sm.client.delete_endpoint_config(EndpointConfigName="cfg")
    assert error(sm.client.describe_endpoint_config, EndpointConfigName="cfg") == (
        "ValidationException",
        f'Could not find endpoint configuration "{PREFIX}:endpoint-config/cfg".',
    )


def test_already_existing_messages(sm: Harness) -> None:
    create_model(sm)
    create_config(sm)
    create_endpoint(sm)
    assert error(create_model, sm=sm, name="M") == (
        "ValidationException",
        f'Cannot create already existing model "{PREFIX}:model/m".',
    )
    assert error(create_config, sm=sm) == (
        "ValidationException",
        f'Cannot create already existing endpoint configuration "{PREFIX}:endpoint-config/cfg".',
    )
    assert error(create_endpoint, sm=sm, name="EP") == (
        "ValidationException",
        f'Cannot create already existing endpoint "{PREFIX}:endpoint/ep".',
    )


# Endpoints ----------------------------------------------------------------------------------------
def test_endpoint_lifecycle(sm: Harness) -> None:
    create_model(sm)
    create_config(sm)
    assert error(sm.client.create_endpoint, EndpointName="ep", EndpointConfigName="nope") == (
        "ValidationException",
        f'Could not find endpoint configuration "{PREFIX}:endpoint-config/nope".',
    )
    arn = sm.client.create_endpoint(EndpointName="Ep", EndpointConfigName="cfg", Tags=[])["EndpointArn"]
    assert arn == f"{PREFIX}:endpoint/ep"
    assert sm.hooks.changed == ["Ep"]
    assert sm.hooks.on_loop == [True]

    creating = sm.client.describe_endpoint(EndpointName="ep")
    assert creating["EndpointStatus"] == "Creating"
    assert creating["EndpointConfigName"] == "cfg"
    (variant,) = creating["ProductionVariants"]
    assert (
        variant["VariantName"],
        variant["CurrentInstanceCount"],
        variant["DesiredInstanceCount"],
        variant["CurrentWeight"],
        variant["DesiredWeight"],
    ) == ("AllTraffic", 0, 1, 0.0, 1.0)
    assert variant["DeployedImages"][0]["SpecifiedImage"] == "pytorch-inference:2.1"
    assert isinstance(variant["DeployedImages"][0]["ResolutionTime"], datetime)
    assert error(sm.client.delete_endpoint, EndpointName="ep") == (
        "ValidationException",
        f'Cannot update in-progress endpoint "{PREFIX}:endpoint/ep".',
    )

    assert sm.store.endpoint_in_service("ep", variants=SERVING) is not None
    sm.client.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    serving = sm.client.describe_endpoint(EndpointName="ep")
    assert serving["EndpointStatus"] == "InService"
    assert serving["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert "PendingDeploymentSummary" not in serving
    assert serving["LastModifiedTime"] >= serving["CreationTime"]

    create_config(sm, "cfg2", count=2)
    sm.client.update_endpoint(EndpointName="ep", EndpointConfigName="cfg2")
    updating = sm.client.describe_endpoint(EndpointName="ep")
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == "cfg"
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "cfg2"
    assert updating["PendingDeploymentSummary"]["ProductionVariants"][0]["DesiredInstanceCount"] == 2
    assert error(sm.client.update_endpoint, EndpointName="ep", EndpointConfigName="cfg") == (
        "ValidationException",
        f'Cannot update in-progress endpoint "{PREFIX}:endpoint/ep".',
    )
    sm.store.endpoint_in_service("ep", variants=(VariantState("AllTraffic", 1.0, 1.0, 2, 2),))
    assert sm.client.describe_endpoint(EndpointName="ep")["EndpointConfigName"] == "cfg2"

    sm.client.update_endpoint_weights_and_capacities(
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}],
    )
    weights = sm.client.describe_endpoint(EndpointName="ep")
    assert weights["EndpointStatus"] == "Updating"
    assert weights["ProductionVariants"][0]["DesiredInstanceCount"] == 3
    assert weights["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    sm.store.update_failed("ep", "could not start the third instance")
    rolled_back = sm.client.describe_endpoint(EndpointName="ep")
    assert rolled_back["EndpointStatus"] == "InService"
    assert rolled_back["FailureReason"] == "could not start the third instance"

    assert error(
        sm.client.update_endpoint_weights_and_capacities,
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "Nope", "DesiredWeight": 1}],
    ) == ("ValidationException", f'The endpoint "{PREFIX}:endpoint/ep" has no production variant named Nope.')

    sm.client.delete_endpoint(EndpointName="ep")
    assert sm.client.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Deleting"
    assert sm.hooks.changed == ["Ep"] * 4  # create, update, weights, delete (errors change nothing)
    assert all(sm.hooks.on_loop)


def test_endpoint_deleted_waiter(sm: Harness) -> None:
    create_model(sm)
    create_config(sm)
    create_endpoint(sm)
    sm.store.endpoint_in_service("ep", variants=SERVING)
    sm.client.delete_endpoint(EndpointName="ep")
    sm.describe_seen.clear()
    outcome: list[BaseException | None] = []

    def wait() -> None:
        try:
            sm.client.get_waiter("endpoint_deleted").wait(EndpointName="ep", WaiterConfig=FAST)
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert sm.describe_seen.wait(10), "the waiter never polled"
    record = sm.store.get_endpoint("ep")
    assert record is not None and record.status is EndpointStatus.DELETING  # the waiter saw it still there
    assert sm.store.remove_endpoint("ep")
    waiter.join(10)
    assert outcome == [None]
    assert error(sm.client.describe_endpoint, EndpointName="ep") == (
        "ValidationException",
        f'Could not find endpoint "{PREFIX}:endpoint/ep".',
    )


def test_failed_endpoint(sm: Harness) -> None:
    create_model(sm)
    create_config(sm)
    create_endpoint(sm)
    sm.store.endpoint_failed("ep", "model_fn raised: missing file model.pt")
    with pytest.raises(WaiterError, match="Waiter encountered a terminal failure state"):
        sm.client.get_waiter("endpoint_in_service").wait(EndpointName="ep", WaiterConfig=FAST)
    described = sm.client.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["FailureReason"]) == (
        "Failed",
        "model_fn raised: missing file model.pt",
    )
    code, message = error(sm.client.update_endpoint, EndpointName="ep", EndpointConfigName="cfg")
    assert code == "ValidationException"
    assert message.startswith(f'Cannot update failed endpoint "{PREFIX}:endpoint/ep".')
    sm.client.delete_endpoint(EndpointName="ep")
    assert sm.client.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Deleting"


# Validation a client can hit ----------------------------------------------------------------------
def test_validation_errors(sm: Harness) -> None:
    assert error(sm.client.describe_endpoint, EndpointName="bad name") == (
        "ValidationException",
        "1 validation error detected: Value 'bad name' at 'endpointName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
    )
    long_name = "m" * 64
    assert error(sm.client.describe_model, ModelName=long_name) == (
        "ValidationException",
        f"1 validation error detected: Value '{long_name}' at 'modelName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63",
    )
    assert error(sm.client.list_models, SortBy="Size") == (
        "ValidationException",
        "1 validation error detected: Value 'Size' at 'sortBy' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Name, CreationTime]",
    )
    assert error(sm.client.list_endpoints, MaxResults=101, StatusEquals="Running") == (
        "ValidationException",
        "2 validation errors detected: Value '101' at 'maxResults' failed to satisfy constraint: Member "
        "must have value less than or equal to 100; Value 'Running' at 'statusEquals' failed to satisfy "
        "constraint: Member must satisfy enum value set: [OutOfService, Creating, Updating, SystemUpdating, "
        "RollingBack, InService, Deleting, Failed, UpdateRollbackFailed]",
    )
    variants = [
        {"VariantName": "a", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1},
        {
            "VariantName": "b",
            "ModelName": "ENTER MODEL NAME",
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1,
        },
    ]
    assert error(sm.client.create_endpoint_config, EndpointConfigName="c", ProductionVariants=variants) == (
        "ValidationException",
        "1 validation error detected: Value 'ENTER MODEL NAME' at 'productionVariants.2.member.modelName' "
        "failed to satisfy constraint: Member must satisfy regular expression pattern: "
        r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?",
    )
    bad_type = [variants[0] | {"InstanceType": "ml.m5.huge"}]
    _, message = error(sm.client.create_endpoint_config, EndpointConfigName="c", ProductionVariants=bad_type)
    assert message.endswith(", local, local_gpu]")
    assert error(
        sm.client.create_model, ModelName="m", PrimaryContainer={"ModelDataUrl": "ftp://host/model.tar.gz"}
    )[1].endswith(
        "Member must satisfy regular expression pattern: ^((https?|s3)://([^/]+)/?(.*)|file://.+|/.*)"
    )
    assert error(
        sm.client.create_endpoint_config,
        EndpointConfigName="c",
        ProductionVariants=[variants[0] | {"ContainerStartupHealthCheckTimeoutInSeconds": 4000}],
    )[1].endswith("Member must have value less than or equal to 3600")
    # The local-mode instance types run here.
    create_model(sm)
    local = [variants[0] | {"InstanceType": "local"}]
    sm.client.create_endpoint_config(EndpointConfigName="local", ProductionVariants=local)


# Lists --------------------------------------------------------------------------------------------
def test_paginators(sm: Harness) -> None:
    names = ["m-c", "m-a", "m-e", "m-b", "m-d"]
    for name in names:
        create_model(sm, name)
    paginator = sm.client.get_paginator("list_models")
    pages = list(paginator.paginate(SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 2}))
    assert [[model["ModelName"] for model in page["Models"]] for page in pages] == [
        ["m-a", "m-b"],
        ["m-c", "m-d"],
        ["m-e"],
    ]
    newest_first = paginator.paginate(PaginationConfig={"PageSize": 3}).build_full_result()
    assert [model["ModelName"] for model in newest_first["Models"]] == list(reversed(names))
    filtered = paginator.paginate(NameContains="M-D").build_full_result()
    assert [model["ModelName"] for model in filtered["Models"]] == ["m-d"]

    create_config(sm, model="m-a")
    for index in range(12):
        create_endpoint(sm, f"ep-{index:02d}")
    assert len(sm.client.list_endpoints()["Endpoints"]) == 10  # SageMaker's default page
    every = (
        sm.client.get_paginator("list_endpoints")
        .paginate(PaginationConfig={"PageSize": 5})
        .build_full_result()
    )
    assert len(every["Endpoints"]) == 12
    assert {endpoint["EndpointStatus"] for endpoint in every["Endpoints"]} == {"Creating"}
    configs = sm.client.get_paginator("list_endpoint_configs").paginate().build_full_result()
    assert [config["EndpointConfigName"] for config in configs["EndpointConfigs"]] == ["cfg"]
    assert error(sm.client.list_models, NextToken="forged.token")[1].startswith("Invalid pagination token")


def test_tags(sm: Harness) -> None:
    create_model(sm)
    arn = f"{PREFIX}:model/m"
    sm.client.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ml"}, {"Key": "env", "Value": "dev"}])
    assert sm.client.list_tags(ResourceArn=arn)["Tags"] == [
        {"Key": "team", "Value": "ml"},
        {"Key": "env", "Value": "dev"},
    ]
    sm.client.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sm.client.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"}]
    assert error(sm.client.list_tags, ResourceArn=f"{PREFIX}:endpoint/none") == (
        "ValidationException",
        f'Could not find endpoint "{PREFIX}:endpoint/none".',
    )


# Raw AWS JSON 1.1, as non-botocore clients may send it ----------------------------------------------
def raw(sm: Harness, target: str | None, body: bytes) -> tuple[int, dict[str, str], Any]:
    host, port = sm.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        payload = json.loads(response.read())
        return response.status, {key.lower(): value for key, value in response.getheaders()}, payload
    finally:
        connection.close()


def test_raw_json_protocol(sm: Harness) -> None:
    status, headers, payload = raw(sm, "SageMaker.ListModels", b"")
    assert (status, payload) == (200, {"Models": []})
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert headers["x-amzn-requestid"]

    status, headers, payload = raw(sm, "SageMaker.ListModels", b"[]")
    assert (status, payload["__type"]) == (400, "SerializationException")
    assert headers["x-amzn-requestid"]
    assert raw(sm, "SageMaker.ListModels", b"{not json")[2]["__type"] == "SerializationException"
    assert raw(sm, "SageMaker.ListModels", b'{"MaxResults": NaN}')[2]["__type"] == "SerializationException"

    status, _, payload = raw(sm, "SageMaker.CreateTrainingJob", b"{}")
    assert (status, payload) == (
        400,
        {"__type": "UnknownOperationException", "Message": "Unknown operation SageMaker.CreateTrainingJob"},
    )
    assert raw(sm, None, b"{}")[2]["__type"] == "UnknownOperationException"
    assert raw(sm, "Other.ListModels", b"{}")[2]["__type"] == "UnknownOperationException"

    status, _, payload = raw(sm, "SageMaker.CreateModel", b'{"PrimaryContainer": {"Image": 7}}')
    assert (status, payload) == (
        400,
        {
            "__type": "ValidationException",
            "Message": "2 validation errors detected: Value null at 'modelName' failed to satisfy "
            "constraint: Member must not be null; Value '7' at 'primaryContainer.image' failed to satisfy "
            "constraint: Member must be a string",
        },
    )


# Members moorage does not honour: refused by name, never accepted and ignored ------------------------
def test_members_moorage_does_not_honour_are_refused_by_name(sm: Harness) -> None:
    container = {"Image": "pytorch-inference:2.1", "ModelDataUrl": "s3://bucket/prefix/"}
    code, message = error(
        sm.client.create_model,
        ModelName="mme",
        PrimaryContainer=container | {"InferenceSpecificationName": "spec"},
    )
    assert code == "ValidationException"
    assert message.startswith("InferenceSpecificationName (model packages) is not supported by moorage")
    assert sm.store.get_model("mme") is None
    create_model(sm)
    variant = {"VariantName": "a", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    for member, value in [
        (
            "ExplainerConfig",
            {"ClarifyExplainerConfig": {"ShapConfig": {"ShapBaselineConfig": {"ShapBaseline": "1,2"}}}},
        ),
    ]:
        code, message = error(
            sm.client.create_endpoint_config,
            EndpointConfigName="c",
            ProductionVariants=[variant],
            **{member: value},
        )
        assert (code, message.split(" ", 1)[0]) == ("ValidationException", member)
    assert sm.store.get_endpoint_config("c") is None


def test_members_with_no_meaning_here_are_recorded_and_echoed(sm: Harness) -> None:
    create_model(sm)
    variant = {
        "VariantName": "a",
        "ModelName": "m",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    sm.client.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[variant], KmsKeyId="key")
    described = sm.client.describe_endpoint_config(EndpointConfigName="c")
    assert described["KmsKeyId"] == "key"
    assert described["ProductionVariants"][0]["VolumeSizeInGB"] == 30
