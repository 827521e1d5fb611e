"""One instance: its worker processes, started together and each replaced when it dies.

Liveness, not existence (STYLE habit 14): a worker counts once it has loaded the model and said so;
a worker that exits, is killed for running past the invocation timeout, or misses a health ping is
replaced, with exponential backoff when replacements keep failing (a model that crashes at load must
not spin the machine). Every worker this group started is tracked until it is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from moorage.backends.base import Backend, PlacementProfile, WorkerHandle
from moorage.errors import InstanceStartError
from moorage.runtime.pool import WorkerPool
from moorage.worker.protocol import WorkerSpec

__all__ = ["InstanceGroup"]

log = logging.getLogger("moorage.runtime.supervisor")

_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 30.0


class InstanceGroup:
    def __init__(
        self,
        *,
        instance_id: str,
        specs: list[WorkerSpec],
        backend: Backend,
        profile: PlacementProfile,
        pool: WorkerPool,
        log_path: Path,
        startup_timeout_s: float,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.instance_id = instance_id
        self.specs = specs
        self.backend = backend
        self.profile = profile
        self.pool = pool
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.on_change = on_change
        self.handles: dict[int, WorkerHandle] = {}  # worker index → live handle
        self.consecutive_failures = 0
        self.last_error: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def ready_workers(self) -> int:
        return len(self.handles)

    async def start(self) -> None:
        """Start every worker and wait for each to load the model; on any failure stop them all."""
        results = await asyncio.gather(
            *(self._start_worker(spec) for spec in self.specs), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            self._stopping = True
            await asyncio.gather(*(r.stop(0.5) for r in results if not isinstance(r, BaseException)))
            if isinstance(failure, InstanceStartError):
                raise failure
            raise InstanceStartError(f"A worker could not be started: {failure}") from failure
        for spec, handle in zip(self.specs, results, strict=True):
            assert not isinstance(handle, BaseException)
            self._admit(spec, handle)

    async def _start_worker(self, spec: WorkerSpec) -> WorkerHandle:
        handle = await self.backend.spawn_worker(spec, self.profile, self.log_path)
        try:
            info = await handle.wait_ready(self.startup_timeout_s)
        except BaseException:
            handle.kill("it failed to load the model")
            await handle.wait_gone()
            raise
        log.info("%s ready in %.2f s (pid %s, %s)", handle.name, info.load_seconds, info.pid, info.device)
        return handle

    def _admit(self, spec: WorkerSpec, handle: WorkerHandle) -> None:
        self.handles[spec.worker_index] = handle
        self.pool.add(handle, self.instance_id)
        self._spawn_task(self._watch(spec, handle))
        self.on_change()

    def _spawn_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, spec: WorkerSpec, handle: WorkerHandle) -> None:
        detail = await handle.wait_gone()
        self.pool.remove(handle)
        if self.handles.get(spec.worker_index) is handle:
            del self.handles[spec.worker_index]
        self.on_change()
        if self._stopping:
            return
        log.warning("%s is gone: %s; replacing it", handle.name, detail)
        await self._replace(spec)

    async def _replace(self, spec: WorkerSpec) -> None:
        while not self._stopping:
            if self.consecutive_failures:
                delay = min(_BACKOFF_MAX_S, _BACKOFF_START_S * 2 ** (self.consecutive_failures - 1))
                await asyncio.sleep(delay)
                if self._stopping:
                    return
            try:
                handle = await self._start_worker(spec)
            except Exception as exc:
                self.consecutive_failures += 1
                self.last_error = str(exc)
                log.error(
                    "replacing worker %d of instance %s failed (%d in a row): %s",
                    spec.worker_index,
                    self.instance_id,
                    self.consecutive_failures,
                    exc,
                )
                self.on_change()
                continue
            if self._stopping:
                await handle.stop(0.5)
                return
            self.consecutive_failures = 0
            self.last_error = None
            self._admit(spec, handle)
            return

    async def stop(self, grace_s: float) -> None:
        """Stop replacing, then stop every worker (each finishes what it runs, within `grace_s`)."""
        self._stopping = True
        handles = list(self.handles.values())
        await asyncio.gather(*(handle.stop(grace_s) for handle in handles))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.handles.clear()
