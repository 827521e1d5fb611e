"""Which endpoints are asynchronous: the AsyncInferenceConfig frozen into each endpoint's deployment.

Read from the control store, and cached per published route (the reconciler publishes a new route
object whenever an endpoint's deployment changes), so InvokeEndpoint's refusal costs a dictionary
lookup on the hot path and a store read only once per deployment.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

from moorage.asyncinf.config import AsyncConfig
from moorage.control.records import EndpointStatus
from moorage.control.store import Store
from moorage.runtime.router import EndpointRoute, Router

__all__ = ["AsyncEndpoints", "EndpointMode"]


@dataclass(frozen=True)
class EndpointMode:
    exists: bool
    status: str | None
    config: AsyncConfig | None  # None: a real-time endpoint


class AsyncEndpoints:
    def __init__(self, store: Store, executor: Executor, router: Router) -> None:
        self._store = store
        self._executor = executor
        self._router = router
        self._cache: dict[str, tuple[EndpointRoute, EndpointMode]] = {}

    async def mode(self, endpoint: str) -> EndpointMode:
        route = self._router.route(endpoint)
        cached = self._cache.get(endpoint)
        if cached is not None and route is not None and cached[0] is route:
            return cached[1]
        self._cache.pop(endpoint, None)
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(self._executor, self._store.get_endpoint, endpoint)
        if record is None:
            return EndpointMode(False, None, None)
        deployment = record.deployment or record.pending
        raw = deployment.async_config if deployment is not None else None
        mode = EndpointMode(True, record.status.value, AsyncConfig.from_json(raw) if raw else None)
        # Cache only a settled endpoint: during an update the route may already serve the new deployment.
        if route is not None and record.pending is None and record.status is EndpointStatus.IN_SERVICE:
            self._cache[endpoint] = (route, mode)
        return mode
