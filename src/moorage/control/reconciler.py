"""Drive the running instances toward the state in the store; this is also how a restart recovers.

The store holds what should be (the only hard state). This module holds what is (soft state: the
running variant runtimes and the routes published to the router) and closes the gap, one endpoint at
a time, whenever the control plane changes an endpoint or the server starts:

    Creating   prepare each variant's artifact, start its instances, publish the route → InService
               (or Failed, with a FailureReason that says what broke)
    Updating   weights and instance counts alone change in place; anything else is blue/green: the
               new deployment starts beside the old, the route switches atomically, requests still
               queued move to the new pools, the old ones drain and stop → InService. If the new
               deployment cannot start, it is stopped and the old keeps serving → InService with a
               FailureReason.
    Deleting   withdraw the route, let accepted requests finish, stop the instances → removed
    InService  make sure it runs: after a restart it starts again with no new CreateEndpoint. The
               status stays InService (docs/compatibility.md): the variants' pools are routed to
               before any worker is ready, so invocations wait for the first ready instance. If the
               instances cannot start, requests get 503 with the cause, FailureReason says why
               (with the worker log's last lines), and the start is retried with exponential backoff
               (settings: recovery_backoff_s doubling up to recovery_backoff_max_s), each failure
               logged once.
    Failed     make sure nothing runs

DescribeEndpoint's CurrentInstanceCount (and the /metrics gauge) counts instances that can answer now:
0 while they restart, and one whose workers died and cannot be replaced yet (a model that no longer
loads) stops counting until it is back, with FailureReason saying why meanwhile.

Where a variant's artifact comes from and the daemon threads that prepare it: `artifact_steps.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from moorage.artifacts import PreparedModel, prepare_model
from moorage.artifacts.trees import release_holder
from moorage.backends.base import Backend
from moorage.control.artifact_steps import line_writer, model_source, on_daemon_thread, release_prepared
from moorage.control.lifecycle import Action, transition
from moorage.control.records import (
    Deployment,
    EndpointRecord,
    EndpointStatus,
    VariantSpec,
)
from moorage.control.store import Store
from moorage.deployments.alarms import AlarmStates
from moorage.deployments.fleet import Fleet as _Live
from moorage.deployments.fleet import deployment_route
from moorage.deployments.fleet import fleet_route as _route
from moorage.deployments.fleet import fleet_states as _states
from moorage.deployments.rollout import GuardedUpdates
from moorage.errors import DeploymentError, MoorageError
from moorage.multimodel.config import is_multi_model
from moorage.multimodel.variant import start_multi_model
from moorage.runtime.metrics import Metrics
from moorage.runtime.pool import WorkerPool
from moorage.runtime.router import Router, StartingVariant
from moorage.runtime.variant import VariantRuntime, VariantSetup
from moorage.serverless.metrics import ServerlessMetrics
from moorage.serverless.runtime import pool_for, runtime_for
from moorage.settings import ContainerConfig, Settings

__all__ = ["Reconciler", "model_source"]

log = logging.getLogger("moorage.control.reconciler")

_T = TypeVar("_T")
# FailureReason on an InService endpoint starts with this while its instances cannot start; the
# reconciler clears only a reason it wrote, never one left by a failed UpdateEndpoint.
CANNOT_START = "The instances of this endpoint cannot start; moorage retries with backoff. "
_MAX_REASON = 1024
_DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0


def _in_place(old: Deployment, new: Deployment) -> bool:
    """Only weights and instance counts differ: no new containers are needed."""
    if [v.variant_name for v in old.variants] != [v.variant_name for v in new.variants]:
        return False
    return all(
        (a.model_name, a.container, a.instance_type, a.startup_timeout_s, a.download_timeout_s, a.shadow)
        == (b.model_name, b.container, b.instance_type, b.startup_timeout_s, b.download_timeout_s, b.shadow)
        and a.serverless == b.serverless
        for a, b in zip(old.variants, new.variants, strict=True)
    )


def _with_counts(
    counts: dict[str, int], failure: str | None, record: EndpointRecord, *, keep_reason: bool = False
) -> EndpointRecord | None:
    """`record` with the current instance counts of its variants; desired values stay as they are
    (an update in progress may have set them). `failure`: why instances cannot start (None: they can,
    and a reason of ours is cleared, unless `keep_reason`: a retry has begun and has not succeeded yet,
    so DescribeEndpoint keeps saying why the last try failed). None when nothing changes or the status
    forbids it."""
    if transition(Action.SET_VARIANTS, record.status) is None:
        return None
    variants = tuple(
        replace(state, current_instance_count=counts.get(state.variant_name, state.current_instance_count))
        for state in record.variants
    )
    reason = record.failure_reason
    if failure is not None:
        reason = (CANNOT_START + failure)[:_MAX_REASON]
    elif reason is not None and reason.startswith(CANNOT_START) and not keep_reason:
        reason = None
    if variants == record.variants and reason == record.failure_reason:
        return None
    return replace(record, variants=variants, failure_reason=reason)


def _reason(error: BaseException) -> str:
    text = error.message if isinstance(error, MoorageError) else f"{type(error).__name__}: {error}"
    return text if len(text) <= 1024 else text[:1021] + "..."


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        store_executor: Executor,
        router: Router,
        backend: Backend,
        settings: Settings,
        metrics: Metrics,
        s3_local_root: Path | None = None,
        alarms: AlarmStates | None = None,
    ) -> None:
        self.store = store
        self.store_executor = store_executor
        self.router = router
        self.backend = backend
        self.settings = settings
        self.metrics = metrics
        self.s3_local_root = s3_local_root  # moorage's embedded S3 store, read without HTTP
        self._live: dict[str, _Live] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._dirty: set[str] = set()
        self._counting: set[str] = set()  # endpoints whose instance counts are about to be written
        self._failures: dict[str, int] = {}  # endpoints whose last reconciliations failed: how many in a row
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._starting: dict[str, dict[str, WorkerPool]] = {}  # pools routed to by `recover`, not yet used
        self._closing = False
        self.serverless_metrics = ServerlessMetrics()  # cold starts of serverless variants (serverless/)
        metrics.add_renderer(self.serverless_metrics.render)
        # UpdateEndpoint with a DeploymentConfig: traffic shifted in steps, rolled back on alarms.
        self._guarded = GuardedUpdates(
            store=store,
            store_executor=store_executor,
            router=router,
            start=self._start,
            retire=self._retire,
            alarms=alarms,
        )

    def model_deleted(self, name: str) -> None:
        """DeleteModel's hook (on the store's thread): free the cached trees only that model held."""
        release_holder(self.settings.cache_dir, self.settings.artifacts, name)

    # ControlHooks -------------------------------------------------------------------------------
    def endpoint_changed(self, name: str) -> None:
        """Called on the event loop after any write to an endpoint; work for one endpoint never overlaps."""
        if self._closing:
            return
        if name in self._tasks:
            self._dirty.add(name)
            return
        self._tasks[name] = asyncio.get_running_loop().create_task(self._run(name))

    async def _run(self, name: str) -> None:
        try:
            while True:
                self._dirty.discard(name)
                try:
                    await self._reconcile(name)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    delay = self._retry_later(name)
                    log.exception("reconciling endpoint %s failed; retrying in %.0f s", name, delay)
                if name not in self._dirty or self._closing:
                    return
        finally:
            self._tasks.pop(name, None)

    def _retry_later(self, name: str) -> float:
        """Reconcile `name` again after a backoff that doubles with each failure in a row; the delay."""
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        workers = self.settings.workers
        delay = min(workers.recovery_backoff_max_s, workers.recovery_backoff_s * 2.0 ** min(failures - 1, 30))
        previous = self._retries.pop(name, None)
        if previous is not None:
            previous.cancel()
        self._retries[name] = asyncio.get_running_loop().call_later(delay, self._retry_due, name)
        return delay

    def _retry_due(self, name: str) -> None:
        self._retries.pop(name, None)
        self.endpoint_changed(name)

    async def recover(self) -> None:
        """At start-up: bring every stored endpoint back to what its status says.

        An InService endpoint is routed to empty pools before this returns (before the server says
        it is ready), so an invocation right after a restart waits for the instances, never 503s."""
        for record in await self._db(self.store.list_endpoints):
            self.router.set_status(record.name, record.status.value)
            if record.status is EndpointStatus.IN_SERVICE and record.deployment is not None:
                with contextlib.suppress(DeploymentError):  # _ensure_running reports it
                    self._starting[record.name] = self._route_starting(record.name, record.deployment)
            self.endpoint_changed(record.name)

    async def close(self, grace_s: float) -> None:
        """Stop reconciling and stop every running variant; in-progress work resumes at the next start."""
        self._closing = True
        for timer in self._retries.values():
            timer.cancel()
        self._retries.clear()
        for pools in self._starting.values():
            for pool in pools.values():
                pool.abandon("The server is stopping; retry the request.")
        self._starting.clear()
        await self._guarded.close()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        live, self._live = self._live, {}
        for name in live:
            self.router.withdraw(name)
        await asyncio.gather(
            *(runtime.stop(grace_s) for entry in live.values() for runtime in entry.variants.values()),
            *self._background,
            return_exceptions=True,
        )

    def _instances_changed(self, endpoint: str) -> None:
        """A worker of `endpoint` became ready or went away: write the counts DescribeEndpoint shows."""
        if self._closing or endpoint in self._counting:
            return
        self._counting.add(endpoint)
        task = asyncio.get_running_loop().create_task(self._write_counts(endpoint))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_counts(self, endpoint: str) -> None:
        await asyncio.sleep(0)  # a burst of changes (a whole instance stopping) becomes one write
        self._counting.discard(endpoint)
        live = self._live.get(endpoint)
        if live is None or self._closing:
            return
        counts = _counts(live)
        failure = next(
            (
                f"Production variant {name}: {runtime.start_failure}"
                for name, runtime in live.variants.items()
                if runtime.start_failure
            ),
            None,
        )
        self._gauge(endpoint, live.deployment, counts)
        try:
            await self._db(
                self.store.modify_endpoint, endpoint, functools.partial(_with_counts, counts, failure)
            )
        except Exception:  # the counters are informational; the next change writes them again
            log.exception("could not record the instance counts of endpoint %s", endpoint)

    def _gauge(self, endpoint: str, deployment: Deployment, counts: dict[str, int]) -> None:
        """The /metrics gauge: instances that can answer now, and those wanted, per variant."""
        self.metrics.set_instances(
            endpoint,
            {
                spec.variant_name: (counts.get(spec.variant_name, 0), spec.instance_count)
                for spec in deployment.variants
            },
        )

    async def _db(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.store_executor, functools.partial(method, *args, **kwargs))

    # One endpoint -------------------------------------------------------------------------------
    async def _reconcile(self, name: str) -> None:
        record = await self._db(self.store.get_endpoint, name)
        if record is None:
            await self._stop_live(name)
            self.router.set_status(name, None)
            return
        self.router.set_status(name, record.status.value)
        if record.status is not EndpointStatus.IN_SERVICE and name in self._starting:
            # Changed before its instances came back (say, UpdateEndpoint right after the restart).
            self.router.withdraw(name)
            for pool in self._starting.pop(name).values():
                pool.abandon(f"Endpoint {name} is now {record.status.value}; retry the request.")
        if record.status is EndpointStatus.CREATING:
            await self._create(record)
        elif record.status is EndpointStatus.UPDATING:
            await self._update(record)
        elif record.status is EndpointStatus.DELETING:
            await self._delete(record)
        elif record.status is EndpointStatus.IN_SERVICE:
            await self._ensure_running(record)
        else:
            await self._stop_live(name)

    async def _create(self, record: EndpointRecord) -> None:
        deployment = record.pending or record.deployment
        assert deployment is not None, "a Creating endpoint always has a pending deployment"
        await self._stop_live(record.name)  # leftovers of an earlier attempt, if any
        try:
            live = await self._start(record.name, deployment)
        except DeploymentError as exc:
            log.error("endpoint %s failed to start: %s", record.name, exc.message)
            await self._db(self.store.endpoint_failed, record.name, _reason(exc))
            self.router.set_status(record.name, EndpointStatus.FAILED.value)
            return
        self._live[record.name] = live
        self.router.publish(_route(record.name, live))
        self._gauge(record.name, deployment, _counts(live))
        if await self._db(self.store.endpoint_in_service, record.name, variants=_states(live)) is None:
            await self._stop_live(record.name)  # it changed under us; the next pass sees the new state
            self._dirty.add(record.name)
            return
        self.router.set_status(record.name, EndpointStatus.IN_SERVICE.value)
        log.info("endpoint %s is InService", record.name)

    async def _ensure_running(self, record: EndpointRecord) -> None:
        assert record.deployment is not None
        live = self._live.get(record.name)
        if live is not None:
            if live.deployment != record.deployment:
                live.deployment = record.deployment
                self.router.publish(_route(record.name, live))
            return
        name, deployment = record.name, record.deployment
        # Until its instances are back, none counts; requests wait for them in the variants' pools.
        zero = {spec.variant_name: 0 for spec in deployment.variants}
        self._gauge(name, deployment, zero)
        await self._db(
            self.store.modify_endpoint, name, functools.partial(_with_counts, zero, None, keep_reason=True)
        )
        try:
            live = await self._start(name, deployment, route_early=True)
        except DeploymentError as exc:
            self.router.withdraw(name)
            reason = _reason(exc)
            self.router.set_cannot_start(name, reason.splitlines()[0])
            delay = self._retry_later(name)
            log.error(
                "endpoint %s is InService but its instances could not start (failure %d in a row; "
                "retrying in %.0f s): %s",
                name,
                self._failures[name],
                delay,
                reason,
            )
            await self._db(self.store.modify_endpoint, name, functools.partial(_with_counts, zero, reason))
            return
        self._failures.pop(name, None)
        self._live[name] = live
        self.router.publish(_route(name, live))
        self.router.set_cannot_start(name, None)
        counts = _counts(live)
        self._gauge(name, deployment, counts)
        await self._db(self.store.modify_endpoint, name, functools.partial(_with_counts, counts, None))
        log.info("endpoint %s is serving again", name)

    async def _update(self, record: EndpointRecord) -> None:
        new = record.pending
        assert new is not None, "an Updating endpoint always has a pending deployment"
        old = self._live.get(record.name)
        if new.progress is not None:  # a guarded update (moorage.deployments)
            live = await self._guarded.run(record, old)
            if live is None:
                self.endpoint_changed(record.name)  # rolled back after a restart: start the old again
            else:
                self._live[record.name] = live
            return
        if old is not None and _in_place(old.deployment, new):
            await self._update_in_place(record, old, new)
            return
        try:
            live = await self._start(record.name, new)
        except DeploymentError as exc:
            log.error(
                "update of endpoint %s failed; the previous configuration keeps serving: %s",
                record.name,
                exc.message,
            )
            await self._db(self.store.update_failed, record.name, _reason(exc))
            self.router.set_status(record.name, EndpointStatus.IN_SERVICE.value)
            if old is None:
                self.endpoint_changed(record.name)  # after a restart mid-update: bring the old one back
            return
        self._live[record.name] = live
        route = _route(record.name, live)
        self.router.publish(route)
        self._gauge(record.name, new, _counts(live))
        if old is not None:
            # Requests still queued on the old pools move to the new ones; running ones finish where they are.
            for runtime in old.variants.values():
                for waiting in runtime.pool.close():
                    route.pick(None, self.router.account).pool.adopt([waiting])
            self._retire(old)
        await self._db(self.store.endpoint_in_service, record.name, variants=_states(live))
        self.router.set_status(record.name, EndpointStatus.IN_SERVICE.value)
        log.info("endpoint %s updated to %s", record.name, new.config_name)

    async def _update_in_place(self, record: EndpointRecord, live: _Live, new: Deployment) -> None:
        try:
            for spec in new.variants:
                await live.variants[spec.variant_name].scale_to(spec.instance_count)
        except DeploymentError as exc:
            await self._db(self.store.update_failed, record.name, _reason(exc))
            self.router.set_status(record.name, EndpointStatus.IN_SERVICE.value)
            return
        live.deployment = new
        self.router.publish(_route(record.name, live))
        self._gauge(record.name, new, _counts(live))
        await self._db(self.store.endpoint_in_service, record.name, variants=_states(live))
        self.router.set_status(record.name, EndpointStatus.IN_SERVICE.value)

    async def _delete(self, record: EndpointRecord) -> None:
        await self._stop_live(record.name)
        await self._db(self.store.remove_endpoint, record.name)
        self.router.set_status(record.name, None)
        self.metrics.forget(record.name)
        self.serverless_metrics.forget(record.name)
        self._failures.pop(record.name, None)
        log.info("endpoint %s deleted", record.name)

    async def _stop_live(self, name: str) -> None:
        live = self._live.pop(name, None)
        self.router.withdraw(name)
        if live is not None:
            grace = self.settings.workers.drain_grace_s
            await asyncio.gather(*(self._stop_runtime(runtime, grace) for runtime in live.variants.values()))

    def _retire(self, live: _Live) -> None:
        grace = self.settings.workers.drain_grace_s

        async def drain_and_stop() -> None:
            await asyncio.gather(*(self._stop_runtime(runtime, grace) for runtime in live.variants.values()))

        task = asyncio.get_running_loop().create_task(drain_and_stop())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop_runtime(self, runtime: VariantRuntime, grace_s: float) -> None:
        """Stop a variant, then release its model trees, which the cache may now free or evict."""
        await runtime.stop(grace_s)
        await release_prepared(runtime.setup.prepared)

    # Starting a deployment ----------------------------------------------------------------------
    async def _start(self, endpoint: str, deployment: Deployment, *, route_early: bool = False) -> _Live:
        """Start every variant. `route_early`: route requests to the variants' pools at once, so they
        wait for the first ready instance (an InService endpoint restarting); a failure ends them."""
        pools: dict[str, WorkerPool] = {}
        if route_early:
            pools = self._starting.pop(endpoint, {}) or self._route_starting(endpoint, deployment)
        try:
            results = await asyncio.gather(
                *(
                    self._start_variant(endpoint, spec, pools.get(spec.variant_name))
                    for spec in deployment.variants
                ),
                return_exceptions=True,
            )
        except BaseException:  # cancelled: the server is stopping
            for pool in pools.values():
                pool.abandon("The server is stopping; retry the request.")
            raise
        started = [r for r in results if isinstance(r, VariantRuntime)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is None:
            return _Live(deployment, {runtime.name: runtime for runtime in started})
        await asyncio.gather(*(self._stop_runtime(runtime, 0.0) for runtime in started))
        if isinstance(failure, DeploymentError):
            error = failure
        elif isinstance(failure, MoorageError):
            error = DeploymentError(failure.message)
        else:
            error = DeploymentError(f"{type(failure).__name__}: {failure}")
        for pool in pools.values():  # those whose runtime was never built (preparation failed)
            pool.abandon(f"The instances of endpoint {endpoint} could not start: {error.message}")
        raise error from (None if error is failure else failure)

    def _route_starting(self, endpoint: str, deployment: Deployment) -> dict[str, WorkerPool]:
        """Publish a route to fresh, empty pools: requests queue there until instances are ready."""
        try:
            pools = {
                spec.variant_name: pool_for(
                    spec,
                    f"{endpoint}/{spec.variant_name}",
                    ContainerConfig.from_environment(spec.container.environment),
                    self.settings.workers,
                )
                for spec in deployment.variants
            }
        except MoorageError as exc:  # a container setting that no longer parses
            raise DeploymentError(exc.message) from exc
        variants = {name: StartingVariant(name, pool) for name, pool in pools.items()}
        self.router.publish(deployment_route(endpoint, deployment, variants))
        return pools

    async def _start_variant(
        self, endpoint: str, spec: VariantSpec, pool: WorkerPool | None = None
    ) -> VariantRuntime:
        if is_multi_model(spec.container):  # nothing to prepare up front: models load on their first call
            changed = functools.partial(self._instances_changed, endpoint)
            settings, root = self.settings, self.s3_local_root
            backend, metrics = self.backend, self.metrics
            multi = await start_multi_model(endpoint, spec, backend, settings, metrics, root, changed)
            if pool is not None:  # what waited while it restarted: a multi-model call needs the new route
                pool.abandon(f"The instances of endpoint {endpoint} restarted; retry the request.")
            return multi
        prepared = None
        try:
            prepared = await self._prepare(endpoint, spec)
            await self.backend.start()  # idempotent; a cluster's machines are known once it is joined
            runtime = runtime_for(
                spec,
                VariantSetup(
                    endpoint=endpoint,
                    variant=spec.variant_name,
                    prepared=prepared,
                    environment=dict(spec.container.environment),
                    instance_type=spec.instance_type,
                    instance_count=spec.instance_count,
                    logs_dir=self.settings.logs_dir,
                    startup_timeout_s=spec.startup_timeout_s or self.settings.workers.startup_timeout_s,
                ),
                self.backend,
                self.settings.workers,
                pool,
                idle_s=self.settings.serverless_idle_s,
                metrics=self.serverless_metrics,
            )
            runtime.on_change = functools.partial(self._instances_changed, endpoint)
            await runtime.start()
            return runtime
        except BaseException as exc:
            if prepared is not None:  # nothing serves from its trees: the cache may free them
                await release_prepared(prepared)
            if isinstance(exc, MoorageError):
                raise DeploymentError(f"Production variant {spec.variant_name}: {exc.message}") from exc
            raise

    async def _prepare(self, endpoint: str, spec: VariantSpec) -> PreparedModel:
        log_path = self.settings.logs_dir / endpoint / spec.variant_name / "deployment.log"
        write = line_writer(log_path)
        source = model_source(spec.container)
        write(f"preparing model {spec.model_name} from {source.url}")
        # A model deleted while its endpoint serves holds no tree (DeleteModel released its holds).
        exists = await self._db(self.store.get_model, spec.model_name) is not None
        return await on_daemon_thread(
            functools.partial(
                prepare_model,
                source,
                submit_directory=spec.container.environment.get("SAGEMAKER_SUBMIT_DIRECTORY"),
                cache_dir=self.settings.cache_dir,
                policy=self.settings.artifacts,
                s3_local_root=self.s3_local_root,
                log=write,
                timeout_s=spec.download_timeout_s or _DEFAULT_DOWNLOAD_TIMEOUT_S,
                holder=spec.model_name if exists else None,  # DeleteModel frees what it held (trees.py)
            ),
        )


def _counts(live: _Live) -> dict[str, int]:
    return {name: runtime.ready_instances for name, runtime in live.variants.items()}
