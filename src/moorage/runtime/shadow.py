"""Shadow variants: a copy of sampled requests goes to the shadow, whose answer nobody waits for.

The runtime API calls `mirror` as it hands a request to the production variant. Sampling is the
route's `shadow_share` (the shadow's InitialVariantWeight relative to the production variant's, as
SageMaker samples). The copy runs as a task of its own, so the caller's answer never waits for it and
never changes; at most `limit` copies are outstanding at once and any more are dropped and counted,
so a slow or stuck shadow costs production nothing but the dropped samples. The shadow's answers,
errors and latencies are recorded under its own variant name (/metrics), and captured when the
endpoint captures data.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import replace

from moorage.capture.service import CaptureService, Invocation
from moorage.errors import MoorageError
from moorage.runtime.metrics import Metrics
from moorage.runtime.outcomes import Answered, Outcome
from moorage.runtime.pool import next_request_id
from moorage.runtime.router import RoutedVariant, Router
from moorage.worker.protocol import Invoke

__all__ = ["ShadowMirror"]

log = logging.getLogger("moorage.runtime.shadow")


def _status(outcome: Outcome) -> int:
    """The status the shadow's metrics count: the model's own, and 500 for a timeout or a death."""
    if isinstance(outcome, Answered) and not outcome.reply.too_large:
        return outcome.reply.status
    return 500


class ShadowMirror:
    def __init__(self, router: Router, metrics: Metrics, capture: CaptureService | None, limit: int) -> None:
        self._router = router
        self._metrics = metrics
        self._capture = capture
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._random = random.Random()
        self.dropped: Counter[tuple[str, str]] = Counter()  # (endpoint, shadow variant) → copies not sent
        metrics.add_renderer(self._render)

    def mirror(self, endpoint: str, message: Invoke, inference_id: str | None) -> None:
        """Send a copy of `message` to the endpoint's shadow if it is sampled; returns at once."""
        route = self._router.route(endpoint)
        if route is None or route.shadow is None or route.shadow_share <= 0:
            return
        if route.shadow_share < 1 and self._random.random() >= route.shadow_share:
            return
        shadow = route.shadow
        if len(self._tasks) >= self._limit:
            if not self.dropped[(endpoint, shadow.name)] % 100:
                log.warning(
                    "endpoint %s: shadow variant %s is behind (%d copies outstanding); dropping copies",
                    endpoint,
                    shadow.name,
                    len(self._tasks),
                )
            self.dropped[(endpoint, shadow.name)] += 1
            return
        copy = replace(message, request_id=next_request_id())
        task = asyncio.get_running_loop().create_task(self._send(endpoint, shadow, copy, inference_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, endpoint: str, shadow: RoutedVariant, message: Invoke, inference_id: str | None
    ) -> None:
        started = time.perf_counter()
        try:
            outcome = await shadow.pool.submit(message)
        except MoorageError as exc:  # throttled, or the shadow is stopping: counted as its error
            total_us = (time.perf_counter() - started) * 1e6
            self._metrics.record(endpoint, shadow.name, status=exc.status, model_us=None, total_us=total_us)
            return
        total_us = (time.perf_counter() - started) * 1e6
        status = _status(outcome)
        model_us = outcome.reply.model_us if isinstance(outcome, Answered) else None
        self._metrics.record(
            endpoint,
            shadow.name,
            status=status,
            model_us=model_us,
            total_us=total_us,
            model_error=status >= 300,
        )
        if self._capture is not None and status < 300 and isinstance(outcome, Answered):
            self._capture.observe(
                Invocation(
                    endpoint=endpoint,
                    variant=shadow.name,
                    inference_id=inference_id,
                    request_body=message.body,
                    request_type=message.content_type,
                    response_body=outcome.reply.body,
                    response_type=outcome.reply.content_type,
                )
            )

    async def close(self) -> None:
        """Cancel the copies still outstanding (the server is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _render(self) -> list[str]:
        name = "moorage_shadow_dropped"
        lines = [
            f"# HELP {name}_total Copies of requests not sent to a shadow variant because it was behind.",
            f"# TYPE {name}_total counter",
        ]
        for (endpoint, variant), count in sorted(self.dropped.items()):
            lines.append(f'{name}_total{{EndpointName="{endpoint}",VariantName="{variant}"}} {count}')
        return lines
