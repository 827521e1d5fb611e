"""A production variant at run time: its instances, the pool they serve from, and their health pings.

Built from a prepared model and the variant's settings; used the same way by `moorage serve` (one per
variant of every endpoint) and by `moorage serve-model` (a single one, the container's). Its pool may
be made first (`variant_pool`) and routed to before the model is prepared, so that requests to an
endpoint whose instances are restarting wait for them instead of failing.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moorage.artifacts import PreparedModel
from moorage.backends.base import Backend, WorkerHandle, WorkerLost
from moorage.errors import InstanceStartError
from moorage.runtime.instance_types import InstancePlan, plan_instance
from moorage.runtime.pool import WorkerPool
from moorage.runtime.supervisor import InstanceGroup
from moorage.settings import MAX_PAYLOAD_BYTES, ContainerConfig, WorkerSettings
from moorage.worker.protocol import WorkerSpec

__all__ = ["VariantRuntime", "VariantSetup", "variant_pool"]

log = logging.getLogger("moorage.runtime.variant")

_gpu_counter = itertools.count()


@dataclass(frozen=True)
class VariantSetup:
    endpoint: str
    variant: str
    prepared: PreparedModel
    environment: dict[str, str]
    instance_type: str
    instance_count: int
    logs_dir: Path
    startup_timeout_s: float
    log_path: Path | None = None  # one file for every instance's output; None: a file per instance

    @functools.cached_property
    def container(self) -> ContainerConfig:
        return ContainerConfig.from_environment(self.environment)


def variant_pool(name: str, container: ContainerConfig, workers: WorkerSettings) -> WorkerPool:
    """The request queue of one variant, from its container settings (timeout, batching)."""
    return WorkerPool(
        name,
        timeout_s=container.timeout_s,
        max_queue=workers.max_queue_per_variant,
        batch_size=container.batch_size,
        max_batch_delay_s=container.max_batch_delay_ms / 1000.0,
    )


def _stopped_text(variant: str, error: BaseException) -> str:
    """The 503 that requests waiting for instances that could not start get: the cause, in one line."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return f"The instances of production variant {variant} could not start: {text.splitlines()[0]}"


