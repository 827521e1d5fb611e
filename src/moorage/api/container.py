"""The container contract of `moorage serve-model`: `GET /ping` and `POST /invocations` (spec §2.4).

In batch mode (SAGEMAKER_BATCH) also `GET /execution-parameters`, and /invocations takes bodies up to
MaxPayloadInMB (execution_parameters.py).

Answers exactly as SageMaker's PyTorch container (toolkit + TorchServe) does: the handler's own
status, body and reason phrase; no Content-Type on handler errors; TorchServe's JSON error shape
(`{"code", "type", "message"}`) for failures of the server itself. /ping is answered from the
workers' real state, never queued behind inference (SageMaker gives it 2 s).

Like every moorage port, this one refuses a foreign Host and a cross-site browser request (there is
no authentication here, so both rules always apply; httpd/hosts.py), with 403 in TorchServe's shape.
SageMaker's platform sends neither Origin nor Sec-Fetch-Site; a container bound to every interface
admits any IP-literal Host, and MOORAGE_SERVER_NAMES lists the names it is called by.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from moorage.api.execution_parameters import BatchParameters, request_cap
from moorage.errors import MoorageError, PayloadTooLarge, ServiceUnavailable, ThrottlingException
from moorage.httpd import Request, Response, StreamingResponse
from moorage.httpd.hosts import BrowserGuard
from moorage.runtime.outcomes import Answered, Died, Outcome, TimedOut
from moorage.runtime.pool import next_request_id
from moorage.runtime.variant import VariantRuntime
from moorage.settings import MAX_PAYLOAD_BYTES
from moorage.streaming.responses import chunks
from moorage.worker.protocol import Invoke

if TYPE_CHECKING:
    from moorage.api.container_models import ModelsApi

__all__ = ["ContainerApp", "forwarded_headers", "torchserve_error"]

_HEALTHY = b'{\n  "status": "Healthy"\n}\n'
_UNHEALTHY = b'{\n  "status": "Unhealthy"\n}\n'
_JSON = [("Content-Type", "application/json")]
# Headers that describe the HTTP connection rather than the request; the handler never sees them.
_HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "expect",
        "te",
        "upgrade",
        "proxy-authorization",
        "authorization",
    )
)


def torchserve_error(status: int, kind: str, message: str) -> Response:
    body = json.dumps({"code": status, "type": kind, "message": message}, indent=2).encode() + b"\n"
    return Response(status, body, list(_JSON))


def forwarded_headers(request: Request) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP)


def invoke_message(request: Request, body: bytes) -> Invoke:
    """The worker request; a handler that yields answers chunked, part by part (moorage.streaming)."""
    return Invoke(
        request_id=next_request_id(),
        body=body,
        content_type=request.headers.get("content-type"),
        accept=request.headers.get("accept"),
        headers=forwarded_headers(request),
        stream=True,
    )


class ContainerApp:
    def __init__(
        self,
        variant: VariantRuntime | None,
        guard: BrowserGuard | None = None,
        batch: BatchParameters | None = None,
    ) -> None:
        self.variant = variant  # None until the model is prepared; /ping says Unhealthy meanwhile
        self.guard = guard
        self.batch = batch  # None: a real-time container (no /execution-parameters, 6 MiB bodies)
        self.models: ModelsApi | None = None  # serve-model --multi-model: SageMaker's /models API

    async def __call__(self, request: Request) -> Response | StreamingResponse:
        refusal = self.guard.check(request) if self.guard is not None else None
        if refusal is not None:
            return torchserve_error(403, "AccessDeniedException", refusal)
        if request.path == "/ping" and request.method in ("GET", "HEAD"):
            healthy = (self.variant is not None and self.variant.healthy) or self.models is not None
            return Response(200 if healthy else 500, _HEALTHY if healthy else _UNHEALTHY, list(_JSON))
        if self.models is not None and self.models.claims(request.path):
            return await self.models(request)
        if request.path in ("/invocations", "/models/model/invoke") and request.method == "POST":
            return await self.invocations(request)
        if request.path == "/execution-parameters" and request.method == "GET" and self.batch is not None:
            return self.execution_parameters(self.batch)
        return torchserve_error(
            404, "ResourceNotFoundException", "Requested resource is not found, please refer to API document."
        )

    def execution_parameters(self, batch: BatchParameters) -> Response:
        """SageMaker's batch contract; MaxConcurrentTransforms defaults to the model's workers."""
        if batch.concurrency is None and (self.variant is None or not self.variant.started):
            return torchserve_error(
                503,
                "ServiceUnavailableException",
                "The model is still loading, and MaxConcurrentTransforms (one per worker) is known once "
                "it has; retry once /ping answers 200, or set SAGEMAKER_MAX_CONCURRENT_TRANSFORMS.",
            )
        workers = self.variant.plan.workers if self.variant is not None else 1
        body = json.dumps(batch.answer(workers)).encode()
        return Response(200, body, list(_JSON))

    async def invocations(self, request: Request) -> Response | StreamingResponse:
        try:
            body = await request.body(request_cap(self.batch))
            if self.variant is None or not self.variant.started:
                raise ServiceUnavailable("The model is still loading; retry once /ping answers 200.")
            outcome = await self.variant.pool.submit(invoke_message(request, body))
        except PayloadTooLarge as exc:
            response = torchserve_error(413, "RequestEntityTooLarge", exc.message)
            response.close = True
            return response
        except (ServiceUnavailable, ThrottlingException) as exc:
            return torchserve_error(503, "ServiceUnavailableException", exc.message)
        except MoorageError as exc:
            return torchserve_error(500, "InternalServerException", exc.message)
        return container_response(outcome)


def container_response(outcome: Outcome) -> Response | StreamingResponse:
    """Show an outcome the way SageMaker's container would answer it."""
    if isinstance(outcome, Answered):
        reply = outcome.reply
        if outcome.stream is not None:
            headers = list(reply.headers)
            if reply.content_type is not None:
                headers.append(("Content-Type", reply.content_type))
            parts = chunks(outcome.stream, "/invocations")
            return StreamingResponse(reply.status, parts, headers, reason=reply.reason)
        if reply.too_large:
            return torchserve_error(
                500,
                "InternalServerException",
                f"The handler's response exceeds the {MAX_PAYLOAD_BYTES}-byte limit on response size.",
            )
        headers = list(reply.headers)
        if reply.content_type is not None:
            headers.append(("Content-Type", reply.content_type))
        return Response(reply.status, reply.body, headers, reason=reply.reason)
    if isinstance(outcome, TimedOut):
        # TorchServe kills a worker past its response timeout and answers "Worker died." (spec §2.10).
        return torchserve_error(
            500,
            "InternalServerException",
            f"Worker died. The request did not finish within the {outcome.timeout_s:g} s invocation timeout.",
        )
    assert isinstance(outcome, Died)
    return torchserve_error(
        500, "InternalServerException", f"Worker died. {outcome.detail[:1].upper()}{outcome.detail[1:]}."
    )
