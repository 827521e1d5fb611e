"""Data capture as `moorage serve` runs it: which endpoints capture, sampling, and the writer.

`launch/serve.py` opens it once the router and metrics exist and gives it to the runtime API, which
calls `observe` once per answered invocation, after the response is built. `observe` never waits: the
endpoint's DataCaptureConfig (frozen into its deployment) is cached per published route (the
reconciler publishes a new route object whenever a deployment changes, in place or blue/green), and
on a miss the store is read in a background task that then samples the invocation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from moorage.capture.config import CaptureConfig
from moorage.capture.metrics import CaptureMetrics
from moorage.capture.records import Captured
from moorage.capture.writer import CaptureWriter
from moorage.control.records import EndpointStatus
from moorage.control.store import Store
from moorage.runtime.metrics import Metrics
from moorage.runtime.router import EndpointRoute, Router
from moorage.s3io import open_storage
from moorage.settings import Settings

__all__ = ["CaptureService", "Invocation", "open_capture"]

log = logging.getLogger("moorage.capture")


@dataclass(frozen=True)
class Invocation:
    """What the runtime API hands over of one answered invocation (references, nothing copied)."""

    endpoint: str
    variant: str
    inference_id: str | None
    request_body: bytes
    request_type: str | None
    response_body: bytes
    response_type: str | None


class CaptureService:
    def __init__(
        self,
        store: Store,
        store_executor: Executor,
        router: Router,
        writer: CaptureWriter,
        executor: ThreadPoolExecutor,
        metrics: CaptureMetrics,
    ) -> None:
        self._store = store
        self._store_executor = store_executor
        self._router = router
        self.writer = writer
        self.metrics = metrics
        self._executor = executor
        self._cache: dict[str, tuple[EndpointRoute, CaptureConfig | None]] = {}
        self._loading: set[asyncio.Task[None]] = set()
        self._random = random.Random()

    def observe(self, invocation: Invocation) -> None:
        """Sample one answered invocation for capture; returns at once."""
        route = self._router.route(invocation.endpoint)
        cached = self._cache.get(invocation.endpoint)
        if cached is not None and route is not None and cached[0] is route:
            self._sample(cached[1], invocation)
            return
        self._cache.pop(invocation.endpoint, None)
        task = asyncio.get_running_loop().create_task(self._load_then_sample(route, invocation))
        self._loading.add(task)
        task.add_done_callback(self._loading.discard)

    async def _load_then_sample(self, route: EndpointRoute | None, invocation: Invocation) -> None:
        loop = asyncio.get_running_loop()
        try:
            record = await loop.run_in_executor(
                self._store_executor, self._store.get_endpoint, invocation.endpoint
            )
            deployment = (record.deployment or record.pending) if record is not None else None
            raw = deployment.capture_config if deployment is not None else None
            config = CaptureConfig.from_json(raw) if raw else None
        except Exception:  # a capture problem never reaches requests: it is logged, nothing is captured
            log.exception("data capture of endpoint %s: cannot read its capture config", invocation.endpoint)
            return
        if record is None:
            return
        # Cache only a settled endpoint: during an update the route may already serve the new deployment.
        if route is not None and record.pending is None and record.status is EndpointStatus.IN_SERVICE:
            self._cache[invocation.endpoint] = (route, config)
        self._sample(config, invocation)

    def _sample(self, config: CaptureConfig | None, invocation: Invocation) -> None:
        if config is None or not config.active:
            return
        if config.percentage < 100 and self._random.random() * 100 >= config.percentage:
            return
        self.metrics.sampled(invocation.endpoint, invocation.variant)
        self.writer.offer(
            Captured(
                endpoint=invocation.endpoint,
                variant=invocation.variant,
                config=config,
                event_id=str(uuid.uuid4()),
                at=time.time(),
                inference_id=invocation.inference_id,
                request_body=invocation.request_body,
                request_type=invocation.request_type,
                response_body=invocation.response_body,
                response_type=invocation.response_type,
            )
        )

    def start(self) -> None:
        self.writer.start()

    async def close(self, grace_s: float) -> None:
        if self._loading:
            await asyncio.wait(set(self._loading), timeout=grace_s)
        await self.writer.close(grace_s)
        self._executor.shutdown(wait=True)


def open_capture(
    settings: Settings,
    *,
    control_store: Store,
    control_executor: Executor,
    router: Router,
    metrics: Metrics,
    s3_local_root: Path | None,
    external_s3: str | None,
) -> CaptureService:
    """`s3_local_root`: the embedded store's directory when captures go there (else `external_s3`, or
    AWS itself when that is None too)."""
    storage = open_storage(s3_local_root, external_s3, settings.data_dir / "capture" / "staging")
    capture_metrics = CaptureMetrics()
    metrics.add_renderer(capture_metrics.render)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-writer")
    writer = CaptureWriter(
        storage,
        capture_metrics,
        executor,
        flush_s=settings.capture_flush_s,
        file_bytes=settings.capture_file_bytes,
        buffer_bytes=settings.capture_buffer_bytes,
    )
    return CaptureService(control_store, control_executor, router, writer, executor, capture_metrics)
