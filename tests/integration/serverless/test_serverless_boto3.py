"""Serverless variants with unchanged boto3: zero instances while idle, a cold start on the next call,
MaxConcurrency enforced with ThrottlingException, and SageMaker's exclusions refused (spec §c.5).

The server's idle time is half a second (MOORAGE_SERVERLESS_IDLE_SECONDS), so a variant goes to zero
between two steps of a test; nothing here asserts on time.
"""

from __future__ import annotations

import importlib
import json
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.cli import Cli, isolated_environment
from support.gates import Gate
from support.hosting import (
    FAST,
    IMAGE,
    current_instances,
    delete,
    deploy,
    pack_handler,
    unique,
    wait_for_counts,
    wait_for_instances,
)
from support.servers import RunningServer, http_get, start_server, wait_until_gone

GATED_HANDLER = textwrap.dedent("""
    import json
    import os
    import urllib.request


    def model_fn(model_dir):
        return {"pid": os.getpid()}


    def input_fn(body, content_type):
        return json.loads(body)


    def predict_fn(request, model):
        if request.get("gate"):  # wait until the test opens this gate
            urllib.request.urlopen(request["gate"], timeout=600).read()
        if request.get("alloc"):
            return {"allocated": len(bytearray(int(request["alloc"])))}
        return {"pid": os.getpid(), "echo": request}


    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
""")


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    with Gate() as opened:
        yield opened


@pytest.fixture(scope="module")
def gated_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_handler(tmp_path_factory.mktemp("serverless-model"), GATED_HANDLER, archive="gated.tar.gz")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("serverless") / "data",
        env={"MOORAGE_SERVERLESS_IDLE_SECONDS": "0.5", "MOORAGE_AUTOSCALE_PERIOD": "0.5"},
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


SERVERLESS = {"MemorySizeInMB": 1024, "MaxConcurrency": 1}


def create_model(sm: Any, tarball: Path, **model: Any) -> str:
    name = unique("model")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/moorage-tests",
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"file://{tarball}", **model},
    )
    return name


def deploy_serverless(sm: Any, tarball: Path, config: dict[str, Any]) -> str:
    return deploy(sm, tarball, name=unique("sls"), serverless_config=config)


def invoke(runtime: Any, name: str, **request: Any) -> dict[str, Any]:
    response = runtime.invoke_endpoint(
        EndpointName=name, Body=json.dumps(request), ContentType="application/json", Accept="application/json"
    )
    answer: dict[str, Any] = json.loads(response["Body"].read())
    return answer


def test_a_serverless_endpoint_goes_to_zero_and_answers_the_next_call(
    server: RunningServer, gated_tar: Path, tmp_path: Path
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy_serverless(sm, gated_tar, SERVERLESS)
    described = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert described["CurrentServerlessConfig"] == SERVERLESS
    assert described["DesiredServerlessConfig"] == SERVERLESS
    assert "DesiredInstanceCount" not in described
    config = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    )
    assert config["ProductionVariants"][0]["ServerlessConfig"] == SERVERLESS

    wait_for_instances(sm, name, 0)  # idle: no instance runs
    cli = Cli(tmp_path, isolated_environment(tmp_path, {"MOORAGE_URL": server.url}))
    listed = cli.run("endpoints", "--output", "json")
    assert listed.code == 0, listed
    (mine,) = [e for e in json.loads(listed.stdout)["Endpoints"] if e["EndpointName"] == name]
    assert mine["ProductionVariants"][0]["CurrentInstanceCount"] == 0

    first = invoke(runtime, name, hello="cold")  # waits for the instance it starts
    assert first["echo"] == {"hello": "cold"}
    wait_for_instances(sm, name, 1)  # the instance it started, until the idle time passes
    wait_for_instances(sm, name, 0)
    second = invoke(runtime, name, hello="again")
    assert second["echo"] == {"hello": "again"}
    assert second["pid"] != first["pid"]  # a new instance: the first one was stopped

    status, body = http_get(server.url + "/metrics")
    assert status == 200
    labels = f'EndpointName="{name}",VariantName="AllTraffic"'
    assert f"sagemaker_ColdStarts_total{{{labels}}} 2" in body.decode()
    assert f"sagemaker_ModelSetupTime_microseconds_count{{{labels}}} 2" in body.decode()
    assert f"{name}/AllTraffic: cold start done; ModelSetupTime" in server.log()
    delete(sm, name)


