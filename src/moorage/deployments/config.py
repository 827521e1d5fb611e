"""DeploymentConfig, checked as SageMaker checks it, and the plan of traffic steps it stands for.

botocore's model already bounds the numbers (WaitIntervalInSeconds 0-3600, MaximumExecutionTimeout
600-28800, 1-10 alarms); this adds what the model cannot say: which members go together, and the
sizes SageMaker's guardrail documentation allows (a canary of at most 50 % of the new fleet, linear
steps of 10-50 %, rolling batches of 5-50 %). Pure logic, so the control plane refuses a bad config
at UpdateEndpoint and the rollout follows the same plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moorage.control.records import Deployment
from moorage.errors import ValidationException

__all__ = ["Plan", "check_deployment_config", "plan_for"]


@dataclass(frozen=True)
class Plan:
    """A guarded update: the new fleet's share of traffic after each step (the last is 1), how long
    each step bakes, how long the old fleet outlives the update, the deadline, the alarms watched."""

    kind: str  # ALL_AT_ONCE | CANARY | LINEAR | ROLLING
    shares: tuple[float, ...]
    wait_s: float
    termination_wait_s: float
    max_s: float | None
    alarms: tuple[str, ...]


def _instances(deployment: Deployment) -> int:
    return sum(spec.instance_count for spec in deployment.variants if not spec.shadow)


def _fraction(member: str, size: Mapping[str, Any], deployment: Deployment, low: int, high: int) -> float:
    """A CapacitySize as a share of the new fleet, within [low %, high %] of it."""
    value = int(size["Value"])
    total = _instances(deployment)
    if size["Type"] == "INSTANCE_COUNT":
        if value > total:
            raise ValidationException(
                f"{member} of {value} instances is larger than the new fleet ({total} instances)."
            )
        share = value / total
    else:
        share = value / 100
    if not low / 100 <= share <= high / 100:
        raise ValidationException(
            f"{member} must be between {low}% and {high}% of the new fleet's capacity "
            f"({total} instance{'s' if total != 1 else ''}); it is {share:.0%}."
        )
    return share


def _steps(step: float) -> tuple[float, ...]:
    count = math.ceil(round(1 / step, 9))
    return tuple(min(1.0, step * (index + 1)) for index in range(count))


def plan_for(config: Mapping[str, Any], deployment: Deployment) -> Plan:
    """The plan of a DeploymentConfig for rolling out `deployment`; ValidationException if it is wrong."""
    blue_green = config.get("BlueGreenUpdatePolicy")
    rolling = config.get("RollingUpdatePolicy")
    alarms = tuple(
        str(alarm.get("AlarmName", ""))
        for alarm in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])
    )
    if any(not name for name in alarms):
        raise ValidationException("Each alarm of AutoRollbackConfiguration.Alarms needs an AlarmName.")
    if blue_green is not None and rolling is not None:
        raise ValidationException(
            "DeploymentConfig may have a BlueGreenUpdatePolicy or a RollingUpdatePolicy, not both."
        )
    if rolling is not None:
        batch = _fraction(
            "RollingUpdatePolicy.MaximumBatchSize", rolling["MaximumBatchSize"], deployment, 5, 50
        )
        if "RollbackMaximumBatchSize" in rolling:
            _fraction(
                "RollingUpdatePolicy.RollbackMaximumBatchSize",
                rolling["RollbackMaximumBatchSize"],
                deployment,
                1,
                100,
            )
        timeout = rolling.get("MaximumExecutionTimeoutInSeconds")
        return Plan("ROLLING", _steps(batch), float(rolling["WaitIntervalInSeconds"]), 0.0, timeout, alarms)
    if blue_green is None:
        raise ValidationException(
            "DeploymentConfig needs a BlueGreenUpdatePolicy or a RollingUpdatePolicy "
            "(AutoRollbackConfiguration alone says how to roll back, not how to roll out)."
        )
    routing = blue_green["TrafficRoutingConfiguration"]
    kind = routing["Type"]
    sizes = {"CANARY": "CanarySize", "LINEAR": "LinearStepSize"}
    for other_kind, member in sizes.items():
        if member in routing and kind != other_kind:
            raise ValidationException(
                f"TrafficRoutingConfiguration.{member} is only allowed when Type is {other_kind}; "
                f"Type is {kind}."
            )
    if kind in sizes and sizes[kind] not in routing:
        raise ValidationException(
            f"TrafficRoutingConfiguration.{sizes[kind]} is required when Type is {kind}."
        )
    if kind == "CANARY":
        canary = _fraction("TrafficRoutingConfiguration.CanarySize", routing["CanarySize"], deployment, 1, 50)
        shares: tuple[float, ...] = (canary, 1.0)
    elif kind == "LINEAR":
        shares = _steps(
            _fraction(
                "TrafficRoutingConfiguration.LinearStepSize", routing["LinearStepSize"], deployment, 10, 50
            )
        )
    else:
        shares = (1.0,)
    timeout = blue_green.get("MaximumExecutionTimeoutInSeconds")
    return Plan(
        kind,
        shares,
        float(routing["WaitIntervalInSeconds"]),
        float(blue_green.get("TerminationWaitInSeconds", 0)),
        float(timeout) if timeout is not None else None,
        alarms,
    )


def check_deployment_config(config: Mapping[str, Any], deployment: Deployment) -> None:
    """UpdateEndpoint's check: the config makes a plan for this deployment."""
    plan_for(config, deployment)
