"""The routes of `moorage serve`'s main port, and the last-resort error boundary around them.

POST /  with X-Amz-Target: <Prefix>.<Operation>   AWS JSON 1.1 services, by target prefix:
                                                  SageMaker (control plane), and any other
                                                  service registered in `json_services`
POST /  form-encoded, no X-Amz-Target             AWS query protocol: IAM GetRole (api/iam.py)
POST /endpoints/{name}/invocations                InvokeEndpoint
POST /endpoints/{name}/invocations-response-stream  InvokeEndpointWithResponseStream
POST /endpoints/{name}/async-invocations          InvokeEndpointAsync (api/async_runtime.py)
GET  /ping                                        the server itself is up (not an endpoint's health)
GET  /_moorage/info                               version, S3 URL, region, account: what a client
                                                  needs before it can sign (so, like /ping, no auth)
GET  /metrics                                     Prometheus text, SageMaker's CloudWatch names
POST /service/{Service}/operation/{Operation}     Smithy RPC v2 CBOR services in `rpc_services`:
                                                  CloudWatch (api/cloudwatch.py)
GET  /console/...                                 the web console's static files (moorage.console); its
                                                  API calls are signed like any client's

Before any route, `guard` refuses a foreign Host and, while authentication is off, a cross-site
browser request (httpd/hosts.py), with 403 AccessDeniedException in the API's own error shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from moorage.api.async_runtime import AsyncRuntimeApi, parse_async_path
from moorage.api.cloudwatch import cloudwatch_error, is_cloudwatch_request
from moorage.api.errors import control_error, new_request_id, query_error
from moorage.api.iam import IAM_NAMESPACE, is_query_request
from moorage.api.runtime import RuntimeApi, parse_invocation_path
from moorage.console import ConsoleSite
from moorage.errors import (
    AccessDeniedException,
    AuthError,
    InternalFailure,
    MoorageError,
    PayloadTooLarge,
    UnknownOperationException,
)
from moorage.httpd import Request, Response, StreamingResponse
from moorage.httpd.hosts import BrowserGuard
from moorage.runtime.metrics import Metrics, render_prometheus

__all__ = ["Authenticate", "JsonService", "MainApp"]

log = logging.getLogger("moorage.api")

Authenticate = Callable[[Request], Awaitable[None]]
# An AWS JSON 1.1 service: gets the whole request (the X-Amz-Target names the operation).
JsonService = Callable[[Request], Awaitable[Response]]


class MainApp:
    def __init__(
        self,
        json_services: Mapping[str, JsonService],
        runtime: RuntimeApi,
        metrics: Metrics,
        authenticate: Authenticate | None = None,
        *,
        query_service: JsonService | None = None,
        info: Mapping[str, object] | None = None,
        guard: BrowserGuard | None = None,
        async_runtime: AsyncRuntimeApi | None = None,
        console: ConsoleSite | None = None,
        rpc_services: Mapping[str, JsonService] | None = None,
    ) -> None:
        """`json_services` maps an X-Amz-Target prefix (e.g. "SageMaker") to its handler;
        `query_service` answers the AWS query protocol (IAM); `info` is served at /_moorage/info;
        `guard` decides which browser requests are refused before anything else runs."""
        self.json_services = dict(json_services)
        self.runtime = runtime
        self.metrics = metrics
        self.authenticate = authenticate
        self.query_service = query_service
        self.info = json.dumps(dict(info or {})).encode()
        self.guard = guard
        self.async_runtime = async_runtime
        self.console = console
        self.rpc_services = dict(rpc_services or {})  # Smithy service name → handler (CloudWatch)

    async def __call__(self, request: Request) -> Response | StreamingResponse:
        try:
            return await self._route(request)
        except PayloadTooLarge as exc:
            # From `authenticate`, which reads a signed body under its route's cap before the route runs.
            response = _error(request, exc)
            response.close = True
            return response
        except AuthError as exc:
            if is_cloudwatch_request(request):
                return _error(request, exc)
            if is_query_request(request):
                return query_error(exc, new_request_id(), IAM_NAMESPACE)
            return control_error(exc, new_request_id())
        except ConnectionError:
            raise  # the client left mid-request; the HTTP layer closes the connection quietly
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return control_error(
                InternalFailure("An internal error occurred; see the server log."), new_request_id()
            )

    async def _route(self, request: Request) -> Response | StreamingResponse:
        method, path = request.method, request.path
        refusal = self.guard.check(request) if self.guard is not None else None
        if refusal is not None:
            return _refused(request, AccessDeniedException(refusal))
        if method in ("GET", "HEAD") and path == "/ping":
            return Response(200, b'{"status": "Healthy"}', [("Content-Type", "application/json")])
        if method in ("GET", "HEAD") and path == "/_moorage/info":
            return Response(200, self.info, [("Content-Type", "application/json")])
        if self.console is not None and self.console.claims(path):
            return self.console.serve(request)  # static files only: every API call it makes is authenticated
        if self.authenticate is not None:
            await self.authenticate(request)
        if method == "POST":
            if path == "/":
                target = request.headers.get("x-amz-target") or ""
                service = self.json_services.get(target.partition(".")[0])
                if service is not None:
                    return await service(request)
                if self.query_service is not None and is_query_request(request):
                    return await self.query_service(request)
                return control_error(
                    UnknownOperationException(f"No service answers X-Amz-Target {target!r} here."),
                    new_request_id(),
                )
            invocation = parse_invocation_path(path)
            if invocation is not None:
                endpoint, streaming = invocation
                if self.async_runtime is not None:
                    async_only = await self.async_runtime.refuse_realtime(endpoint)
                    if async_only is not None:
                        return async_only
                return await self.runtime.invoke_endpoint(request, endpoint, streaming=streaming)
            rpc_service = self.rpc_services.get(path.split("/")[2]) if path.startswith("/service/") else None
            if rpc_service is not None:
                return await rpc_service(request)
            async_endpoint = parse_async_path(path)
            if async_endpoint is not None and self.async_runtime is not None:
                return await self.async_runtime.invoke_async(request, async_endpoint)
        if method == "GET" and path == "/metrics":
            body = render_prometheus(self.metrics).encode()
            return Response(200, body, [("Content-Type", "text/plain; version=0.0.4")])
        return control_error(
            UnknownOperationException(f"No operation is served at {method} {path}."), new_request_id()
        )


def _error(request: Request, error: MoorageError) -> Response:
    """An error raised before the route ran: CloudWatch's shape for its requests, else the control plane's."""
    if is_cloudwatch_request(request):
        return cloudwatch_error(error, new_request_id(), cbor_body=request.path != "/")
    return control_error(error, new_request_id())


def _refused(request: Request, error: AccessDeniedException) -> Response:
    """A browser-safety refusal in the shape the caller's protocol expects (query XML, or JSON with the
    code also in x-amzn-ErrorType, where rest-json clients such as sagemaker-runtime look first)."""
    if is_cloudwatch_request(request):
        return _error(request, error)
    if is_query_request(request):
        return query_error(error, new_request_id(), IAM_NAMESPACE)
    response = control_error(error, new_request_id())
    response.headers.append(("x-amzn-ErrorType", error.code))
    return response
