"""SageMaker Runtime's InvokeEndpoint: `POST /endpoints/{EndpointName}/invocations` (spec §4.1, §4.2).

Parse and check the headers SageMaker defines, refuse an oversized body from its Content-Length,
hand the request to the endpoint's variant, and show the outcome as SageMaker's front end does: the
container's body and Content-Type on success; ModelError (424) when the container answers an error,
dies or times out — never a 5xx for model failures, because botocore retries 5xx (spec §4.3).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from dataclasses import dataclass

from moorage.api.errors import new_request_id, runtime_error
from moorage.api.eventstream import payload_part
from moorage.capture.service import CaptureService, Invocation
from moorage.errors import ModelError, MoorageError, ValidationError
from moorage.httpd import Request, Response, StreamingResponse
from moorage.multimodel.calls import TARGET_MODEL, submit_call
from moorage.runtime.metrics import Metrics
from moorage.runtime.outcomes import Answered, Died, Outcome, TimedOut
from moorage.runtime.pool import next_request_id
from moorage.runtime.router import Router
from moorage.runtime.shadow import ShadowMirror
from moorage.settings import MAX_PAYLOAD_BYTES
from moorage.streaming.responses import events
from moorage.worker.protocol import Invoke

__all__ = ["RuntimeApi", "parse_invocation_path"]

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<kind>invocations|invocations-response-stream)$")
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
_STREAM_PART_BYTES = 256 * 1024


def sagemaker_headers(request: Request, *, streaming: bool) -> tuple[tuple[str, str], ...]:
    """The headers a container gets: SageMaker strips everything InvokeEndpoint does not define (spec §2.4),
    so credentials, signatures and client details never reach user code."""
    accept = "x-amzn-sagemaker-accept" if streaming else "accept"
    forwarded = []
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered == accept:
            forwarded.append(("Accept", value))
        elif lowered == "content-type" or (lowered.startswith("x-amzn-sagemaker-") and lowered != accept):
            forwarded.append((name, value))
    return tuple(forwarded)


def parse_invocation_path(path: str) -> tuple[str, bool] | None:
    """(endpoint name, whether the response is streamed) for a runtime path, else None."""
    match = _PATH.match(path)
    return (match["name"], match["kind"] != "invocations") if match else None


@dataclass(frozen=True)
class _Checked:
    target_variant: str | None


def _check_headers(request: Request) -> _Checked:
    """The header constraints of botocore's model, which the client does not check itself."""
    errors: list[str] = []

    def ascii_max(header: str, member: str, limit: int, *, visible: bool = False) -> str | None:
        value = request.headers.get(header)
        if value is None:
            return None
        if len(value) > limit:
            errors.append(
                f"Value at '{member}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {limit}"
            )
        if not value.isascii() or (visible and any(not (32 <= ord(c) < 127) for c in value)):
            errors.append(
                f"Value at '{member}' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: \\p{ASCII}*"
            )
        return value

    ascii_max("content-type", "contentType", 1024)
    ascii_max("accept", "accept", 1024)
    ascii_max(CUSTOM_ATTRIBUTES, "customAttributes", 1024, visible=True)
    target = request.headers.get("X-Amzn-SageMaker-Target-Variant")
    if target is not None and (len(target) > 63 or not _NAME.match(target)):
        errors.append(
            "Value at 'targetVariant' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
        )
    inference_id = request.headers.get("X-Amzn-SageMaker-Inference-Id")
    if inference_id is not None and not (1 <= len(inference_id) <= 64):
        errors.append(
            "Value at 'inferenceId' failed to satisfy constraint: Member must have length between 1 and 64"
        )
    if errors:
        count = len(errors)
        raise ValidationError(
            f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(errors)
        )
    return _Checked(target_variant=target)


def _observe_whole(capture: CaptureService, invocation: Invocation, body: bytes) -> None:
    capture.observe(dataclasses.replace(invocation, response_body=body))


def _metric_status(status: int, outcome: Outcome | None) -> int:
    """The status CloudWatch's Invocation4XXErrors / Invocation5XXErrors count: for a ModelError (424),
    the model's own status, as SageMaker counts them (a timeout, a dead worker or a response too large
    to relay is a 5xx: the model gave no usable answer); otherwise the status moorage sent."""
    if status != 424 or outcome is None:
        return status
    if isinstance(outcome, Answered) and not outcome.reply.too_large:
        return outcome.reply.status
    return 500


