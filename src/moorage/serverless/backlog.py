"""Scaling an asynchronous endpoint's variant to zero and back, as SageMaker documents it (spec §c.3).

SageMaker's recipe for async scale to zero is two Application Auto Scaling policies on a target with
MinCapacity 0:

- target tracking on the customized metric ApproximateBacklogSizePerInstance (namespace AWS/SageMaker):
  the count that brings queued-or-running requests per instance back to TargetValue, down to 0 when
  the queue is empty. With no instance the per-instance value does not exist, so this policy never
  leaves zero;
- a StepScaling policy that a CloudWatch alarm on HasBacklogWithoutCapacity (≥ 1) triggers: it adds
  capacity when requests wait and no instance runs. moorage has no CloudWatch alarms, so it raises that
  one itself: a StepScaling policy on a SageMaker variant runs whenever HasBacklogWithoutCapacity is 1
  (docs/async.md).

Pure decisions here; control/autoscaler.py reads the queue and moves the count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from moorage.control.records import JsonObject, ScalingPolicy
from moorage.errors import ValidationException

__all__ = [
    "BACKLOG_METRIC",
    "backlog_desired",
    "check_step_scaling",
    "is_backlog_policy",
    "step_capacity",
    "tracks_backlog",
]

BACKLOG_METRIC = "ApproximateBacklogSizePerInstance"
_ADJUSTMENTS = ("ChangeInCapacity", "ExactCapacity", "PercentChangeInCapacity")


def tracks_backlog(config: JsonObject) -> bool:
    """Whether a TargetTrackingScalingPolicyConfiguration follows ApproximateBacklogSizePerInstance."""
    custom = config.get("CustomizedMetricSpecification") or {}
    return bool(
        custom.get("MetricName") == BACKLOG_METRIC
        and custom.get("Namespace", "AWS/SageMaker") == "AWS/SageMaker"
    )


def is_backlog_policy(policy: ScalingPolicy) -> bool:
    """A policy of the async recipe: step scaling, or target tracking on the backlog."""
    return policy.step_scaling is not None or tracks_backlog(policy.target_tracking)


def check_step_scaling(config: JsonObject | None) -> JsonObject:
    """A StepScalingPolicyConfiguration moorage can run, or SageMaker-style ValidationException."""
    if config is None:
        raise ValidationException("StepScalingPolicyConfiguration is required for a StepScaling policy.")
    adjustment = config.get("AdjustmentType")
    if adjustment not in _ADJUSTMENTS:
        raise ValidationException(f"AdjustmentType must be one of {', '.join(_ADJUSTMENTS)}.")
    if not config.get("StepAdjustments"):
        raise ValidationException("StepAdjustments must contain at least one step adjustment.")
    return config


def step_capacity(config: JsonObject, current: int, min_capacity: int, max_capacity: int) -> int:
    """The count a step policy asks for when its alarm fires (HasBacklogWithoutCapacity = 1 against the
    documented threshold 1: the step whose interval holds 0, else the first)."""
    steps = config["StepAdjustments"]

    def holds_zero(step: JsonObject) -> bool:
        low = step.get("MetricIntervalLowerBound", -math.inf)
        high = step.get("MetricIntervalUpperBound", math.inf)
        return bool(low <= 0 < high or low == high == 0)

    step = next((s for s in steps if holds_zero(s)), steps[0])
    change = int(step["ScalingAdjustment"])
    kind = config["AdjustmentType"]
    if kind == "ExactCapacity":
        wanted = change
    elif kind == "PercentChangeInCapacity":
        delta = math.ceil(current * change / 100) if change > 0 else math.floor(current * change / 100)
        magnitude = int(config.get("MinAdjustmentMagnitude", 1))
        wanted = current + (max(delta, magnitude) if change > 0 else delta)
    else:
        wanted = current + change
    return min(max_capacity, max(min_capacity, wanted))


def backlog_desired(
    *,
    current: int,
    backlog_size: int,
    policies: Sequence[ScalingPolicy],
    min_capacity: int,
    max_capacity: int,
    track: Callable[[float], int],
    out_suspended: bool,
) -> int:
    """The count the async recipe asks for now. `track(backlog_size)`: what target tracking on the
    backlog decides (control/autoscaler.py's `desired_capacity`, with its cooldowns), used only while
    instances run."""
    if current == 0:
        steps = [policy.step_scaling for policy in policies if policy.step_scaling is not None]
        if backlog_size and steps and not out_suspended:  # HasBacklogWithoutCapacity = 1: the alarm fires
            return max(step_capacity(step, current, min_capacity, max_capacity) for step in steps)
        return min(max_capacity, max(min_capacity, current))
    return track(float(backlog_size))
