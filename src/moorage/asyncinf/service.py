"""Async inference as `moorage serve` runs it: the queue store, the dispatcher and the HTTP edge.

`launch/serve.py` opens it once the router and metrics exist, hands `api` to the main app, calls
`start` once the server listens (requests a previous run left are taken up again) and `close` when it
stops (requests cut short stay in the queue and run after the next start).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from moorage.api.async_runtime import AsyncRuntimeApi
from moorage.asyncinf.bodies import BodyFiles
from moorage.asyncinf.dispatcher import Dispatcher
from moorage.asyncinf.endpoints import AsyncEndpoints
from moorage.asyncinf.inputs import EmbeddedInputs, ExternalInputs, InputReader
from moorage.asyncinf.metrics import AsyncMetrics
from moorage.asyncinf.notify import Notifier
from moorage.asyncinf.store import QueueStore
from moorage.control.store import Store
from moorage.runtime.metrics import Metrics
from moorage.runtime.router import Router
from moorage.s3io import open_storage
from moorage.settings import Settings

__all__ = ["AsyncService", "open_async"]

QUEUE_FILE = "async.sqlite3"


@dataclass
class AsyncService:
    store: QueueStore
    dispatcher: Dispatcher
    api: AsyncRuntimeApi
    executor: ThreadPoolExecutor

    async def start(self) -> None:
        await self.dispatcher.start()

    async def close(self, grace_s: float) -> None:
        await self.dispatcher.close(grace_s)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.store.close)
        self.executor.shutdown(wait=True)


async def open_async(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    control_store: Store,
    control_executor: Executor,
    router: Router,
    metrics: Metrics,
    s3_local_root: Path | None,
    external_s3: str | None,
) -> AsyncService:
    """`s3_local_root`: the embedded store's directory when inputs and results live there (else
    `external_s3`, or AWS itself when that is None too)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="async-queue")
    store = await asyncio.get_running_loop().run_in_executor(
        executor, QueueStore, settings.data_dir / QUEUE_FILE
    )
    storage = open_storage(s3_local_root, external_s3, settings.data_dir / "async" / "staging")
    inputs: InputReader = (
        EmbeddedInputs(s3_local_root) if s3_local_root is not None else ExternalInputs(external_s3)
    )
    async_metrics = AsyncMetrics()
    metrics.add_renderer(async_metrics.render)

    def ready_instances(endpoint: str, variant: str) -> int:
        return metrics.instances().get((endpoint, variant), (0, 0))[0]

    dispatcher = Dispatcher(
        store=store,
        executor=executor,
        router=router,
        instances=ready_instances,
        storage=storage,
        inputs=inputs,
        notifier=Notifier(environ, settings.async_notify_attempts, backoff_s=0.5),
        metrics=async_metrics,
        region=settings.region,
        max_input_bytes=settings.async_max_input_bytes,
        recheck_s=settings.async_recheck_s,
        bodies=BodyFiles(settings.data_dir / "async" / "bodies"),
        large_body_bytes=settings.large_body_bytes,
        max_publishing=settings.async_max_publishing,
    )
    api = AsyncRuntimeApi(
        AsyncEndpoints(control_store, control_executor, router), dispatcher, settings.account_id
    )
    return AsyncService(store, dispatcher, api, executor)