def test_more_than_max_concurrency_is_throttled(server: RunningServer, gated_tar: Path, gate: Gate) -> None:
    sm = server.client("sagemaker")
    name = deploy_serverless(sm, gated_tar, SERVERLESS)
    answers: list[dict[str, Any]] = []
    holder = threading.Thread(
        target=lambda: answers.append(invoke(server.client("sagemaker-runtime"), name, gate=gate.url(name)))
    )
    holder.start()
    try:
        assert gate.arrived[name].wait(60)  # the one allowed invocation is running
        with pytest.raises(ClientError) as caught:
            invoke(server.client("sagemaker-runtime"), name, hello="one too many")
        assert caught.value.response["Error"]["Code"] == "ThrottlingException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "MaxConcurrency of 1" in caught.value.response["Error"]["Message"]
    finally:
        gate.open(name)
        holder.join(60)
    assert answers and answers[0]["echo"] == {"gate": gate.url(name)}
    delete(sm, name)


def test_provisioned_concurrency_stays_warm(server: RunningServer, gated_tar: Path) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy_serverless(sm, gated_tar, {**SERVERLESS, "MaxConcurrency": 2, "ProvisionedConcurrency": 1})
    first = invoke(runtime, name, hello=1)
    # The idle time passes between invocations here more than once; the warm instance stays.
    assert current_instances(sm, name) == 1
    assert invoke(runtime, name, hello=2)["pid"] == first["pid"]
    _, body = http_get(server.url + "/metrics")
    assert f'sagemaker_ColdStarts_total{{EndpointName="{name}"' not in body.decode()
    with pytest.raises(ClientError) as caught:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[
                {"VariantName": "AllTraffic", "ServerlessUpdateConfig": {"MaxConcurrency": 3}}
            ],
        )
    assert "ServerlessUpdateConfig is not supported by moorage" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
    assert "is serverless: it has no instance count to set" in caught.value.response["Error"]["Message"]
    delete(sm, name)


def test_memory_size_is_the_workers_limit(server: RunningServer, gated_tar: Path) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy_serverless(sm, gated_tar, SERVERLESS)
    assert invoke(runtime, name, alloc=64 * 1024 * 1024)["allocated"] == 64 * 1024 * 1024
    with pytest.raises(ClientError) as caught:
        invoke(runtime, name, alloc=2 * 1024 * 1024 * 1024)  # past MemorySizeInMB=1024
    assert caught.value.response["Error"]["Code"] == "ModelError"  # MemoryError in predict_fn
    assert invoke(runtime, name, hello="still serving")["echo"] == {"hello": "still serving"}
    delete(sm, name)


EXCLUDED: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("instance type", {"InstanceType": "ml.m5.large"}, {}, "cannot also have InstanceType"),
    ("instance count", {"InitialInstanceCount": 1}, {}, "cannot also have InitialInstanceCount"),
    (
        "accelerator",
        {"AcceleratorType": "ml.eia2.medium"},
        {},
        "AcceleratorType (Elastic Inference) is not supported",
    ),
    ("memory step", {"ServerlessConfig": {"MemorySizeInMB": 1536, "MaxConcurrency": 1}}, {}, "1 GB steps"),
    (
        "provisioned above max",
        {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1, "ProvisionedConcurrency": 2}},
        {},
        "must be less than or equal to its MaxConcurrency (1)",
    ),
    (
        "data capture",
        {},
        {
            "DataCaptureConfig": {
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": "s3://bucket/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}],
            }
        },
        "DataCaptureConfig is not supported with a serverless variant",
    ),
    (
        "async",
        {},
        {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://bucket/out"}}},
        "AsyncInferenceConfig is not supported with a serverless variant",
    ),
]


