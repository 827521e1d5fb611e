"""Target tracking's decision (pure), and one autoscaler pass over a real store and real counters."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from moorage.control import autoscaling, endpoint_configs, endpoints, models
from moorage.control.arns import ControlContext
from moorage.control.autoscaler import Autoscaler, History, Tracking, desired_capacity
from moorage.control.records import EndpointStatus, VariantState
from moorage.control.store import Store
from moorage.runtime.metrics import Metrics

NEVER = History()


def decide(
    current: int, per_minute: float, *policies: Tracking, now: float = 1000.0, **kwargs: object
) -> int:
    options: dict[str, object] = {"min_capacity": 1, "max_capacity": 10, "history": NEVER, **kwargs}
    return desired_capacity(current=current, per_minute=per_minute, policies=policies, now=now, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "per_minute", "target", "expected"),
    [
        (1, 0.0, 10.0, 1),  # nothing to do at the floor
        (1, 10.0, 10.0, 1),  # exactly on target
        (1, 10.5, 10.0, 2),  # just above: one more
        (2, 60.0, 30.0, 2),  # 60 / 30 = 2, no float rounding up
        (1, 1000.0, 10.0, 10),  # capped at MaxCapacity
        (4, 25.0, 10.0, 3),  # scale in to what the load needs
        (4, 0.0, 10.0, 1),  # no load: MinCapacity
    ],
)
def test_target_tracking_asks_for_the_count_that_meets_the_target(
    current: int, per_minute: float, target: float, expected: int
) -> None:
    assert decide(current, per_minute, Tracking(target, 0.0, 0.0)) == expected


def test_a_count_outside_the_range_comes_back_inside_without_a_policy() -> None:
    assert decide(1, 0.0, min_capacity=3) == 3
    assert decide(9, 0.0, max_capacity=4) == 4
    assert decide(5, 999.0) == 5  # no policy, inside the range: unchanged


def test_cooldowns() -> None:
    policy = Tracking(10.0, scale_out_cooldown_s=60.0, scale_in_cooldown_s=300.0)
    out_recently = History(last_scale_out=990.0)
    assert decide(2, 100.0, policy, history=out_recently) == 2, "scale-out waits for its cooldown"
    assert decide(2, 100.0, policy, history=History(last_scale_out=900.0)) == 10
    assert decide(5, 0.0, policy, history=out_recently) == 5, "scale-in waits after any scaling"
    assert decide(5, 0.0, policy, history=History(last_scale_in=800.0, last_scale_out=700.0)) == 5
    assert decide(5, 0.0, policy, history=History(last_scale_in=600.0, last_scale_out=-math.inf)) == 1
    assert decide(2, 100.0, policy, history=History(last_scale_in=999.0)) == 10, (
        "scale-in never blocks scale-out"
    )


def test_scale_in_needs_every_policy_and_can_be_turned_off() -> None:
    low, high = Tracking(10.0, 0.0, 0.0), Tracking(1.0, 0.0, 0.0)
    assert decide(5, 20.0, low, high) == 10, "the policy asking for most wins"
    assert decide(5, 3.0, low, high) == 3, "both want fewer: the larger of their counts"
    assert decide(5, 5.0, low, high) == 5, "one policy is content: no scale-in"
    assert decide(5, 20.0, Tracking(10.0, 0.0, 0.0, disable_scale_in=True)) == 5
    assert decide(5, 0.0, low, in_suspended=True) == 5
    assert decide(1, 100.0, low, out_suspended=True) == 1


def _store_with_endpoint(tmp_path: Path, ctx: ControlContext) -> Store:
    store = Store(tmp_path / "state.sqlite3")
    models.create_model(
        store, ctx, {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": "s3://b/m.tar.gz"}}
    )
    endpoint_configs.create_endpoint_config(
        store,
        ctx,
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [
                {
                    "VariantName": "v",
                    "ModelName": "m",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        },
    )
    endpoints.create_endpoint(store, ctx, {"EndpointName": "ep", "EndpointConfigName": "c"})
    record = store.get_endpoint("ep")
    assert record is not None
    states = tuple(
        VariantState(s.variant_name, s.desired_weight, s.desired_weight, 1, 1) for s in record.variants
    )
    store.endpoint_in_service("ep", variants=states)
    return store


def test_a_pass_scales_a_busy_variant_through_update_endpoint_weights_and_capacities(tmp_path: Path) -> None:
    ctx = ControlContext(region="us-east-1", account_id="000000000000")
    store = _store_with_endpoint(tmp_path, ctx)
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/ep/variant/v",
        "ScalableDimension": autoscaling.DIMENSION,
    }
    autoscaling.register_scalable_target(store, ctx, {**target, "MinCapacity": 1, "MaxCapacity": 3})
    autoscaling.put_scaling_policy(
        store,
        ctx,
        {
            **target,
            "PolicyName": "p",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 60.0,
                "PredefinedMetricSpecification": {"PredefinedMetricType": autoscaling.METRIC},
                "ScaleOutCooldown": 0,
            },
        },
    )
    metrics = Metrics()
    changed: list[str] = []
    now = [100.0]
    executor = ThreadPoolExecutor(max_workers=1)

    async def run() -> None:
        scaler = Autoscaler(
            store=store,
            store_executor=executor,
            ctx=ctx,
            metrics=metrics,
            endpoint_changed=changed.append,
            period_s=60.0,
            clock=lambda: now[0],
        )
        await scaler.evaluate()  # the baseline
        for _ in range(150):  # 150 invocations in 60 s on 1 instance: 150 per instance per minute
            metrics.record("ep", "v", status=200, model_us=10.0, total_us=20.0)
        now[0] += 60.0
        await scaler.evaluate()

    try:
        asyncio.run(run())
        record = store.get_endpoint("ep")
        assert record is not None and record.pending is not None
        assert record.status is EndpointStatus.UPDATING
        assert [spec.instance_count for spec in record.pending.variants] == [3]  # ceil(150 / 60) = 3
        assert changed == ["ep"]
    finally:
        executor.shutdown()
        store.close()
