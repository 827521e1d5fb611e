"""The routes of `moorage serve`'s main port, and the last-resort error boundary around them.

POST /                                   control plane (X-Amz-Target: SageMaker.<Operation>)
POST /endpoints/{name}/invocations       InvokeEndpoint
GET  /ping                               the server itself is up (not an endpoint's health)
GET  /metrics                            Prometheus text, SageMaker's CloudWatch metric names
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from moorage.api.control import ControlPlane
from moorage.api.errors import control_error, new_request_id
from moorage.api.runtime import RuntimeApi, parse_invocation_path
from moorage.errors import AuthError, InternalFailure, UnknownOperationException
from moorage.httpd import Request, Response, StreamingResponse
from moorage.runtime.metrics import Metrics, render_prometheus

__all__ = ["MainApp"]

log = logging.getLogger("moorage.api")

Authenticate = Callable[[Request], Awaitable[None]]


class MainApp:
    def __init__(
        self,
        control: ControlPlane,
        runtime: RuntimeApi,
        metrics: Metrics,
        authenticate: Authenticate | None = None,
    ) -> None:
        self.control = control
        self.runtime = runtime
        self.metrics = metrics
        self.authenticate = authenticate

    async def __call__(self, request: Request) -> Response | StreamingResponse:
        try:
            return await self._route(request)
        except AuthError as exc:
            return control_error(exc, new_request_id())
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return control_error(
                InternalFailure("An internal error occurred; see the server log."), new_request_id()
            )

    async def _route(self, request: Request) -> Response | StreamingResponse:
        method, path = request.method, request.path
        if method in ("GET", "HEAD") and path == "/ping":
            return Response(200, b'{"status": "Healthy"}', [("Content-Type", "application/json")])
        if self.authenticate is not None:
            await self.authenticate(request)
        if method == "POST":
            if path == "/":
                return await self.control.handle(request)
            endpoint = parse_invocation_path(path)
            if endpoint is not None:
                return await self.runtime.invoke_endpoint(request, endpoint)
        if method == "GET" and path == "/metrics":
            body = render_prometheus(self.metrics).encode()
            return Response(200, body, [("Content-Type", "text/plain; version=0.0.4")])
        return control_error(
            UnknownOperationException(f"No operation is served at {method} {path}."), new_request_id()
        )
