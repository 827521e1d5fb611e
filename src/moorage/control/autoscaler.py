"""Target tracking: every period, bring each registered variant's invocations per instance back to its
policies' TargetValue by changing its instance count, within MinCapacity..MaxCapacity.

SageMaker's metric SageMakerVariantInvocationsPerInstance is the variant's invocations per minute
divided by its instance count; target tracking picks the count that brings it back to the target,
ceil(invocations per minute / TargetValue). Here the invocations come from the runtime's counters
(runtime/metrics.py), read every MOORAGE_AUTOSCALE_PERIOD seconds (CloudWatch's minute by default).
Rules, as Application Auto Scaling applies them:

- a count outside MinCapacity..MaxCapacity is brought inside, with or without a policy;
- scale-out happens as soon as a policy asks for more, then waits ScaleOutCooldown before the next;
- scale-in happens only when every policy asks for fewer (none with DisableScaleIn), and not within
  ScaleInCooldown of the last scaling either way; SuspendedState turns either direction off.

The count changes through UpdateEndpointWeightsAndCapacities, the path a user's call takes, so
DescribeEndpoint shows Updating, then InService with the new DesiredInstanceCount, on every backend.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from moorage.asyncinf.metrics import Backlog
from moorage.control import endpoints
from moorage.control.arns import ControlContext
from moorage.control.autoscaling import NAMESPACE, parse_resource_id
from moorage.control.records import EndpointStatus, ScalableTarget, ScalingPolicy
from moorage.control.store import Store
from moorage.errors import MoorageError
from moorage.runtime.metrics import Metrics
from moorage.serverless.backlog import backlog_desired, is_backlog_policy

__all__ = ["Autoscaler", "Tracking", "desired_capacity"]

log = logging.getLogger("moorage.control.autoscaler")

_T = TypeVar("_T")
_DEFAULT_COOLDOWN_S = 300.0  # Application Auto Scaling's default for SageMaker variants


@dataclass(frozen=True)
class Tracking:
    """One TargetTrackingScaling policy, as the decision needs it."""

    target_value: float  # invocations per instance per minute
    scale_out_cooldown_s: float = _DEFAULT_COOLDOWN_S
    scale_in_cooldown_s: float = _DEFAULT_COOLDOWN_S
    disable_scale_in: bool = False

    @classmethod
    def of(cls, policy: ScalingPolicy) -> Tracking:
        config = policy.target_tracking
        return cls(
            target_value=float(config["TargetValue"]),
            scale_out_cooldown_s=float(config.get("ScaleOutCooldown", _DEFAULT_COOLDOWN_S)),
            scale_in_cooldown_s=float(config.get("ScaleInCooldown", _DEFAULT_COOLDOWN_S)),
            disable_scale_in=bool(config.get("DisableScaleIn", False)),
        )


@dataclass(frozen=True)
class History:
    """When this target last scaled (monotonic seconds; -inf: never)."""

    last_scale_out: float = -math.inf
    last_scale_in: float = -math.inf


def desired_capacity(
    *,
    current: int,
    per_minute: float,
    policies: Sequence[Tracking],
    min_capacity: int,
    max_capacity: int,
    now: float,
    history: History,
    out_suspended: bool = False,
    in_suspended: bool = False,
) -> int:
    """The instance count target tracking asks for now (`current` when nothing should change)."""
    if current < min_capacity:
        return min_capacity
    if current > max_capacity:
        return max_capacity
    if not policies:
        return current

    def wanted(policy: Tracking) -> int:
        # A hair under the exact quotient, so that 60.000000001 / 30 does not round up to 3.
        return min(max_capacity, max(min_capacity, math.ceil(per_minute / policy.target_value - 1e-9)))

    outward = [
        wanted(policy)
        for policy in policies
        if wanted(policy) > current and now - history.last_scale_out >= policy.scale_out_cooldown_s
    ]
    if outward and not out_suspended:
        return max(outward)
    if in_suspended or any(wanted(policy) >= current or policy.disable_scale_in for policy in policies):
        return current
    last_scaling = max(history.last_scale_out, history.last_scale_in)
    if any(now - last_scaling < policy.scale_in_cooldown_s for policy in policies):
        return current
    return max(wanted(policy) for policy in policies)


@dataclass
class _Seen:
    invocations: int
    at: float
    history: History


class Autoscaler:
    def __init__(
        self,
        *,
        store: Store,
        store_executor: Executor,
        ctx: ControlContext,
        metrics: Metrics,
        endpoint_changed: Callable[[str], None],
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
        backlogs: Callable[[], Mapping[str, Backlog]] = dict,
    ) -> None:
        self.store = store
        self.store_executor = store_executor
        self.ctx = ctx
        self.metrics = metrics
        self.endpoint_changed = endpoint_changed  # the reconciler's hook, as after a user's write
        self.period_s = period_s
        self.clock = clock
        self.backlogs = backlogs  # the async queue, per endpoint (asyncinf/dispatcher.py)
        self._seen: dict[tuple[str, str, str], _Seen] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.evaluate()
            except Exception:  # one bad pass must not end autoscaling; the next one tries again
                log.exception("evaluating the scaling policies failed")

    async def _db(self, method: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.store_executor, functools.partial(method, *args))

    async def evaluate(self) -> None:
        """One pass over every registered SageMaker variant."""
        targets = await self._db(self.store.list_scalable_targets, NAMESPACE)
        policies = await self._db(self.store.list_scaling_policies, NAMESPACE)
        by_target: dict[tuple[str, str, str], list[ScalingPolicy]] = {}
        for policy in policies:
            by_target.setdefault(policy.target_key, []).append(policy)
        counters = self.metrics.snapshot()
        now = self.clock()
        for key in set(self._seen) - {target.key for target in targets}:
            del self._seen[key]  # deregistered
        for target in targets:
            await self._evaluate_one(target, by_target.get(target.key, []), counters, now)

    async def _evaluate_one(
        self, target: ScalableTarget, policies: list[ScalingPolicy], counters: dict[Any, Any], now: float
    ) -> None:
        endpoint, variant = parse_resource_id(target.resource_id) or ("", "")
        series = counters.get((endpoint, variant))
        invocations = series.invocations if series is not None else 0
        seen = self._seen.get(target.key)
        self._seen[target.key] = _Seen(invocations, now, seen.history if seen else History())
        if seen is None or now <= seen.at:
            return  # the first look only sets the baseline
        delta = invocations - seen.invocations if invocations >= seen.invocations else invocations
        per_minute = delta * 60.0 / (now - seen.at)
        record = await self._db(self.store.get_endpoint, endpoint)
        if record is None or record.status is not EndpointStatus.IN_SERVICE or record.deployment is None:
            return  # not serving, or already changing: look again next period
        spec = next((v for v in record.deployment.variants if v.variant_name == variant), None)
        if spec is None:
            return
        suspended = target.suspended_state

        def track(metric: float, tracking: list[Tracking]) -> int:
            return desired_capacity(
                current=spec.instance_count,
                per_minute=metric,
                policies=tracking,
                min_capacity=target.min_capacity,
                max_capacity=target.max_capacity,
                now=now,
                history=seen.history,
                out_suspended=bool(suspended.get("DynamicScalingOutSuspended")),
                in_suspended=bool(suspended.get("DynamicScalingInSuspended")),
            )

        backlog = [policy for policy in policies if is_backlog_policy(policy)]
        if backlog:  # an async endpoint's scale to zero and back (serverless/backlog.py)
            queue = self.backlogs().get(endpoint)
            tracking = [Tracking.of(policy) for policy in backlog if policy.step_scaling is None]
            desired = backlog_desired(
                current=spec.instance_count,
                backlog_size=queue.size if queue is not None else 0,
                policies=backlog,
                min_capacity=target.min_capacity,
                max_capacity=target.max_capacity,
                track=functools.partial(track, tracking=tracking),
                out_suspended=bool(suspended.get("DynamicScalingOutSuspended")),
            )
        else:
            desired = track(per_minute, [Tracking.of(policy) for policy in policies])
        if desired == spec.instance_count:
            return
        if not await self._set_count(record.name, variant, desired):
            return
        history = seen.history
        if desired > spec.instance_count:
            history = History(last_scale_out=now, last_scale_in=history.last_scale_in)
        else:
            history = History(last_scale_out=history.last_scale_out, last_scale_in=now)
        self._seen[target.key] = _Seen(invocations, now, history)
        log.info(
            "%s: %.1f invocations per instance per minute on %d instance(s); scaling to %d",
            target.resource_id,
            per_minute / max(1, spec.instance_count),
            spec.instance_count,
            desired,
        )

    async def _set_count(self, endpoint: str, variant: str, count: int) -> bool:
        """UpdateEndpointWeightsAndCapacities, as a user would call it; False when the endpoint refused."""
        request = {
            "EndpointName": endpoint,
            "DesiredWeightsAndCapacities": [{"VariantName": variant, "DesiredInstanceCount": count}],
        }
        try:
            await self._db(endpoints.update_endpoint_weights_and_capacities, self.store, self.ctx, request)
        except MoorageError as exc:  # it changed status since we looked (a user's update): next period
            log.info("scaling %s/%s to %d was refused: %s", endpoint, variant, count, exc.message)
            return False
        self.endpoint_changed(endpoint)
        return True