@pytest.mark.parametrize(
    ("variant", "config", "message"), [case[1:] for case in EXCLUDED], ids=[c[0] for c in EXCLUDED]
)
def test_excluded_combinations_are_refused(
    server: RunningServer, gated_tar: Path, variant: dict[str, Any], config: dict[str, Any], message: str
) -> None:
    sm = server.client("sagemaker")
    model = create_model(sm, gated_tar)
    production = {"VariantName": "AllTraffic", "ModelName": model, "ServerlessConfig": SERVERLESS, **variant}
    with pytest.raises(ClientError) as caught:
        sm.create_endpoint_config(
            EndpointConfigName=unique("config"), ProductionVariants=[production], **config
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert message in caught.value.response["Error"]["Message"]


def test_a_serverless_variant_must_be_alone_and_single_model(server: RunningServer, gated_tar: Path) -> None:
    sm = server.client("sagemaker")
    model = create_model(sm, gated_tar)
    serverless = {"VariantName": "A", "ModelName": model, "ServerlessConfig": SERVERLESS}
    other = {"VariantName": "B", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    with pytest.raises(ClientError) as caught:
        sm.create_endpoint_config(EndpointConfigName=unique("config"), ProductionVariants=[serverless, other])
    assert (
        "must have exactly one production variant; this one has 2"
        in caught.value.response["Error"]["Message"]
    )
    multi = create_model(sm, gated_tar, Mode="MultiModel", ModelDataUrl=f"file://{gated_tar.parent}/")
    with pytest.raises(ClientError) as caught:
        sm.create_endpoint_config(
            EndpointConfigName=unique("config"), ProductionVariants=[{**serverless, "ModelName": multi}]
        )
    assert (
        "serverless endpoints do not support multi-model endpoints"
        in caught.value.response["Error"]["Message"]
    )


BACKLOG_TRACKING = {
    "TargetValue": 5.0,
    "CustomizedMetricSpecification": {
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Average",
    },
    "ScaleInCooldown": 0,
    "ScaleOutCooldown": 0,
}
FROM_ZERO = {
    "AdjustmentType": "ChangeInCapacity",
    "MetricAggregationType": "Average",
    "Cooldown": 0,
    "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
}


def test_an_async_endpoint_scales_to_zero_and_back_with_a_request_waiting(
    server: RunningServer, gated_tar: Path
) -> None:
    """SageMaker's recipe (spec §c.3): MinCapacity 0, target tracking on ApproximateBacklogSizePerInstance
    and a step policy for HasBacklogWithoutCapacity; the queue keeps the request while none runs."""
    sm, aas, s3 = server.client("sagemaker"), server.client("application-autoscaling"), server.client("s3")
    bucket = unique("async-zero")
    s3.create_bucket(Bucket=bucket)
    name = deploy(sm, gated_tar, async_config={"OutputConfig": {"S3OutputPath": f"s3://{bucket}/out"}})
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{name}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    aas.register_scalable_target(**target, MinCapacity=0, MaxCapacity=1)
    aas.put_scaling_policy(
        **target,
        PolicyName="backlog",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            **BACKLOG_TRACKING,
            "CustomizedMetricSpecification": {
                **BACKLOG_TRACKING["CustomizedMetricSpecification"],  # type: ignore[dict-item]
                "Dimensions": [{"Name": "EndpointName", "Value": name}],
            },
        },
    )
    step = aas.put_scaling_policy(
        **target, PolicyName="from-zero", PolicyType="StepScaling", StepScalingPolicyConfiguration=FROM_ZERO
    )
    described = aas.describe_scaling_policies(ServiceNamespace="sagemaker", PolicyNames=["from-zero"])
    assert described["ScalingPolicies"][0]["StepScalingPolicyConfiguration"] == FROM_ZERO
    assert described["ScalingPolicies"][0]["PolicyARN"] == step["PolicyARN"]
    wait_for_counts(sm, name, current=0, desired=0)  # the queue is empty: no instance

    # Scale-out suspended while the test looks: the request waits in the queue with no capacity.
    aas.register_scalable_target(**target, SuspendedState={"DynamicScalingOutSuspended": True})
    s3.put_object(Bucket=bucket, Key="in/request.json", Body=json.dumps({"hello": "from zero"}).encode())
    accepted = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=name, InputLocation=f"s3://{bucket}/in/request.json", ContentType="application/json"
    )
    _, body = http_get(server.url + "/metrics")
    assert f'sagemaker_HasBacklogWithoutCapacity{{EndpointName="{name}"}} 1' in body.decode()
    assert f'sagemaker_ApproximateBacklogSize{{EndpointName="{name}"}} 1' in body.decode()
    assert current_instances(sm, name) == 0

    aas.register_scalable_target(**target, SuspendedState={"DynamicScalingOutSuspended": False})
    key = accepted["OutputLocation"].removeprefix(f"s3://{bucket}/")
    s3.get_waiter("object_exists").wait(Bucket=bucket, Key=key, WaiterConfig=FAST)
    answer = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert answer["echo"] == {"hello": "from zero"}
    wait_for_counts(sm, name, current=0, desired=0)  # idle again: back to zero
    delete(sm, name)


