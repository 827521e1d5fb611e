"""One instance of a multi-model variant: the models loaded on it, and its memory budget.

Each loaded model is a worker process of its own, forked from the fork server like any worker: the
sandbox then confines it to its own model tree (docs/multi-model.md, "Isolation"), and a hit is a
plain request to an existing process. A first call downloads and extracts the archive (artifacts/,
cached by content and ETag), hands the spec to a spare worker forked ahead of time (worker/spare.py;
a fresh fork when none is ready) and waits for model_fn; calls that arrive meanwhile wait for the same
load. Before a load, the least recently used models with no request in flight are
unloaded until the new one fits the budget (and the optional model cap); a model that alone is larger
than the budget is refused. A worker that dies takes its model with it: the next call loads it again.
On Ray each loaded model is an actor of its own (a share of a CPU; no spares), which measures its own
memory on its node (docs/multi-model.md, "On Ray").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moorage.artifacts import ModelSource, PreparedModel, prepare_model
from moorage.artifacts.sources import format_bytes
from moorage.artifacts.trees import tree_bytes
from moorage.backends.base import Backend, WorkerHandle
from moorage.backends.local import LocalBackend
from moorage.backends.ray import RayBackend, RayWorker
from moorage.errors import (
    ArtifactSourceError,
    InstanceStartError,
    ModelError,
    MoorageError,
    ServiceUnavailable,
    ValidationError,
)
from moorage.multimodel.memory import private_bytes
from moorage.multimodel.metrics import MultiModelMetrics
from moorage.runtime.instance_types import InstancePlan
from moorage.runtime.pool import WorkerPool
from moorage.settings import MAX_PAYLOAD_BYTES, ArtifactPolicy, ContainerConfig, WorkerSettings
from moorage.worker.protocol import WorkerSpec
from moorage.worker.spare import Spare

__all__ = ["HostContext", "InsufficientMemory", "LoadedModel", "ModelHost"]

log = logging.getLogger("moorage.multimodel")


@dataclass(frozen=True)
class HostContext:
    """What every instance of one variant shares: where models come from and what they may use."""

    endpoint: str
    variant: str
    environment: dict[str, str]
    container: ContainerConfig
    cache_enabled: bool
    backend: Backend
    plan: InstancePlan
    workers: WorkerSettings
    budget_bytes: int
    max_models: int  # 0: no cap
    cache_dir: Path
    policy: ArtifactPolicy
    s3_local_root: Path | None
    logs_dir: Path
    startup_timeout_s: float
    load_timeout_s: float
    metrics: MultiModelMetrics
    log_stream_arn: str
    console_link: str
    # False for `serve-model --multi-model`: SageMaker's platform (or the user's router) decides what to
    # unload; a load that does not fit fails with InsufficientMemory (the container contract's 507).
    auto_evict: bool = True
    # Workers forked ahead of the next loads (MOORAGE_MME_SPARE_WORKERS; local backend with a fork server).
    spare_workers: int = 0


# What one model's Ray actor asks Ray for: a tenth of a CPU and no memory. Its instance's models share
# the instance type's threads (torch runs the profile's count); what limits how many are loaded is the
# memory budget, as on the local backend, not Ray's CPU count.
RAY_CPU_SHARE = 0.1


class InsufficientMemory(MoorageError):
    """A load that does not fit while nothing may be unloaded for it."""

    code = "InsufficientMemory"
    status = 507


@dataclass(eq=False)
class LoadedModel:
    target: str
    url: str
    prepared: PreparedModel
    handle: WorkerHandle
    pool: WorkerPool
    size_bytes: int  # the larger of its files and its worker's own pages (re-measured before evictions)
    files_bytes: int
    download_s: float
    load_s: float
    loaded_at: float  # epoch seconds
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    unloading: bool = False
    calls: int = 0  # calls begun; a worker grows only while it runs code
    measured_at_call: int = -1  # `calls` when size_bytes was last measured (-1: never)


class ModelHost:
    def __init__(self, instance_id: str, ctx: HostContext) -> None:
        self.instance_id = instance_id
        self.ctx = ctx
        self.models: dict[str, LoadedModel] = {}
        self.loading: dict[str, asyncio.Task[LoadedModel]] = {}
        self._reserved: dict[str, int] = {}  # loads in progress → the bytes they were promised
        self._leaving: dict[int, int] = {}  # workers being stopped (by id) → the memory they hold until gone
        self._typical = 0  # the last worker's measured memory: what a load reserves beyond its files
        self._changed = asyncio.Event()  # a call ended or a model went: room may have appeared
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers = 0
        self._closed = False
        self._spares: list[asyncio.Task[Spare | None]] = []
        self.log_path = ctx.logs_dir / ctx.endpoint / ctx.variant / f"{instance_id}.log"
        with contextlib.suppress(RuntimeError):  # no running loop: the first load forks them
            self._prefork()

    # What routing reads ---------------------------------------------------------------------------
    def ready(self, target: str) -> LoadedModel | None:
        model = self.models.get(target)
        return model if model is not None and not model.unloading else None

    @property
    def spares_ready(self) -> int:
        """Spare workers forked and alive, waiting for a model (moorage_mme_spare_workers)."""
        done = [task for task in self._spares if task.done() and not task.cancelled()]
        return sum(
            1 for task in done if task.exception() is None and (spare := task.result()) and spare.alive
        )

    @property
    def used_bytes(self) -> int:
        held = sum(m.size_bytes for m in self.models.values()) + sum(self._leaving.values())
        return held + sum(self._reserved.values())

    # Calls ------------------------------------------------------------------------------------------
    def load(self, target: str, url: str) -> asyncio.Task[LoadedModel]:
        """The load of `target` on this instance: the one under way, or a new one."""
        task = self.loading.get(target)
        if self._closed:
            raise ServiceUnavailable("The endpoint stopped serving this variant; retry the request.")
        if task is None:
            self._prefork()
            task = asyncio.get_running_loop().create_task(self._load_bounded(target, url))
            self.loading[target] = task
            task.add_done_callback(functools.partial(self._load_done, target))
        return task

    def begin(self, model: LoadedModel) -> None:
        model.in_flight += 1
        model.calls += 1
        model.last_used = time.monotonic()

    def end(self, model: LoadedModel) -> None:
        model.in_flight -= 1
        model.last_used = time.monotonic()
        self._changed.set()
        if not self.ctx.cache_enabled and model.in_flight == 0 and not model.unloading:
            self._spawn(self.unload(model, "ModelCacheSetting is Disabled: unloaded after its call"))
        elif model.measured_at_call < 0 and not model.unloading:
            self._spawn(self._measure_new(model))

    # Loading ----------------------------------------------------------------------------------------
    def _load_done(self, target: str, task: asyncio.Task[LoadedModel]) -> None:
        if self.loading.get(target) is task:
            del self.loading[target]
        if not task.cancelled():
            task.exception()  # retrieved here: a load nobody waits for any more must not warn

    async def _load_bounded(self, target: str, url: str) -> LoadedModel:
        try:
            return await asyncio.wait_for(self._load(target, url), self.ctx.load_timeout_s)
        except TimeoutError:
            raise self._load_error(
                target, f"loading took longer than {self.ctx.load_timeout_s:g} s (MOORAGE_MME_LOAD_TIMEOUT)"
            ) from None

    async def _load(self, target: str, url: str) -> LoadedModel:
        ctx = self.ctx
        started = time.monotonic()
        # The download and the re-measuring of the loaded models (which _make_room needs) overlap.
        (prepared, downloaded), _ = await asyncio.gather(self._prepare(target, url), self._remeasure())
        ctx.metrics.observe(ctx.endpoint, ctx.variant, "ModelDownloadingTime", downloaded - started)
        try:
            estimate = await asyncio.to_thread(tree_bytes, prepared.model_dir)
            if estimate > ctx.budget_bytes:
                refusal = ValidationError if ctx.auto_evict else InsufficientMemory
                raise refusal(
                    f"TargetModel {target} needs at least {format_bytes(estimate)} of memory (its extracted "
                    f"files), more than the {format_bytes(ctx.budget_bytes)} an instance of this endpoint "
                    "keeps for models; use a larger instance type or raise MOORAGE_MME_MEMORY_BYTES."
                )
            self._reserved[target] = max(estimate, self._typical)
            try:
                await self._make_room(target)
                handle = await self._start_worker(target, prepared)
            finally:
                self._reserved.pop(target, None)
            loaded = time.monotonic()
            size = max(estimate, self._typical)  # measured after the answer (_measure_new)
            pool = WorkerPool(
                f"{ctx.endpoint}/{ctx.variant}/{target}",
                timeout_s=ctx.container.timeout_s,
                max_queue=ctx.workers.max_queue_per_variant,
            )
            pool.add(handle, self.instance_id)
            model = LoadedModel(
                target=target,
                url=url,
                prepared=prepared,
                handle=handle,
                pool=pool,
                size_bytes=size,
                files_bytes=estimate,
                download_s=downloaded - started,
                load_s=loaded - downloaded,
                loaded_at=time.time(),
            )
        except BaseException:
            await asyncio.to_thread(prepared.release)
            raise
        ctx.metrics.observe(ctx.endpoint, ctx.variant, "ModelLoadingTime", model.load_s)
        self.models[target] = model
        self._spawn(self._watch(model))
        log.info(
            "%s/%s: loaded %s on %s in %.3f s (download %.3f s, %s)",
            ctx.endpoint,
            ctx.variant,
            target,
            self.instance_id,
            model.load_s,
            model.download_s,
            format_bytes(size),
        )
        return model

    async def _measure_new(self, model: LoadedModel) -> None:
        """Measure a model once its first call has ended (the measuring thread would otherwise compete
        with that call for the GIL and a core); if it is larger than what was reserved for it, make room
        after the fact, as a load does before (never unloading it). A model loaded and never called is
        measured by the next load's _remeasure."""
        model.measured_at_call = model.calls
        size = await _worker_bytes(model.handle)
        if self.models.get(model.target) is not model:
            return
        model.size_bytes = max(model.files_bytes, size)
        self._typical = model.size_bytes
        if self.used_bytes > self.ctx.budget_bytes:
            await self._evict(keep=model)

    async def _prepare(self, target: str, url: str) -> tuple[PreparedModel, float]:
        """The model fetched, verified and extracted, and when that finished (time.monotonic())."""
        ctx = self.ctx
        call = functools.partial(
            prepare_model,
            ModelSource(url),
            submit_directory=ctx.environment.get("SAGEMAKER_SUBMIT_DIRECTORY"),
            cache_dir=ctx.cache_dir,
            policy=ctx.policy,
            s3_local_root=ctx.s3_local_root,
            log=lambda line: log.info("%s/%s %s: %s", ctx.endpoint, ctx.variant, target, line),
            timeout_s=ctx.load_timeout_s,
        )
        try:
            return await asyncio.to_thread(call), time.monotonic()
        except ArtifactSourceError as exc:
            if "does not exist" in exc.message:
                raise ValidationError(_missing(url)) from exc
            raise self._load_error(target, exc.message) from exc
        except MoorageError as exc:
            raise self._load_error(target, exc.message) from exc

    async def _start_worker(self, target: str, prepared: PreparedModel) -> WorkerHandle:
        ctx, plan, container = self.ctx, self.ctx.plan, self.ctx.container
        self._workers += 1
        spec = WorkerSpec(
            endpoint=ctx.endpoint,
            variant=ctx.variant,
            instance_id=self.instance_id,
            worker_index=self._workers,
            model_dir=str(prepared.model_dir),
            code_dir=str(prepared.code_dir) if prepared.code_dir else None,
            deps_dir=str(prepared.deps_dir) if prepared.deps_dir else None,
            program=container.program,
            environment=dict(ctx.environment),
            default_accept=container.default_accept,
            max_response_bytes=MAX_PAYLOAD_BYTES,
            npy_allow_pickle=ctx.workers.npy_allow_pickle,
            tracebacks_in_errors=ctx.workers.tracebacks_in_errors,
            torch_threads=plan.fixed_threads,
            max_threads=plan.max_threads,
            memory_limit_bytes=plan.memory_limit_bytes,
        )
        with _appended(self.log_path) as write:
            write(f"loading TargetModel {target} as worker {self._workers}")
        handle = await self._spawn_worker(spec)
        try:
            await handle.wait_ready(ctx.startup_timeout_s)
        except BaseException as exc:
            handle.kill("its model did not load")
            self._prefork()
            if isinstance(exc, InstanceStartError):
                log.error(
                    "%s/%s: TargetModel %s did not load: %s", ctx.endpoint, ctx.variant, target, exc.message
                )
                raise self._load_error(target, exc.message) from exc
            raise
        self._prefork()  # after model_fn, so the next spare's fork does not compete with this load
        return handle

    async def _spawn_worker(self, spec: WorkerSpec) -> WorkerHandle:
        """A spare forked ahead of time given this spec, or (none ready, or it died) a fresh fork."""
        backend, profile = self.ctx.backend, self.ctx.plan.profile
        while self._spares:
            task = self._spares.pop(0)
            try:
                spare = await task  # still forking: waiting for it is no slower than forking anew
            except Exception as exc:
                log.warning("%s/%s: a spare worker could not be forked: %s", spec.endpoint, spec.variant, exc)
                continue
            if spare is None or not spare.alive or not isinstance(backend, LocalBackend):
                if spare is not None:
                    spare.discard()
                continue
            try:
                return await backend.spawn_worker(spec, profile, self.log_path, spare=spare)
            except OSError as exc:  # it died while waiting (its socket is closed): fork one now
                log.warning("%s/%s: a spare worker was gone (%s)", spec.endpoint, spec.variant, exc)
        if isinstance(backend, RayBackend):
            # One actor per model, anywhere in the cluster: a share of a CPU, no Ray memory (the budget
            # above counts what each actor reports it holds).
            return await backend.spawn_worker(spec, profile, self.log_path, cpu_share=RAY_CPU_SHARE)
        return await backend.spawn_worker(spec, profile, self.log_path)

    def _prefork(self) -> None:
        """Fork spares up to MOORAGE_MME_SPARE_WORKERS. A spare runs no model code until it is given
        one model's spec, and is then confined to that model's tree like any worker (worker/spare.py)."""
        backend = self.ctx.backend
        if self._closed or not isinstance(backend, LocalBackend) or backend.forkserver is None:
            return  # Ray, or workers started fresh (MOORAGE_WORKER_START=spawn): a worker per load
        loop = asyncio.get_running_loop()
        while len(self._spares) < self.ctx.spare_workers:
            self._spares.append(loop.create_task(backend.spawn_spare(self.log_path)))

    async def _make_room(self, target: str) -> None:
        """Unload idle models, least recently used first, until the loads under way (their bytes are
        reserved) fit; while the rest all have requests in flight, wait for one to end."""
        while not await self._evict(keep=None):
            if not self.ctx.auto_evict:
                need = self._reserved.get(target, 0)
                raise InsufficientMemory(
                    f"Loading {target} needs about {format_bytes(need)}; with "
                    f"{format_bytes(self.used_bytes - need)} in use that is more than the "
                    f"{format_bytes(self.ctx.budget_bytes)} of memory for models. Unload a model first."
                )
            self._changed.clear()
            log.info(
                "%s/%s: waiting for a call to end on %s to make room for %s",
                self.ctx.endpoint,
                self.ctx.variant,
                self.instance_id,
                target,
            )
            await self._changed.wait()

    async def _remeasure(self) -> None:
        """Workers grow after their first calls: count what each holds now, not what it held when loaded.
        Only those that ran a call since they were last measured (reading a worker's page counts costs
        milliseconds, and with tens of models loaded that would add up on every load)."""
        models = [m for m in self.models.values() if not m.unloading and m.calls != m.measured_at_call]
        for model in models:
            model.measured_at_call = model.calls
        sizes = await asyncio.gather(*(_worker_bytes(m.handle) for m in models))
        for model, size in zip(models, sizes, strict=True):
            model.size_bytes = max(model.files_bytes, size)

    async def _evict(self, keep: LoadedModel | None) -> bool:
        """Unload idle LRU models (never `keep`) until the loaded and reserved models fit the budget and
        the cap; False when what is left is all busy."""
        ctx = self.ctx
        while True:
            loaded = [m for m in self.models.values() if not m.unloading]
            fits = self.used_bytes <= ctx.budget_bytes and (
                ctx.max_models == 0 or len(loaded) + len(self._reserved) <= ctx.max_models
            )
            if fits or not ctx.auto_evict:
                return fits
            idle = [m for m in loaded if m.in_flight == 0 and m is not keep]
            if not idle:
                return False
            victim = min(idle, key=lambda m: m.last_used)
            await self.unload(victim, "least recently used, to make room")

    # Unloading --------------------------------------------------------------------------------------
    async def unload(self, model: LoadedModel, why: str) -> None:
        if model.unloading or self.models.get(model.target) is not model:
            return
        model.unloading = True
        started = time.monotonic()
        del self.models[model.target]
        self._leaving[id(model)] = model.size_bytes  # still held until the process is gone
        try:
            model.pool.stop_accepting()
            await model.pool.drain(self.ctx.workers.drain_grace_s)
            model.pool.abandon(f"TargetModel {model.target} was unloaded; retry the request.")
            await model.handle.stop(min(self.ctx.workers.drain_grace_s, 5.0))
        finally:
            del self._leaving[id(model)]
        await asyncio.to_thread(model.prepared.release)
        self.ctx.metrics.observe(
            self.ctx.endpoint, self.ctx.variant, "ModelUnloadingTime", time.monotonic() - started
        )
        log.info(
            "%s/%s: unloaded %s from %s (%s)",
            self.ctx.endpoint,
            self.ctx.variant,
            model.target,
            self.instance_id,
            why,
        )
        self._changed.set()

    async def _watch(self, model: LoadedModel) -> None:
        """A worker that dies takes its model with it; the next call for it loads it again."""
        how = await model.handle.wait_gone()
        if self.models.get(model.target) is model:
            del self.models[model.target]
            model.pool.remove(model.handle)
            model.pool.expect_workers(False, f"The worker of TargetModel {model.target} exited; retry.")
            log.error(
                "%s/%s: the worker of %s exited (%s); it is loaded again on its next call",
                self.ctx.endpoint,
                self.ctx.variant,
                model.target,
                how,
            )
            await asyncio.to_thread(model.prepared.release)
            self._changed.set()

    async def close(self, grace_s: float) -> None:
        self._closed = True
        for loading in list(self.loading.values()):
            loading.cancel()
        spares, self._spares = self._spares, []
        for outcome in await asyncio.gather(*spares, return_exceptions=True):
            if isinstance(outcome, Spare):
                outcome.discard()
        await asyncio.gather(
            *(self.unload(m, "the variant stopped") for m in list(self.models.values())),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _load_error(self, target: str, reason: str) -> ModelError:
        """ModelError (424), as for any container failure; the next call tries the load again."""
        body = f"Failed to load TargetModel {target}: {reason.splitlines()[0] if reason else 'unknown error'}"
        return ModelError(
            f'Received server error (500) from model with message "{body}". {self.ctx.console_link}',
            original_status=500,
            original_message=body,
            log_stream_arn=self.ctx.log_stream_arn,
        )


def _missing(url: str) -> str:
    """SageMaker's words for a TargetModel with no object behind it."""
    if url.startswith("s3://"):
        bucket, _, key = url.removeprefix("s3://").partition("/")
        where = f"bucket: {bucket}, key: {key}"
    else:
        where = url
    return (
        f"Failed to download model data({where}). Please ensure that there is an object located at the URL "
        "and that the role passed to CreateModel has permissions to download the model."
    )


async def _worker_bytes(handle: WorkerHandle) -> int:
    """What a model's worker holds alone: a Ray actor measures itself on its node; a local worker is read
    by pid from this machine's /proc."""
    if isinstance(handle, RayWorker):
        return await handle.private_bytes()
    return await asyncio.to_thread(private_bytes, handle.pid)


@contextlib.contextmanager
def _appended(path: Path) -> Iterator[Callable[[str], None]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:

        def write(line: str) -> None:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

        yield write
