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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from moorage.artifacts import ModelSource, PreparedModel, prepare_model
from moorage.artifacts.trees import release_holder
from moorage.backends.base import Backend
from moorage.control.lifecycle import Action, transition
from moorage.control.records import (
    ContainerSpec,
    Deployment,
    EndpointRecord,
    EndpointStatus,
    VariantSpec,
    VariantState,
)
from moorage.control.store import Store
from moorage.errors import ArtifactSourceError, DeploymentError, MoorageError
from moorage.runtime.metrics import Metrics
from moorage.runtime.pool import WorkerPool
from moorage.runtime.router import EndpointRoute, Router, StartingVariant
from moorage.runtime.variant import VariantRuntime, VariantSetup, variant_pool
from moorage.settings import ContainerConfig, Settings

__all__ = ["Reconciler", "model_source"]

log = logging.getLogger("moorage.control.reconciler")

_T = TypeVar("_T")
# FailureReason on an InService endpoint starts with this while its instances cannot start; the
# reconciler clears only a reason it wrote, never one left by a failed UpdateEndpoint.
CANNOT_START = "The instances of this endpoint cannot start; moorage retries with backoff. "
_MAX_REASON = 1024
_DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0
SHA256_PIN = "MOORAGE_MODEL_DATA_SHA256"  # an integrity pin for any source, in the model's Environment


@dataclass
class _Live:
    deployment: Deployment
    variants: dict[str, VariantRuntime]


def model_source(container: ContainerSpec) -> ModelSource:
    """Where a model's artifact is, with its integrity pins, from its container definition."""
    source = container.model_data_source or {}  # ModelDataSource.S3DataSource, as CreateModel stored it
    url = container.model_data_url or source.get("S3Uri")
    if not url:
        raise ArtifactSourceError(
            "The model has no ModelDataUrl (or ModelDataSource.S3DataSource.S3Uri); moorage needs the model "
            "artifact to serve it."
        )
    prefix = source.get("S3DataType") == "S3Prefix" and source.get("CompressionType") == "None"
    return ModelSource(
        url=url,
        kind="prefix" if prefix else "archive",
        etag=source.get("ETag"),
        sha256=container.environment.get(SHA256_PIN),
    )


def _in_place(old: Deployment, new: Deployment) -> bool:
    """Only weights and instance counts differ: no new containers are needed."""
    if [v.variant_name for v in old.variants] != [v.variant_name for v in new.variants]:
        return False
    return all(
        (a.model_name, a.container, a.instance_type, a.startup_timeout_s, a.download_timeout_s)
        == (b.model_name, b.container, b.instance_type, b.startup_timeout_s, b.download_timeout_s)
        for a, b in zip(old.variants, new.variants, strict=True)
    )


def _route(name: str, live: _Live) -> EndpointRoute:
    weights = {spec.variant_name: spec.weight for spec in live.deployment.variants}
    return EndpointRoute(endpoint=name, variants=dict(live.variants), weights=weights)


def _states(live: _Live) -> tuple[VariantState, ...]:
    return tuple(
        VariantState(
            variant_name=spec.variant_name,
            current_weight=spec.weight,
            desired_weight=spec.weight,
            current_instance_count=live.variants[spec.variant_name].ready_instances,
            desired_instance_count=spec.instance_count,
        )
        for spec in live.deployment.variants
    )


def _with_counts(
    counts: dict[str, int], failure: str | None, record: EndpointRecord
) -> EndpointRecord | None:
    """`record` with the current instance counts of its variants; desired values stay as they are
    (an update in progress may have set them). `failure`: why instances cannot start (None: they can,
    and a reason of ours is cleared). None when nothing changes or the status forbids it."""
    if transition(Action.SET_VARIANTS, record.status) is None:
        return None
    variants = tuple(
        replace(state, current_instance_count=counts.get(state.variant_name, state.current_instance_count))
        for state in record.variants
    )
    reason = record.failure_reason
    if failure is not None:
        reason = (CANNOT_START + failure)[:_MAX_REASON]
    elif reason is not None and reason.startswith(CANNOT_START):
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
        await self._db(self.store.modify_endpoint, name, functools.partial(_with_counts, zero, None))
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
        await _release(runtime.setup.prepared)

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
                spec.variant_name: variant_pool(
                    f"{endpoint}/{spec.variant_name}",
                    ContainerConfig.from_environment(spec.container.environment),
                    self.settings.workers,
                )
                for spec in deployment.variants
            }
        except MoorageError as exc:  # a container setting that no longer parses
            raise DeploymentError(exc.message) from exc
        weights = {spec.variant_name: spec.weight for spec in deployment.variants}
        variants = {name: StartingVariant(name, pool) for name, pool in pools.items()}
        self.router.publish(EndpointRoute(endpoint=endpoint, variants=variants, weights=weights))
        return pools

    async def _start_variant(
        self, endpoint: str, spec: VariantSpec, pool: WorkerPool | None = None
    ) -> VariantRuntime:
        prepared = None
        try:
            prepared = await self._prepare(endpoint, spec)
            await self.backend.start()  # idempotent; a cluster's machines are known once it is joined
            runtime = VariantRuntime(
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
                pool=pool,
            )
            runtime.on_change = functools.partial(self._instances_changed, endpoint)
            await runtime.start()
            return runtime
        except BaseException as exc:
            if prepared is not None:  # nothing serves from its trees: the cache may free them
                await _release(prepared)
            if isinstance(exc, MoorageError):
                raise DeploymentError(f"Production variant {spec.variant_name}: {exc.message}") from exc
            raise

    async def _prepare(self, endpoint: str, spec: VariantSpec) -> PreparedModel:
        log_path = self.settings.logs_dir / endpoint / spec.variant_name / "deployment.log"
        write = _line_writer(log_path)
        source = model_source(spec.container)
        write(f"preparing model {spec.model_name} from {source.url}")
        # A model deleted while its endpoint serves holds no tree (DeleteModel released its holds).
        exists = await self._db(self.store.get_model, spec.model_name) is not None
        return await _on_daemon_thread(
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


async def _release(prepared: PreparedModel) -> None:
    """Release a prepared model's tree leases off the event loop (freeing a tree removes files)."""
    try:
        await asyncio.to_thread(prepared.release)
    except Exception:  # the variant is stopped either way; the cache budget frees the tree later
        log.exception("could not release the model trees of %s", prepared.model_dir)


def _counts(live: _Live) -> dict[str, int]:
    return {name: runtime.ready_instances for name, runtime in live.variants.items()}


async def _on_daemon_thread(call: Callable[[], _T]) -> _T:
    """Run blocking `call` on a thread of its own that does not hold the process open at exit.

    Artifact preparation may be stuck in a download for as long as ModelDataDownloadTimeoutInSeconds;
    a server asked to stop must not wait for it (its workspace is swept at the next start).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def run() -> None:
        try:
            settle = functools.partial(_succeed, future, call())
        except BaseException as exc:
            settle = functools.partial(_fail, future, exc)
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the server has stopped
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name="artifacts", daemon=True).start()
    return await future


def _succeed(future: asyncio.Future[_T], result: _T) -> None:
    if not future.done():  # a cancelled caller waits no more
        future.set_result(result)


def _fail(future: asyncio.Future[_T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _line_writer(path: Path) -> Callable[[str], None]:
    """Append lines to a log file from any thread (artifact preparation runs in worker threads)."""
    import threading
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def write(line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with lock, path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {line}\n")

    return write
