"""Application Auto Scaling with an unchanged boto3 `application-autoscaling` client: the API, its
durability, and target tracking moving a variant's instance count under load (local backend; the
count moves through the same path as UpdateEndpointWeightsAndCapacities, covered on every backend
in tests/contract/).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.hosting import FAST, answer, delete, deploy, pack_fault_handler, unique, wait_for_counts
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}


@pytest.fixture(scope="module")
def fault_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_fault_handler(tmp_path_factory.mktemp("autoscaling-artifacts"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("autoscaling") / "data", env={"MOORAGE_AUTOSCALE_PERIOD": "2"}
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def resource(endpoint: str, variant: str = "AllTraffic") -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def register(aas: Any, endpoint: str, low: int, high: int) -> str:
    arn: str = aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource(endpoint),
        ScalableDimension=DIMENSION,
        MinCapacity=low,
        MaxCapacity=high,
    )["ScalableTargetARN"]
    return arn


def put_policy(aas: Any, endpoint: str, name: str = "track", **config: Any) -> dict[str, Any]:
    result: dict[str, Any] = aas.put_scaling_policy(
        PolicyName=name,
        ServiceNamespace="sagemaker",
        ResourceId=resource(endpoint),
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"PredefinedMetricSpecification": METRIC, **config},
    )
    return result


def error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_target_tracking_scales_out_under_load_and_back_in(server: RunningServer, fault_tar: Path) -> None:
    scale_out_and_back_in(server, fault_tar)


def scale_out_and_back_in(server: RunningServer, fault_tar: Path) -> None:
    """Load → 2 instances (seen Updating on the way) → no load → 1; run on both backends."""
    sm, aas = server.client("sagemaker"), server.client("application-autoscaling")
    # model_fn takes 0.5 s, so the scale-out's Updating lasts ten polls and cannot fall between two.
    name = deploy(sm, fault_tar, env={"FAULT_LOAD": "sleep", "FAULT_LOAD_SECONDS": "0.5"})
    register(aas, name, 1, 2)
    # 30 invocations per instance per minute: a client in a loop is far above it.
    put_policy(aas, name, TargetValue=30.0, ScaleOutCooldown=0, ScaleInCooldown=2)
    stop = threading.Event()
    failures: list[str] = []

    def load() -> None:
        runtime = server.client("sagemaker-runtime")
        while not stop.is_set():
            try:
                answer(runtime, name, action="sleep", seconds=0.01)
            except ClientError as exc:  # every failure is recorded and fails the test
                failures.append(repr(exc))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        scaled_out = wait_for_counts(sm, name, current=2, desired=2, timeout=60)
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert ("Updating", 1, 2) in scaled_out, scaled_out
    # No traffic: back to MinCapacity once the cooldown has passed.
    scaled_in = wait_for_counts(sm, name, current=1, desired=1, timeout=60)
    assert scaled_in[0][1:] == (2, 2), scaled_in  # it started from the two instances of the scale-out
    assert scaled_in[-1] == ("InService", 1, 1)
    assert answer(server.client("sagemaker-runtime"), name, action="echo")["version"] == "1"
    delete(sm, name)


def test_a_count_outside_the_range_is_brought_inside(server: RunningServer, fault_tar: Path) -> None:
    sm, aas = server.client("sagemaker"), server.client("application-autoscaling")
    name = deploy(sm, fault_tar)
    register(aas, name, 2, 3)  # no policy needed: MinCapacity alone raises the count
    wait_for_counts(sm, name, current=2, desired=2, timeout=60)
    delete(sm, name)


def test_the_api_answers_as_application_auto_scaling_does(server: RunningServer, fault_tar: Path) -> None:
    sm, aas = server.client("sagemaker"), server.client("application-autoscaling")
    name = deploy(sm, fault_tar, wait=False)
    arn = register(aas, name, 1, 3)
    assert arn.startswith("arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/")
    assert register(aas, name, 1, 4) == arn, "registering again updates the same target"
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource(name)])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"], target["ScalableTargetARN"]) == (1, 4, arn)
    assert target["SuspendedState"] == {
        "DynamicScalingInSuspended": False,
        "DynamicScalingOutSuspended": False,
        "ScheduledScalingSuspended": False,
    }
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in target["RoleARN"]

    policy = put_policy(aas, name, TargetValue=70.0, ScaleInCooldown=600, ScaleOutCooldown=60)
    assert ":scalingPolicy:" in policy["PolicyARN"] and policy["PolicyARN"].endswith("policyName/track")
    again = put_policy(aas, name, TargetValue=50.0)
    assert again["PolicyARN"] == policy["PolicyARN"]
    (described,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource(name))[
        "ScalingPolicies"
    ]
    assert described["PolicyType"] == "TargetTrackingScaling"
    assert described["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 50.0,
        "PredefinedMetricSpecification": METRIC,
    }

    with pytest.raises(ClientError) as unsupported:
        aas.register_scalable_target(
            ServiceNamespace="ecs", ResourceId="service/c/s", ScalableDimension="ecs:service:DesiredCount"
        )
    assert error(unsupported) == (
        "ValidationException",
        "Unsupported service namespace, resource type or scalable dimension",
    )
    with pytest.raises(ClientError) as step:
        aas.put_scaling_policy(
            PolicyName="step",
            ServiceNamespace="sagemaker",
            ResourceId=resource(name),
            ScalableDimension=DIMENSION,
            PolicyType="StepScaling",
        )
    assert error(step)[0] == "ValidationException"
    with pytest.raises(ClientError) as no_target:
        put_policy(aas, unique("nothing"), TargetValue=10.0)
    assert error(no_target)[0] == "ObjectNotFoundException"
    with pytest.raises(ClientError) as no_policy:
        aas.delete_scaling_policy(
            PolicyName="absent",
            ServiceNamespace="sagemaker",
            ResourceId=resource(name),
            ScalableDimension=DIMENSION,
        )
    assert error(no_policy) == (
        "ObjectNotFoundException",
        f"No scaling policy found for service namespace: sagemaker, resource ID: {resource(name)}, "
        f"scalable dimension: {DIMENSION}, policy name: absent",
    )

    aas.delete_scaling_policy(
        PolicyName="track",
        ServiceNamespace="sagemaker",
        ResourceId=resource(name),
        ScalableDimension=DIMENSION,
    )
    assert (
        aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource(name))[
            "ScalingPolicies"
        ]
        == []
    )
    aas.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource(name), ScalableDimension=DIMENSION
    )
    with pytest.raises(ClientError) as gone:
        aas.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource(name), ScalableDimension=DIMENSION
        )
    assert error(gone) == (
        "ObjectNotFoundException",
        f"No scalable target found for service namespace: sagemaker, resource ID: {resource(name)}, "
        f"scalable dimension: {DIMENSION}",
    )
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig=FAST
    )  # Creating refuses deletes
    delete(sm, name)


def test_a_variant_that_does_not_exist_cannot_be_registered(server: RunningServer) -> None:
    aas = server.client("application-autoscaling")
    with pytest.raises(ClientError) as caught:
        register(aas, unique("missing"), 1, 2)
    assert error(caught)[0] == "ValidationException"
    assert "does not exist" in error(caught)[1]


def test_targets_and_policies_survive_a_restart(tmp_path: Path, fault_tar: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    name = deploy(first.client("sagemaker"), fault_tar, wait=False)
    register(first.client("application-autoscaling"), name, 1, 5)
    put_policy(first.client("application-autoscaling"), name, TargetValue=12.5)
    first.stop()
    second = start_server(data, tag=first.tag)
    try:
        aas = second.client("application-autoscaling")
        (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        assert (target["ResourceId"], target["MaxCapacity"]) == (resource(name), 5)
        (policy,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 12.5
    finally:
        second.stop()
    assert not wait_until_gone(first.tag)