class RuntimeApi:
    def __init__(
        self,
        router: Router,
        metrics: Metrics,
        region: str,
        account: str,
        capture: CaptureService | None = None,
        shadow: ShadowMirror | None = None,
    ) -> None:
        self.router = router
        self.metrics = metrics
        self.region = region
        self.account = account
        self.capture = capture  # data capture (moorage.capture); None: nothing is captured
        self.shadow = shadow  # copies sampled requests to a shadow variant (runtime/shadow.py)

    async def invoke_endpoint(
        self, request: Request, endpoint: str, *, streaming: bool = False
    ) -> Response | StreamingResponse:
        """InvokeEndpoint, or InvokeEndpointWithResponseStream when `streaming` (its Accept header is
        X-Amzn-SageMaker-Accept and its answer is event-stream framed, spec §4.5)."""
        request_id = new_request_id()
        started = time.perf_counter()
        variant_name = ""
        try:
            if len(endpoint) > 63 or not _NAME.match(endpoint):
                raise ValidationError(
                    "1 validation error detected: Value at 'endpointName' failed to satisfy constraint: "
                    "Member "
                    "must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
                )
            checked = _check_headers(request)
            body = await request.body(MAX_PAYLOAD_BYTES)
            variant = self.router.resolve(endpoint, checked.target_variant)
            variant_name = variant.name
            accept = request.headers.get("x-amzn-sagemaker-accept" if streaming else "accept")
            message = Invoke(
                request_id=next_request_id(),
                body=body,
                content_type=request.headers.get("content-type"),
                accept=accept,
                headers=sagemaker_headers(request, streaming=streaming),
            )
            target = request.headers.get(TARGET_MODEL)
            if self.shadow is not None:  # a copy to the shadow variant, beside this one; never waited for
                self.shadow.mirror(endpoint, message, request.headers.get("X-Amzn-SageMaker-Inference-Id"))
            if streaming:  # a handler that yields sends each part as it comes (moorage.streaming)
                message = dataclasses.replace(message, stream=True)
            outcome = await submit_call(variant, endpoint, target, message, request_id)
            response = self._respond(endpoint, variant_name, outcome, request_id, streaming)
            if self.capture is not None and response.status == 200 and isinstance(outcome, Answered):
                # Sampling and writing happen off the request path: this returns at once (a streamed
                # answer is captured whole once it has ended well).
                invocation = Invocation(
                    endpoint=endpoint,
                    variant=variant_name,
                    inference_id=request.headers.get("X-Amzn-SageMaker-Inference-Id"),
                    request_body=body,
                    request_type=message.content_type,
                    response_body=outcome.reply.body,
                    response_type=outcome.reply.content_type,
                )
                if outcome.stream is None:
                    self.capture.observe(invocation)
                else:
                    outcome.stream.on_whole = functools.partial(_observe_whole, self.capture, invocation)
        except MoorageError as exc:
            response = runtime_error(exc, request_id)
            if exc.status == 413:
                response.close = True
            outcome = None
        total_us = (time.perf_counter() - started) * 1e6
        if variant_name:
            model_us = outcome.reply.model_us if isinstance(outcome, Answered) else None
            self.metrics.record(
                endpoint,
                variant_name,
                status=_metric_status(response.status, outcome),
                model_us=model_us,
                total_us=total_us,
                model_error=response.status == 424,
            )
        return response

    def _respond(
        self, endpoint: str, variant: str, outcome: Outcome, request_id: str, streaming: bool
    ) -> Response | StreamingResponse:
        if isinstance(outcome, Answered) and not outcome.reply.too_large and outcome.reply.status < 300:
            reply = outcome.reply
            headers = [("x-Amzn-Invoked-Production-Variant", variant), ("x-amzn-RequestId", request_id)]
            headers += [
                (name, value) for name, value in reply.headers if name.lower() == CUSTOM_ATTRIBUTES.lower()
            ]
            if streaming:
                # The handler chain answers in one piece; it is relayed as PayloadPart events.
                if reply.content_type is not None:
                    headers.append(("X-Amzn-SageMaker-Content-Type", reply.content_type))
                headers.append(("Content-Type", "application/vnd.amazon.eventstream"))
                if outcome.stream is not None:  # the handler yields: one PayloadPart per part, as it comes
                    return StreamingResponse(200, events(outcome.stream, f"endpoint {endpoint}"), headers)
                parts = [
                    payload_part(reply.body[start : start + _STREAM_PART_BYTES])
                    for start in range(0, len(reply.body), _STREAM_PART_BYTES)
                ]
                return Response(200, b"".join(parts), headers)
            if reply.content_type is not None:
                headers.append(("Content-Type", reply.content_type))
            return Response(200, reply.body, headers)
        if isinstance(outcome, Answered) and outcome.stream is not None:
            outcome.stream.cancel()  # an error status with a streamed body: its first part is the message
        response = runtime_error(self._model_error(endpoint, outcome), request_id)
        response.headers.append(("x-Amzn-Invoked-Production-Variant", variant))
        return response

    def _model_error(self, endpoint: str, outcome: Outcome) -> ModelError:
        """SageMaker's ModelError for a failed container answer (spec §4.2, must-match 9 and 11)."""
        log_group = f"/aws/sagemaker/Endpoints/{endpoint}"
        see = (
            f"See https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
            f"#logEventViewer:group={log_group} in account {self.account} for more information."
        )
        log_stream_arn = f"arn:aws:logs:{self.region}:{self.account}:log-group:{log_group}"
        if isinstance(outcome, TimedOut):
            body = (
                "Your invocation timed out while waiting for a response from container primary. Review the "
                "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
            )
            return ModelError(
                f'Received server error (0) from primary with message "{body}". {see}',
                original_status=0,
                original_message=body,
                log_stream_arn=log_stream_arn,
            )
        if isinstance(outcome, Died):
            body = (
                '{"code": 500, "type": "InternalServerException", "message": "Worker died. '
                f'{outcome.detail[:1].upper()}{outcome.detail[1:]}."}}'
            )
            return ModelError(
                f'Received server error (500) from primary with message "{body}". {see}',
                original_status=500,
                original_message=body,
                log_stream_arn=log_stream_arn,
            )
        reply = outcome.reply
        if reply.too_large:
            return ModelError(
                f"Received server error (500) from primary and could not load the entire response "
                f"body. {see}",
                original_status=500,
                original_message="",
                log_stream_arn=log_stream_arn,
            )
        side = "client" if 400 <= reply.status < 500 else "server"
        body = reply.body.decode("utf-8", "replace")
        return ModelError(
            f'Received {side} error ({reply.status}) from primary with message "{body}". {see}',
            original_status=reply.status,
            original_message=body,
            log_stream_arn=log_stream_arn,
        )