class VariantRuntime:
    def __init__(
        self,
        setup: VariantSetup,
        backend: Backend,
        workers: WorkerSettings,
        memory_limit_override: int | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.setup = setup
        self.backend = backend
        self.workers = workers
        if memory_limit_override is None:
            memory_limit_override = workers.memory_limit_bytes  # MOORAGE_WORKER_MEMORY_LIMIT, if set
        self.plan: InstancePlan = plan_instance(
            setup.instance_type,
            setup.container,
            backend.capacity(),
            memory_limit_override=memory_limit_override,
        )
        container = setup.container
        if container.ts_model_settings:
            # Reproduced from SageMaker's PyTorch toolkit (docs/compatibility.md); say it, since a
            # SAGEMAKER_MODEL_SERVER_WORKERS that is not used would otherwise be a mystery.
            log.info(
                "%s/%s: %s set, so TorchServe's per-model settings apply as in SageMaker: %d worker(s) "
                "(SAGEMAKER_TS_MIN_WORKERS, else 1) and a %g s response timeout "
                "(SAGEMAKER_TS_RESPONSE_TIMEOUT, else 60)%s",
                setup.endpoint,
                setup.variant,
                ", ".join(container.ts_model_settings),
                self.plan.workers,
                container.timeout_s,
                f"; not used: {', '.join(container.superseded)}" if container.superseded else "",
            )
        if pool is None:
            pool = variant_pool(f"{setup.endpoint}/{setup.variant}", container, workers)
        self.pool = pool
        self.groups: list[InstanceGroup] = []
        self.started = False
        # Called when a worker of this variant becomes ready or goes away (the reconciler reports it).
        self.on_change: Callable[[], None] = lambda: None
        self._ping_task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.setup.variant

    @property
    def ready_instances(self) -> int:
        return sum(1 for group in self.groups if group.ready_workers > 0)

    @property
    def start_failure(self) -> str | None:
        """Why an instance does not serve, while it has no ready worker and replacing them keeps failing."""
        return next(
            (group.last_error for group in self.groups if group.last_error and not group.ready_workers),
            None,
        )

    @property
    def healthy(self) -> bool:
        """What /ping reports: every worker loaded once, and at least one serving now."""
        return self.started and self.pool.ready_count > 0

    def _specs(self, instance_id: str) -> list[WorkerSpec]:
        setup, plan, container = self.setup, self.plan, self.setup.container
        specs = []
        for index in range(plan.workers):
            gpu_id = next(_gpu_counter) % max(1, self.backend.capacity().gpus) if plan.gpus else None
            specs.append(
                WorkerSpec(
                    endpoint=setup.endpoint,
                    variant=setup.variant,
                    instance_id=instance_id,
                    worker_index=index,
                    model_dir=str(setup.prepared.model_dir),
                    code_dir=str(setup.prepared.code_dir) if setup.prepared.code_dir else None,
                    deps_dir=str(setup.prepared.deps_dir) if setup.prepared.deps_dir else None,
                    program=container.program,
                    environment=dict(setup.environment),
                    default_accept=container.default_accept,
                    max_response_bytes=MAX_PAYLOAD_BYTES,
                    npy_allow_pickle=self.workers.npy_allow_pickle,
                    tracebacks_in_errors=self.workers.tracebacks_in_errors,
                    batch_size=container.batch_size,
                    torch_threads=plan.fixed_threads,
                    max_threads=plan.max_threads,
                    gpu_id=gpu_id,
                    memory_limit_bytes=plan.memory_limit_bytes,
                )
            )
        return specs

    def _instance_id(self) -> str:
        """A new instance's id, which names its log stream (a batch variant may reuse one)."""
        return f"i-{uuid.uuid4().hex[:17]}"

    def _new_group(self) -> InstanceGroup:
        instance_id = self._instance_id()
        log_path = self.setup.log_path or (
            self.setup.logs_dir / self.setup.endpoint / self.setup.variant / f"{instance_id}.log"
        )
        return InstanceGroup(
            instance_id=instance_id,
            specs=self._specs(instance_id),
            backend=self.backend,
            profile=self.plan.profile,
            pool=self.pool,
            log_path=log_path,
            startup_timeout_s=self.setup.startup_timeout_s,
            on_change=lambda: self.on_change(),
        )

    async def start(self) -> None:
        """Start every instance; InstanceStartError (and nothing left running) if any cannot load."""
        try:
            await self.scale_to(self.setup.instance_count)
        except BaseException as exc:
            await self.stop(0.0, _stopped_text(self.name, exc))
            raise
        self.started = True
        self._ping_task = asyncio.get_running_loop().create_task(self._ping_loop())

    async def scale_to(self, count: int) -> None:
        if count > len(self.groups):
            new = [self._new_group() for _ in range(count - len(self.groups))]
            self.pool.expect_workers(True)
            results = await asyncio.gather(*(group.start() for group in new), return_exceptions=True)
            started = [g for g, r in zip(new, results, strict=True) if not isinstance(r, BaseException)]
            self.groups.extend(started)
            failure = next((r for r in results if isinstance(r, BaseException)), None)
            if failure is not None:
                if isinstance(failure, InstanceStartError):
                    raise failure
                raise InstanceStartError(str(failure)) from failure
        elif count < len(self.groups):
            retired, self.groups = self.groups[count:], self.groups[:count]
            await asyncio.gather(*(self._retire(group) for group in retired))

    async def _retire(self, group: InstanceGroup) -> None:
        """Scale in one instance: let its workers finish what they run, then stop them."""
        handles = list(group.handles.values())
        await self.pool.retire(handles, self.workers.drain_grace_s)
        await group.stop(self.workers.drain_grace_s)

    async def stop(
        self, grace_s: float, reason: str = "The endpoint stopped serving this variant; retry the request."
    ) -> None:
        """Take no more requests, serve those accepted within `grace_s`, then stop every worker;
        requests still waiting for a worker fail with 503 and `reason`."""
        if self._ping_task is not None:
            self._ping_task.cancel()
        self.pool.stop_accepting()
        await self.pool.drain(grace_s)
        self.pool.abandon(reason)
        await asyncio.gather(*(group.stop(min(grace_s, 5.0)) for group in self.groups))
        self.groups = []

    async def _ping_loop(self) -> None:
        interval = self.workers.ping_interval_s
        while True:
            await asyncio.sleep(interval)
            handles = self.pool.reserve_idle(interval)
            await asyncio.gather(*(self._ping(handle) for handle in handles))

    async def _ping(self, worker: WorkerHandle) -> None:
        try:
            await worker.ping(self.workers.ping_timeout_s)
        except TimeoutError:
            log.error(
                "%s did not answer a health ping within %.1f s; replacing it",
                worker.name,
                self.workers.ping_timeout_s,
            )
            worker.kill(f"it did not answer a health ping within {self.workers.ping_timeout_s:g} s")
        except WorkerLost:
            pass
        finally:
            self.pool.release(worker)
