"""The pure rules of serverless variants and of the async scale-to-zero recipe (moorage.serverless)."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.control.records import ScalingPolicy
from moorage.errors import ValidationException
from moorage.serverless.backlog import backlog_desired, check_step_scaling, step_capacity, tracks_backlog
from moorage.serverless.config import ServerlessConfig, check_serverless_variants
from moorage.serverless.describe import serverless_instance_count, serverless_summary

SERVERLESS = {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
VARIANT = {"VariantName": "AllTraffic", "ModelName": "m", "ServerlessConfig": SERVERLESS}
MODEL: dict[str, Any] = {"PrimaryContainer": {"ModelDataUrl": "s3://b/model.tar.gz"}}


def refusal(request: dict[str, Any], model: dict[str, Any] = MODEL) -> str:
    with pytest.raises(ValidationException) as caught:
        check_serverless_variants(request, {"m": model})
    return caught.value.message


def test_a_valid_serverless_config_passes_and_is_read() -> None:
    check_serverless_variants({"ProductionVariants": [VARIANT]}, {"m": MODEL})
    config = ServerlessConfig.of({**SERVERLESS, "ProvisionedConcurrency": 2})
    assert (config.memory_bytes, config.max_concurrency, config.provisioned_concurrency) == (2 << 30, 4, 2)


def test_instance_variants_are_not_checked() -> None:
    plain = {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    check_serverless_variants({"ProductionVariants": [plain, {**plain, "VariantName": "w"}]}, {})


@pytest.mark.parametrize(
    ("request_", "model", "message"),
    [
        ({"ProductionVariants": [VARIANT, {**VARIANT, "VariantName": "B"}]}, MODEL, "exactly one production"),
        (
            {"ProductionVariants": [{**VARIANT, "InstanceType": "ml.m5.large"}]},
            MODEL,
            "cannot also have Inst",
        ),
        (
            {"ProductionVariants": [{**VARIANT, "VolumeSizeInGB": 4}]},
            MODEL,
            "cannot also have VolumeSizeInGB",
        ),
        (
            {"ProductionVariants": [{**VARIANT, "ServerlessConfig": {**SERVERLESS, "MemorySizeInMB": 1025}}]},
            MODEL,
            "1 GB steps",
        ),
        (
            {
                "ProductionVariants": [
                    {**VARIANT, "ServerlessConfig": {**SERVERLESS, "ProvisionedConcurrency": 5}}
                ]
            },
            MODEL,
            "ProvisionedConcurrency (5) of production variant AllTraffic must be less than or equal",
        ),
        ({"ProductionVariants": [VARIANT], "DataCaptureConfig": {"x": 1}}, MODEL, "DataCaptureConfig is not"),
        ({"ProductionVariants": [VARIANT], "AsyncInferenceConfig": {"x": 1}}, MODEL, "AsyncInferenceConfig"),
        ({"ProductionVariants": [VARIANT], "ShadowProductionVariants": [VARIANT]}, MODEL, "shadow variants"),
        ({"ProductionVariants": [VARIANT], "EnableNetworkIsolation": True}, MODEL, "network isolation"),
        (
            {"ProductionVariants": [VARIANT]},
            {"PrimaryContainer": {"Mode": "MultiModel"}},
            "do not support multi-model endpoints",
        ),
        ({"ProductionVariants": [VARIANT]}, {**MODEL, "VpcConfig": {"Subnets": ["s"]}}, "has VpcConfig"),
    ],
)
def test_sagemaker_exclusions_are_refused(
    request_: dict[str, Any], model: dict[str, Any], message: str
) -> None:
    assert message in refusal(request_, model)


def test_describe_shows_serverless_configs_and_no_desired_count() -> None:
    summary: dict[str, Any] = {"VariantName": "v", "CurrentInstanceCount": 0, "DesiredInstanceCount": 0}
    serverless_summary(summary, SERVERLESS)
    assert summary == {
        "VariantName": "v",
        "CurrentInstanceCount": 0,
        "CurrentServerlessConfig": SERVERLESS,
        "DesiredServerlessConfig": SERVERLESS,
    }
    assert serverless_instance_count(VARIANT) == 0
    assert serverless_instance_count({"ServerlessConfig": {**SERVERLESS, "ProvisionedConcurrency": 2}}) == 2
    assert serverless_instance_count({"InitialInstanceCount": 3}) == 3


STEP = {
    "AdjustmentType": "ChangeInCapacity",
    "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
}


@pytest.mark.parametrize(
    ("config", "current", "expected"),
    [
        (STEP, 0, 1),
        (
            {**STEP, "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 5}]},
            0,
            3,
        ),  # max 3
        ({"AdjustmentType": "ExactCapacity", "StepAdjustments": [{"ScalingAdjustment": 2}]}, 0, 2),
        ({"AdjustmentType": "PercentChangeInCapacity", "StepAdjustments": [{"ScalingAdjustment": 50}]}, 0, 1),
        (
            {
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [
                    {"MetricIntervalUpperBound": 0, "ScalingAdjustment": 7},
                    {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2},
                ],
            },
            0,
            2,
        ),
    ],
)
def test_a_step_policy_asks_for_capacity_within_the_range(
    config: dict[str, Any], current: int, expected: int
) -> None:
    assert step_capacity(check_step_scaling(config), current, 0, 3) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "StepScalingPolicyConfiguration is required"),
        (
            {"AdjustmentType": "Sideways", "StepAdjustments": [{"ScalingAdjustment": 1}]},
            "AdjustmentType must be",
        ),
        ({"AdjustmentType": "ChangeInCapacity", "StepAdjustments": []}, "at least one step adjustment"),
    ],
)
def test_step_policies_moorage_cannot_run_are_refused(config: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(ValidationException, match=message):
        check_step_scaling(config)


def policy(step: dict[str, Any] | None = None, tracking: dict[str, Any] | None = None) -> ScalingPolicy:
    return ScalingPolicy("p", "arn", "sagemaker", "endpoint/e/variant/v", "d", "t", tracking or {}, 0.0, step)


BACKLOG = {
    "TargetValue": 5.0,
    "CustomizedMetricSpecification": {"MetricName": "ApproximateBacklogSizePerInstance"},
}


def test_the_backlog_recipe_leaves_zero_only_through_the_step_policy() -> None:
    both = [policy(tracking=BACKLOG), policy(step=STEP)]
    assert tracks_backlog(BACKLOG) and not tracks_backlog({"PredefinedMetricSpecification": {}})

    def track(size: float) -> int:
        return -1  # must not be asked with no instance

    args: dict[str, Any] = {"min_capacity": 0, "max_capacity": 4, "track": track, "out_suspended": False}
    assert backlog_desired(current=0, backlog_size=3, policies=both, **args) == 1  # HasBacklogWithoutCapacity
    assert backlog_desired(current=0, backlog_size=0, policies=both, **args) == 0  # nothing waits
    assert backlog_desired(current=0, backlog_size=3, policies=both[:1], **args) == 0  # tracking alone: stays
    assert backlog_desired(current=0, backlog_size=3, policies=both, **{**args, "out_suspended": True}) == 0
    assert backlog_desired(current=2, backlog_size=0, policies=both, **{**args, "track": lambda size: 0}) == 0
