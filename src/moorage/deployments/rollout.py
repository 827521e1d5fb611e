"""UpdateEndpoint with a DeploymentConfig: the new fleet takes traffic in steps, each step bakes while
the alarms are watched, and an alarm sends all traffic back to the old fleet.

    Creating            the new fleet starts whole beside the old one, which serves everything
    ActivatingTraffic   the route gives the new fleet its next share of requests (one atomic swap)
    Baking              WaitIntervalInSeconds with that share; alarms read every guardrail_poll_s
    done                the new fleet takes all traffic, requests still queued on the old one move
                        to it, the endpoint is InService on the new config (LastDeploymentConfig),
                        and the old fleet stops after TerminationWaitInSeconds
    rolled back         an alarm in ALARM (or MaximumExecutionTimeoutInSeconds passed): the route
                        gives everything back to the old fleet, requests queued on the new one move
                        back, those running there finish, the new fleet stops; the endpoint is
                        InService on the old config with a FailureReason, as SageMaker leaves it

Every request is answered by one fleet or the other: the route swap is atomic, nothing queued is
dropped, and a fleet stops only after draining. Where the update stands is written to the store at
each step (DescribeEndpoint's PendingDeploymentSummary). A server that stops or dies mid-update does
not resume it: at the next start the update is rolled back (the old config serves, FailureReason says
why) because its bake can no longer be vouched for; run UpdateEndpoint again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any, TypeVar

from moorage.cloudwatch.records import AlarmStateChange
from moorage.control.records import Deployment, EndpointRecord, EndpointStatus
from moorage.control.store import Store
from moorage.deployments.alarms import ALARM, AlarmStates
from moorage.deployments.config import Plan, plan_for
from moorage.deployments.fleet import Fleet, fleet_route, fleet_states
from moorage.errors import DeploymentError, MoorageError
from moorage.runtime.router import EndpointRoute, Router

__all__ = ["INTERRUPTED", "NO_OLD_FLEET", "GuardedUpdates"]

log = logging.getLogger("moorage.deployments")

_T = TypeVar("_T")
INTERRUPTED = (
    "The server stopped during this guarded deployment, so it was rolled back: the previous endpoint "
    "configuration serves. Call UpdateEndpoint again to deploy the new one."
)

NO_OLD_FLEET = (
    "The instances of the serving configuration are not running (they cannot start), so a guarded "
    "deployment has no fleet to shift traffic from. Call UpdateEndpoint without DeploymentConfig to "
    "replace them."
)


class GuardedUpdates:
    def __init__(
        self,
        *,
        store: Store,
        store_executor: Executor,
        router: Router,
        start: Callable[[str, Deployment], Awaitable[Fleet]],
        retire: Callable[[Fleet], None],
        alarms: AlarmStates | None,
    ) -> None:
        self._store = store
        self._executor = store_executor
        self._router = router
        self._start = start
        self._retire = retire
        self._alarms = alarms
        self._started_at = time.time()  # an update accepted before this: interrupted by a restart
        self._terminating: dict[asyncio.TimerHandle, Fleet] = {}  # old fleets in TerminationWaitInSeconds

    async def close(self) -> None:
        """The server is stopping: old fleets waiting out TerminationWaitInSeconds stop now."""
        for timer, fleet in list(self._terminating.items()):
            timer.cancel()
            self._retire(fleet)
        self._terminating.clear()

    async def run(self, record: EndpointRecord, blue: Fleet | None) -> Fleet | None:
        """Roll `record.pending` out over `blue`; returns the fleet that serves afterwards (None: none
        runs, after a restart, and the reconciler starts the old configuration again)."""
        name, green_deployment = record.name, record.pending
        assert green_deployment is not None and green_deployment.deployment_config is not None
        if blue is None:
            progress = green_deployment.progress or {}
            if float(progress.get("StartTime", 0.0)) < self._started_at:
                log.error("endpoint %s: a guarded update was interrupted by a restart; rolling back", name)
                await self._fail(name, INTERRUPTED)
            else:
                await self._fail(name, NO_OLD_FLEET)
            return None
        try:
            plan = plan_for(green_deployment.deployment_config, green_deployment)
            await self._check_alarms(plan)
        except MoorageError as exc:
            await self._fail(name, exc.message)
            return blue
        breach: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_change(change: AlarmStateChange) -> None:
            if change.alarm in plan.alarms and change.new == ALARM and not breach.done():
                breach.set_result(change.alarm)

        unsubscribe = self._alarms.subscribe(on_change) if self._alarms is not None and plan.alarms else None
        try:
            return await self._roll_out(name, plan, blue, green_deployment, breach)
        finally:
            if unsubscribe is not None:
                unsubscribe()

    async def _roll_out(
        self, name: str, plan: Plan, blue: Fleet, green_deployment: Deployment, breach: asyncio.Future[str]
    ) -> Fleet:
        loop = asyncio.get_running_loop()
        deadline = None if plan.max_s is None else loop.time() + plan.max_s
        await self._progress(name, "Creating", "Launching the new fleet.", 0.0)
        try:
            green = await self._start(name, green_deployment)
        except MoorageError as exc:
            log.error("endpoint %s: the new fleet could not start; the old one keeps serving: %s", name, exc)
            await self._fail(name, exc.message)
            return blue
        try:
            for share in plan.shares:
                percent = f"{share:.0%}"
                await self._progress(
                    name, "ActivatingTraffic", f"Shifting {percent} of traffic to the new fleet.", share
                )
                self._router.publish(_split(name, blue, green, share))
                await self._progress(
                    name,
                    "Baking",
                    f"Baking for {plan.wait_s:.0f} seconds with {percent} of traffic on the new fleet.",
                    share,
                )
                failure = await self._bake(plan, deadline, breach)
                if failure is not None:
                    await self._roll_back(name, blue, green, failure)
                    return blue
        except BaseException:  # cancelled: the server is stopping; the old fleet gets everything back
            self._router.publish(fleet_route(name, blue))
            _hand_over(green, fleet_route(name, blue), self._router.account)
            self._retire(green)
            raise
        route = fleet_route(name, green)
        self._router.publish(route)
        _hand_over(blue, route, self._router.account)
        await self._db(self._store.modify_endpoint, name, _without_progress)
        await self._db(self._store.endpoint_in_service, name, variants=fleet_states(green))
        self._router.set_status(name, EndpointStatus.IN_SERVICE.value)
        timer = loop.call_later(plan.termination_wait_s, self._terminate, blue)
        self._terminating[timer] = blue
        log.info(
            "endpoint %s: guarded update (%s) to %s completed", name, plan.kind, green_deployment.config_name
        )
        return green

    def _terminate(self, fleet: Fleet) -> None:
        for timer, held in list(self._terminating.items()):
            if held is fleet:
                del self._terminating[timer]
        self._retire(fleet)

    async def _check_alarms(self, plan: Plan) -> None:
        if not plan.alarms:
            return
        if self._alarms is None:
            raise DeploymentError(
                "CloudWatch alarms are not available on this server; AutoRollbackConfiguration needs them."
            )
        states = await self._alarms.states(plan.alarms)
        missing = [alarm for alarm in plan.alarms if alarm not in states]
        if missing:
            raise DeploymentError(
                f"AutoRollbackConfiguration names alarms that do not exist: {', '.join(missing)}. "
                "Create them with PutMetricAlarm and call UpdateEndpoint again."
            )

    async def _bake(self, plan: Plan, deadline: float | None, breach: asyncio.Future[str]) -> str | None:
        """Bake one step for WaitIntervalInSeconds while watching the alarms; why to roll back, or None."""
        if plan.alarms and self._alarms is not None and not breach.done():
            states = await self._alarms.states(plan.alarms)
            already = next((alarm for alarm in plan.alarms if states.get(alarm) == ALARM), None)
            if already is not None:
                breach.set_result(already)
        loop = asyncio.get_running_loop()
        wait = plan.wait_s if deadline is None else min(plan.wait_s, max(0.0, deadline - loop.time()))
        if not breach.done():
            await asyncio.wait({breach}, timeout=wait)
        if breach.done():
            return (
                f"Alarm {breach.result()} went to ALARM during the deployment; auto-rollback restored the "
                "previous endpoint configuration."
            )
        if deadline is not None and loop.time() >= deadline:
            return (
                "The deployment did not finish within MaximumExecutionTimeoutInSeconds; it was rolled back "
                "to the previous endpoint configuration."
            )
        return None

    async def _roll_back(self, name: str, blue: Fleet, green: Fleet, reason: str) -> None:
        route = fleet_route(name, blue)
        self._router.publish(route)
        _hand_over(green, route, self._router.account)
        self._retire(green)
        log.error("endpoint %s: %s", name, reason)
        await self._fail(name, reason)

    async def _fail(self, name: str, reason: str) -> None:
        await self._db(self._store.update_failed, name, reason)
        await self._db(self._store.modify_endpoint, name, _all_traffic)
        self._router.set_status(name, EndpointStatus.IN_SERVICE.value)

    async def _progress(self, name: str, status: str, message: str, share: float) -> None:
        progress = {"Status": status, "StatusMessage": message, "Share": share}
        await self._db(self._store.modify_endpoint, name, functools.partial(_with_progress, progress))

    async def _db(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, *args, **kwargs))


def _split(name: str, blue: Fleet, green: Fleet, share: float) -> EndpointRoute:
    """The old fleet's route, sending `share` of requests to the new fleet's."""
    return replace(fleet_route(name, blue), green=fleet_route(name, green), green_share=share)


def _hand_over(fleet: Fleet, route: EndpointRoute, account: str) -> None:
    """Requests still queued on `fleet`'s production variants move to `route`; those running finish
    where they are (the fleet drains before it stops); a shadow's copies stay with it."""
    production = {spec.variant_name for spec in fleet.deployment.variants if not spec.shadow}
    for variant_name, runtime in fleet.variants.items():
        if variant_name not in production:
            continue
        for waiting in runtime.pool.close():
            try:
                route.pick(None, account).pool.adopt([waiting])
            except MoorageError as exc:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)


