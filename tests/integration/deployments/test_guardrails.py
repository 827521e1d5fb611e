"""Guarded updates through unchanged boto3: UpdateEndpoint with a DeploymentConfig shifts traffic to
the new fleet in steps (CANARY, LINEAR), DescribeEndpoint shows where it stands (ActivatingTraffic,
Baking, PendingDeploymentSummary) and afterwards LastDeploymentConfig; a CloudWatch alarm on the
endpoint's Invocation5XXErrors, fed by the runtime's own metrics, rolls traffic back with every request
answered by one fleet or the other; a server killed mid-update comes back on the old configuration.

One `moorage serve` for the module, sampling metrics every 0.1 s with 1 s alarm periods allowed; the
last test kills it with SIGKILL and starts it again on the same data dir.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from support.hosting import unique
from support.servers import RunningServer, start_server, wait_until_gone

from .conftest import config, endpoint_on, guard_model, invoke, variant

pytestmark = pytest.mark.slow

FAST_ALARMS = {"MOORAGE_CLOUDWATCH_SAMPLE": "0.1", "MOORAGE_CLOUDWATCH_MIN_PERIOD": "1"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningServer]]:
    """The module's server, then the one that replaced it after a kill (last in the list)."""
    running = [start_server(tmp_path_factory.mktemp("guardrails") / "data", env=FAST_ALARMS)]
    try:
        yield running
    finally:
        for each in running:
            each.stop()
    for each in running:
        assert not wait_until_gone(each.tag), each.log()[-3000:]


@pytest.fixture
def server(servers: list[RunningServer]) -> RunningServer:
    return servers[-1]


def blue_green(kind: str, wait: int, size: dict[str, Any] | None = None, **policy: Any) -> dict[str, Any]:
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": wait}
    if size is not None:
        routing["CanarySize" if kind == "CANARY" else "LinearStepSize"] = size
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, **policy}}


def percent(value: int) -> dict[str, Any]:
    return {"Type": "CAPACITY_PERCENT", "Value": value}


def settled(sm: Any, name: str, timeout: float = 120.0) -> dict[str, Any]:
    """DescribeEndpoint once the endpoint is InService again."""
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": int(timeout / 0.25)}
    )
    described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
    return described


def pending_statuses(described: dict[str, Any]) -> list[str]:
    summary = described.get("PendingDeploymentSummary", {})
    return [s["Status"] for v in summary.get("ProductionVariants", []) for s in v.get("VariantStatus", [])]


def test_deployment_configs_are_checked_as_sagemaker_does(server: RunningServer, guard_tarball: Path) -> None:
    sm = server.client("sagemaker")
    model = guard_model(sm, guard_tarball, MODEL_VERSION="1")
    old_config = config(sm, [variant("AllTraffic", model)])
    name = endpoint_on(server, old_config)
    new_config = config(sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="2"))])
    cases = [
        (blue_green("CANARY", 1), "CanarySize is required when Type is CANARY"),
        (blue_green("ALL_AT_ONCE", 1, percent(10)), "LinearStepSize is only allowed when Type is LINEAR"),
        (blue_green("CANARY", 1, percent(60)), "CanarySize must be between 1% and 50%"),
        (blue_green("LINEAR", 1, percent(5)), "LinearStepSize must be between 10% and 50%"),
        (
            blue_green("LINEAR", 1, {"Type": "INSTANCE_COUNT", "Value": 2}),
            "LinearStepSize of 2 instances is larger than the new fleet (1 instances)",
        ),
        (
            {
                **blue_green("ALL_AT_ONCE", 0),
                "RollingUpdatePolicy": {"MaximumBatchSize": percent(10), "WaitIntervalInSeconds": 1},
            },
            "not both",
        ),
        ({"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}}, "needs a BlueGreenUpdatePolicy"),
        (blue_green("ALL_AT_ONCE", 4000), "Member must have value less than or equal to 3600"),
    ]
    for deployment, said in cases:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            sm.update_endpoint(EndpointName=name, EndpointConfigName=new_config, DeploymentConfig=deployment)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert said in refused.value.response["Error"]["Message"]
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        sm.create_endpoint(
            EndpointName=unique("guard"),
            EndpointConfigName=old_config,
            DeploymentConfig=blue_green("ALL_AT_ONCE", 0),
        )
    assert "give it to UpdateEndpoint" in refused.value.response["Error"]["Message"]

    # An alarm that does not exist: the update is accepted, then fails before any new instance starts.
    watched = {
        **blue_green("ALL_AT_ONCE", 0),
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "no-such"}]},
    }
    sm.update_endpoint(EndpointName=name, EndpointConfigName=new_config, DeploymentConfig=watched)
    described = settled(sm, name)
    assert described["EndpointConfigName"] == old_config
    assert "names alarms that do not exist: no-such" in described["FailureReason"]


