"""Batch transform as `moorage serve` runs it: the store, the runner and the control-plane operations.

`launch/serve.py` opens it beside the reconciler, adds `operations` to the SageMaker control plane,
calls `start` once the server listens (InProgress jobs resume) and `close` when it stops.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from moorage.backends.base import Backend
from moorage.control.arns import ControlContext
from moorage.runtime.metrics import Metrics
from moorage.s3io import open_storage
from moorage.settings import Settings
from moorage.transform.operations import Operation, TransformApi
from moorage.transform.runner import TransformRunner
from moorage.transform.store import TransformStore

__all__ = ["TransformService", "open_transform"]


@dataclass
class TransformService:
    store: TransformStore
    runner: TransformRunner
    api: TransformApi
    store_executor: Executor

    @property
    def operations(self) -> dict[str, Operation]:
        return self.api.operations()

    async def start(self) -> None:
        await self.runner.recover()

    async def close(self) -> None:
        await self.runner.close()
        await asyncio.get_running_loop().run_in_executor(self.store_executor, self.store.close)


async def open_transform(
    settings: Settings,
    ctx: ControlContext,
    *,
    store_executor: Executor,
    backend: Backend,
    s3_local_root: Path | None,
    external_s3: str | None,
    metrics: Metrics,
) -> TransformService:
    """`s3_local_root`: the embedded store's directory when jobs read and write it (else `external_s3`,
    or AWS itself when that is None too)."""
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(
        store_executor, lambda: TransformStore(settings.db_path, clock=ctx.clock)
    )
    storage = open_storage(s3_local_root, external_s3, settings.data_dir / "transform" / "staging")
    runner = TransformRunner(
        store=store,
        store_executor=store_executor,
        backend=backend,
        settings=settings,
        storage=storage,
        s3_local_root=s3_local_root,
    )
    metrics.add_renderer(runner.render_metrics)
    api = TransformApi(store, runner.notify, runner.progress, embedded_s3=s3_local_root is not None)
    return TransformService(store, runner, api, store_executor)
