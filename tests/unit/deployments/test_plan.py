"""A DeploymentConfig's plan: the new fleet's share of traffic after each step, and the shadow's share."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.control.records import ContainerSpec, Deployment, VariantSpec
from moorage.deployments.config import plan_for
from moorage.deployments.fleet import shadow_share
from moorage.errors import ValidationException

CONTAINER = ContainerSpec(image=None, model_data_url="file:///m.tar.gz", model_data_source=None)


def deployment(*variants: tuple[str, int, float, bool]) -> Deployment:
    return Deployment(
        config_name="c",
        variants=tuple(
            VariantSpec(name, "m", CONTAINER, "ml.m5.large", count, weight, shadow=shadow)
            for name, count, weight, shadow in variants
        ),
    )


FOUR = deployment(("A", 3, 1.0, False), ("B", 1, 1.0, False), ("S", 5, 1.0, True))


def routing(kind: str, **members: Any) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": kind, "WaitIntervalInSeconds": 7, **members}
        }
    }


@pytest.mark.parametrize(
    ("config", "shares"),
    [
        (routing("ALL_AT_ONCE"), (1.0,)),
        (routing("CANARY", CanarySize={"Type": "INSTANCE_COUNT", "Value": 1}), (0.25, 1.0)),
        (routing("CANARY", CanarySize={"Type": "CAPACITY_PERCENT", "Value": 10}), (0.1, 1.0)),
        (routing("LINEAR", LinearStepSize={"Type": "CAPACITY_PERCENT", "Value": 30}), (0.3, 0.6, 0.9, 1.0)),
        (routing("LINEAR", LinearStepSize={"Type": "INSTANCE_COUNT", "Value": 2}), (0.5, 1.0)),
        (
            {
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                    "WaitIntervalInSeconds": 7,
                }
            },
            (0.25, 0.5, 0.75, 1.0),
        ),
    ],
)
def test_each_step_gives_the_new_fleet_its_share(config: dict[str, Any], shares: tuple[float, ...]) -> None:
    plan = plan_for(config, FOUR)  # the shadow's instances do not count toward the fleet's capacity
    assert plan.shares == pytest.approx(shares)
    assert plan.wait_s == 7


def test_the_plan_keeps_termination_wait_timeout_and_alarms() -> None:
    config = routing("ALL_AT_ONCE")
    config["BlueGreenUpdatePolicy"] |= {
        "TerminationWaitInSeconds": 30,
        "MaximumExecutionTimeoutInSeconds": 900,
    }
    config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": "a"}, {"AlarmName": "b"}]}
    plan = plan_for(config, FOUR)
    assert (plan.kind, plan.termination_wait_s, plan.max_s, plan.alarms) == (
        "ALL_AT_ONCE",
        30.0,
        900.0,
        ("a", "b"),
    )


@pytest.mark.parametrize(
    ("config", "said"),
    [
        (routing("CANARY", CanarySize={"Type": "INSTANCE_COUNT", "Value": 3}), "between 1% and 50%"),
        (
            routing("LINEAR", LinearStepSize={"Type": "INSTANCE_COUNT", "Value": 5}),
            "larger than the new fleet",
        ),
        (
            {
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 60},
                    "WaitIntervalInSeconds": 1,
                }
            },
            "between 5% and 50%",
        ),
        ({**routing("ALL_AT_ONCE"), "AutoRollbackConfiguration": {"Alarms": [{}]}}, "needs an AlarmName"),
    ],
)
def test_sizes_outside_sagemakers_limits_are_refused(config: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationException) as refused:
        plan_for(config, FOUR)
    assert said in refused.value.message


@pytest.mark.parametrize(
    ("production", "shadow", "share"),
    [(1.0, 1.0, 1.0), (2.0, 1.0, 0.5), (1.0, 3.0, 1.0), (0.0, 1.0, 1.0), (1.0, 0.0, 0.0)],
)
def test_the_shadow_samples_its_weight_relative_to_production(
    production: float, shadow: float, share: float
) -> None:
    assert shadow_share(deployment(("P", 1, production, False), ("S", 1, shadow, True))) == share
    assert shadow_share(deployment(("P", 1, production, False))) == 0.0