def test_a_canary_update_shifts_bakes_and_completes(server: RunningServer, guard_tarball: Path) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = endpoint_on(
        server, config(sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="1"))])
    )
    new_config = config(sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="2"))])
    deployment = blue_green("CANARY", 1, percent(50), TerminationWaitInSeconds=0)
    sm.update_endpoint(EndpointName=name, EndpointConfigName=new_config, DeploymentConfig=deployment)

    seen: list[tuple[str, tuple[str, ...]]] = []
    versions: set[str] = set()
    while True:
        described = sm.describe_endpoint(EndpointName=name)
        state = (described["EndpointStatus"], tuple(pending_statuses(described)))
        if not seen or seen[-1] != state:
            seen.append(state)
        versions.add(invoke(runtime, name)[1]["version"])
        if described["EndpointStatus"] != "Updating":
            break
    assert ("Updating", ("Baking",)) in seen, seen
    assert seen[-1] == ("InService", ())
    assert versions <= {"1", "2"}
    assert described["EndpointConfigName"] == new_config
    assert described["LastDeploymentConfig"] == deployment
    assert "FailureReason" not in described
    assert {invoke(runtime, name)[1]["version"] for _ in range(10)} == {"2"}

    # RetainDeploymentConfig: the next update is guarded the same way, without repeating the config.
    back = config(sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="3"))])
    sm.update_endpoint(EndpointName=name, EndpointConfigName=back, RetainDeploymentConfig=True)
    assert pending_statuses(sm.describe_endpoint(EndpointName=name))[0] in {
        "Creating",
        "ActivatingTraffic",
        "Baking",
    }
    described = settled(sm, name)
    assert (described["EndpointConfigName"], described["LastDeploymentConfig"]) == (back, deployment)
    assert {invoke(runtime, name)[1]["version"] for _ in range(5)} == {"3"}


def test_a_linear_update_rolls_back_on_an_alarm_and_loses_nothing(
    server: RunningServer, guard_tarball: Path
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    cloudwatch = server.client("cloudwatch")
    old_config = config(sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="1"))])
    name = endpoint_on(server, old_config)
    broken = config(
        sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="2", GUARD_MODE="fail"))]
    )
    alarm = unique("errors")
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}],
        Statistic="Sum",
        Period=1,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    deployment = {
        **blue_green("LINEAR", 60, percent(50)),
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }

    outcomes: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        client = server.client("sagemaker-runtime")
        while not stop.is_set():
            try:
                outcomes.append("v" + invoke(client, name)[1]["version"])
            except botocore.exceptions.ClientError as exc:
                error = exc.response["Error"]
                broken_model = (
                    error["Code"] == "ModelError" and "this model version is broken" in error["Message"]
                )
                outcomes.append("v2-error" if broken_model else f"lost: {error}")

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=broken, DeploymentConfig=deployment)
        described = settled(sm, name)
    finally:
        stop.set()
        sender.join()
    assert described["EndpointConfigName"] == old_config
    assert described["FailureReason"].startswith(f"Alarm {alarm} went to ALARM during the deployment")
    assert described["ProductionVariants"][0]["CurrentWeight"] == 1.0
    assert "LastDeploymentConfig" not in described
    assert cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"] == "ALARM"
    # Every request was answered, by the old fleet or (an error of its model) by the new one.
    assert set(outcomes) <= {"v1", "v2-error"}, [o for o in outcomes if o.startswith("lost")][:3]
    assert "v2-error" in outcomes
    assert {invoke(runtime, name)[1]["version"] for _ in range(10)} == {"1"}


def test_a_server_killed_mid_update_comes_back_on_the_old_configuration(
    servers: list[RunningServer], guard_tarball: Path
) -> None:
    first = servers[-1]
    sm = first.client("sagemaker")
    old_config = config(sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="1"))])
    name = endpoint_on(first, old_config)
    new_config = config(sm, [variant("AllTraffic", guard_model(sm, guard_tarball, MODEL_VERSION="2"))])
    sm.update_endpoint(
        EndpointName=name,
        EndpointConfigName=new_config,
        DeploymentConfig=blue_green("CANARY", 3600, percent(50)),
    )
    while pending_statuses(described := sm.describe_endpoint(EndpointName=name)) != ["Baking"]:
        assert described["EndpointStatus"] == "Updating", described
        time.sleep(0.05)
    first.kill()
    assert not wait_until_gone(first.tag), "workers outlived their killed server"
    second = start_server(first.data_dir, env=FAST_ALARMS)
    servers.append(second)
    sm, runtime = second.client("sagemaker"), second.client("sagemaker-runtime")
    described = settled(sm, name)
    assert described["EndpointConfigName"] == old_config
    assert "stopped during this guarded deployment" in described["FailureReason"]
    assert "PendingDeploymentSummary" not in described
    assert {invoke(runtime, name)[1]["version"] for _ in range(5)} == {"1"}
