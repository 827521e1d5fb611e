"""A serverless variant at run time: zero instances while idle, one started when a request arrives.

The variant is an ordinary `VariantRuntime` whose instance count moves by itself:

- a request to a variant with no instance waits in the variant's pool (which keeps expecting workers)
  while one instance starts: a fork of the warm fork server and `model_fn`, the model tree being
  cached. The wait counts toward the request's invocation timeout; nothing fails meanwhile;
- after `MOORAGE_SERVERLESS_IDLE_SECONDS` without a request in flight, the variant scales in to its
  ProvisionedConcurrency (0 by default), which is kept warm;
- more than MaxConcurrency requests in flight (running or waiting) are refused with
  ThrottlingException, as SageMaker throttles a serverless endpoint above its MaxConcurrency;
- MemorySizeInMB is each worker's memory limit, counted above what it shares with the fork server
  (the worker applies it: MOORAGE_SERVERLESS_MEMORY_MB, worker/main.py).

Cold starts are logged with their ModelSetupTime and counted in /metrics (serverless/metrics.py).
The backend is not involved: instances start and stop through `scale_to`, on local and Ray alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from moorage.backends.base import Backend
from moorage.control.records import VariantSpec
from moorage.errors import ThrottlingException
from moorage.runtime.outcomes import Outcome
from moorage.runtime.pool import WorkerPool
from moorage.runtime.variant import VariantRuntime, VariantSetup, variant_pool
from moorage.serverless.config import ServerlessConfig
from moorage.serverless.metrics import ServerlessMetrics
from moorage.settings import ContainerConfig, WorkerSettings
from moorage.worker.memory import SERVERLESS_MEMORY_ENV as MEMORY_ENV  # the worker applies it
from moorage.worker.protocol import Invoke

__all__ = ["MEMORY_ENV", "ServerlessPool", "ServerlessVariant", "pool_for", "runtime_for"]

log = logging.getLogger("moorage.serverless")


class ServerlessPool(WorkerPool):
    """A serverless variant's queue: refuses past MaxConcurrency, and reports demand and quiet."""

    def __init__(self, name: str, *, max_concurrency: int, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.max_concurrency = max_concurrency
        self.on_demand: Callable[[], None] = lambda: None  # a request arrived
        self.on_quiet: Callable[[], None] = lambda: None  # the last request in flight finished

    def submit(self, message: Invoke, timeout_s: float | None = None) -> asyncio.Future[Outcome]:
        if self.in_flight >= self.max_concurrency:
            raise ThrottlingException(
                f"The serverless endpoint variant {self.name} is already processing its MaxConcurrency of "
                f"{self.max_concurrency} concurrent invocations; retry later or raise MaxConcurrency."
            )
        future = super().submit(message, timeout_s)
        future.add_done_callback(self._finished)  # after the pool's own, which counts in_flight down
        self.on_demand()
        return future

    def adopt(self, waiting: list[Any]) -> None:
        super().adopt(waiting)
        for item in waiting:
            item.future.add_done_callback(self._finished)
        if waiting:
            self.on_demand()

    def _finished(self, future: asyncio.Future[Outcome]) -> None:
        if self.in_flight == 0:
            self.on_quiet()


def pool_for(spec: VariantSpec, name: str, container: ContainerConfig, workers: WorkerSettings) -> WorkerPool:
    """The request queue of a variant: a serverless one's, or the ordinary one."""
    if spec.serverless is None:
        return variant_pool(name, container, workers)
    return ServerlessPool(
        name,
        max_concurrency=ServerlessConfig.of(spec.serverless).max_concurrency,
        timeout_s=container.timeout_s,
        max_queue=workers.max_queue_per_variant,
        batch_size=container.batch_size,
        max_batch_delay_s=container.max_batch_delay_ms / 1000.0,
    )


def runtime_for(
    spec: VariantSpec,
    setup: VariantSetup,
    backend: Backend,
    workers: WorkerSettings,
    pool: WorkerPool | None,
    *,
    idle_s: float,
    metrics: ServerlessMetrics,
) -> VariantRuntime:
    """The runtime of a variant: a serverless one's, or the ordinary one."""
    if spec.serverless is None:
        return VariantRuntime(setup, backend, workers, pool=pool)
    if pool is None:
        pool = pool_for(spec, f"{setup.endpoint}/{setup.variant}", setup.container, workers)
    assert isinstance(pool, ServerlessPool), "a serverless variant is routed to a ServerlessPool"
    config = ServerlessConfig.of(spec.serverless)
    return ServerlessVariant(setup, backend, workers, pool, config=config, idle_s=idle_s, metrics=metrics)


class ServerlessVariant(VariantRuntime):
    def __init__(
        self,
        setup: VariantSetup,
        backend: Backend,
        workers: WorkerSettings,
        pool: ServerlessPool,
        *,
        config: ServerlessConfig,
        idle_s: float,
        metrics: ServerlessMetrics,
    ) -> None:
        environment = {**setup.environment, MEMORY_ENV: str(config.memory_mb)}
        # One worker per instance unless the model asks for more (SAGEMAKER_MODEL_SERVER_WORKERS): the
        # memory size is one container's, and MaxConcurrency bounds the requests, not the workers.
        environment.setdefault("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
        # At creation (and after a restart) one instance starts, so a model that cannot load fails the
        # deployment at once; the idle timer then takes the variant down to ProvisionedConcurrency.
        setup = replace(setup, environment=environment, instance_count=max(1, config.provisioned_concurrency))
        super().__init__(setup, backend, workers, memory_limit_override=0, pool=pool)
        self.config = config
        self.idle_s = idle_s
        self.metrics = metrics
        self._scaling = asyncio.Lock()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._cold: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        pool.on_demand = self._demand
        pool.on_quiet = self._quiet

    @property
    def _label(self) -> str:
        return f"{self.setup.endpoint}/{self.setup.variant}"

    async def start(self) -> None:
        await super().start()
        log.info(
            "%s: serverless (MemorySizeInMB %d, MaxConcurrency %d, ProvisionedConcurrency %d); idle "
            "instances stop after %g s",
            self._label,
            self.config.memory_mb,
            self.config.max_concurrency,
            self.config.provisioned_concurrency,
            self.idle_s,
        )
        if self.pool.in_flight == 0:
            self._quiet()

    async def stop(
        self, grace_s: float, reason: str = "The endpoint stopped serving this variant; retry the request."
    ) -> None:
        self._stopping = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().stop(grace_s, reason)

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Demand: a request arrived --------------------------------------------------------------------
    def _demand(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._stopping or not self.started or self.groups or self._cold is not None:
            return
        self._cold = self._spawn(self._cold_start())

    async def _cold_start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._scaling:
                if self.groups or self._stopping:
                    return
                began = loop.time()
                log.info("%s: cold start: a request arrived with no instance running", self._label)
                try:
                    await self.scale_to(1)
                except Exception as exc:
                    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                    log.error("%s: cold start failed: %s", self._label, text)
                    # Fail what waits for this instance (503 with the cause), then wait for the next call.
                    reason = (
                        f"The serverless instance of {self._label} could not start: {text.splitlines()[0]}"
                    )
                    self.pool.expect_workers(False, reason)
                    self.pool.expect_workers(True)
                    return
                setup_s = loop.time() - began
                self.on_change()  # the new instance counts only now that it is in `groups`
                self.metrics.cold_start(self.setup.endpoint, self.setup.variant, setup_s)
                log.info("%s: cold start done; ModelSetupTime %.3f s", self._label, setup_s)
        finally:
            self._cold = None
            if self.pool.in_flight == 0:
                self._quiet()

    # Quiet: nothing in flight ------------------------------------------------------------------------
    def _quiet(self) -> None:
        if self._stopping:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(self.idle_s, self._idle_due)

    def _idle_due(self) -> None:
        self._idle_timer = None
        if self._stopping or self.pool.in_flight or len(self.groups) <= self.config.provisioned_concurrency:
            return
        self._spawn(self._scale_in())

    async def _scale_in(self) -> None:
        async with self._scaling:
            keep = self.config.provisioned_concurrency
            if self._stopping or self.pool.in_flight or len(self.groups) <= keep:
                return
            log.info(
                "%s: idle for %g s; stopping %d instance(s), keeping %d warm",
                self._label,
                self.idle_s,
                len(self.groups) - keep,
                keep,
            )
            await self.scale_to(keep)