def _with_progress(progress: dict[str, Any], record: EndpointRecord) -> EndpointRecord | None:
    """The update's progress, stamped, and the old fleet's weights as traffic leaves it."""
    if record.status is not EndpointStatus.UPDATING or record.pending is None:
        return None
    previous = record.pending.progress or {}
    started = previous.get("StartTime") if previous.get("Status") == progress["Status"] else None
    stamped = {**progress, "StartTime": started or time.time()}
    specs = {spec.variant_name: spec for spec in (record.deployment or record.pending).variants}
    variants = tuple(
        replace(state, current_weight=specs[state.variant_name].weight * (1 - float(progress["Share"])))
        if state.variant_name in specs and not state.shadow
        else state
        for state in record.variants
    )
    return replace(record, pending=replace(record.pending, progress=stamped), variants=variants)


def _all_traffic(record: EndpointRecord) -> EndpointRecord | None:
    """After a rollback: the serving deployment's variants have all their traffic back."""
    if record.deployment is None:
        return None
    specs = {spec.variant_name: spec for spec in record.deployment.variants}
    variants = tuple(
        replace(state, current_weight=specs[state.variant_name].weight)
        if state.variant_name in specs
        else state
        for state in record.variants
    )
    return None if variants == record.variants else replace(record, variants=variants)


def _without_progress(record: EndpointRecord) -> EndpointRecord | None:
    if record.pending is None or record.pending.progress is None:
        return None
    return replace(record, pending=replace(record.pending, progress=None))