def test_min_capacity_zero_is_for_async_endpoints_only(server: RunningServer, gated_tar: Path) -> None:
    sm, aas = server.client("sagemaker"), server.client("application-autoscaling")
    name = deploy(sm, gated_tar)
    with pytest.raises(ClientError) as caught:
        aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=f"endpoint/{name}/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=0,
            MaxCapacity=1,
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "0 only for an asynchronous inference endpoint" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 0}],
        )
    assert "0 only for an asynchronous inference endpoint" in caught.value.response["Error"]["Message"]
    delete(sm, name)


def test_the_sagemaker_sdk_deploys_with_serverless_inference_config(
    server: RunningServer, gated_tar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unchanged SageMaker Python SDK: Model.deploy(serverless_inference_config=...), then predict."""
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import boto3

    # The SDK has no type hints: its names are looked up as a script would use them.
    sagemaker: Any = importlib.import_module("sagemaker")
    model_class = importlib.import_module("sagemaker.model").Model
    predictor_class = importlib.import_module("sagemaker.predictor").Predictor
    json_in = importlib.import_module("sagemaker.serializers").JSONSerializer
    json_out = importlib.import_module("sagemaker.deserializers").JSONDeserializer
    serverless_config = importlib.import_module("sagemaker.serverless").ServerlessInferenceConfig

    bucket = unique("sdk-serverless")
    s3 = server.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model/model.tar.gz", Body=gated_tar.read_bytes())
    session = sagemaker.Session(
        boto_session=boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ),
        sagemaker_client=server.client("sagemaker"),
        sagemaker_runtime_client=server.client("sagemaker-runtime"),
        default_bucket=bucket,
    )
    name = unique("sdk-sls")
    model = model_class(
        image_uri=IMAGE,
        model_data=f"s3://{bucket}/model/model.tar.gz",
        role="arn:aws:iam::000000000000:role/moorage-tests",
        sagemaker_session=session,
    )
    model.deploy(
        endpoint_name=name,
        serverless_inference_config=serverless_config(memory_size_in_mb=2048, max_concurrency=3),
        wait=False,  # the SDK's own wait polls every 30 s; boto3's waiter is quicker
    )
    sm = server.client("sagemaker")
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 3}
    predictor = predictor_class(name, session, serializer=json_in(), deserializer=json_out())
    assert predictor.predict({"hello": "sdk"})["echo"] == {"hello": "sdk"}
    predictor.delete_endpoint()
