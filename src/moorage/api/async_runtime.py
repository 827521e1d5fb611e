"""SageMaker Runtime's InvokeEndpointAsync: `POST /endpoints/{EndpointName}/async-invocations` (spec §c.3).

Check every header against botocore's model (SageMaker's messages), commit the request to the async
queue, and only then answer 202 with the InferenceId and the two locations its result may appear at.
Also the refusal of InvokeEndpoint on an asynchronous endpoint, which accepts only async invocations.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass

from moorage.api.errors import new_request_id, runtime_error
from moorage.asyncinf.config import result_locations
from moorage.asyncinf.dispatcher import Dispatcher
from moorage.asyncinf.endpoints import AsyncEndpoints
from moorage.asyncinf.store import AsyncRequest
from moorage.errors import MoorageError, ValidationError
from moorage.httpd import Request, Response

__all__ = ["AsyncRuntimeApi", "parse_async_path"]

_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/async-invocations$")
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
_INFERENCE_ID = re.compile(r"^\S[\x20-\x7e]*$")
_INPUT_LOCATION = re.compile(r"^(https|s3)://([^/]+)/?(.*)$")
_EXTENSION = re.compile(r"^(?!s3:|https:)[a-zA-Z0-9!_.*'()/-]+$")
_FILENAME = re.compile(r"^(?!.*\..*\.)[a-zA-Z0-9][a-zA-Z0-9-_\.]*$")
MAX_INLINE_BODY = 128_000  # InvokeEndpointAsync's Body maximum in botocore's model
DEFAULT_TTL_S = 21600
DEFAULT_TIMEOUT_S = 900
_PREFIX = "x-amzn-sagemaker-"


def parse_async_path(path: str) -> str | None:
    match = _PATH.match(path)
    return match["name"] if match else None


@dataclass(frozen=True)
class _Headers:
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    inference_id: str | None
    input_location: str | None
    extension: str | None
    filename: str | None
    ttl_s: int
    timeout_s: int


def check_headers(headers: dict[str, str]) -> _Headers:
    """Every header constraint of botocore's model, reported at once as SageMaker does."""
    errors: list[str] = []

    def get(name: str) -> str | None:
        return headers.get(_PREFIX + name.lower())

    def text(
        name: str, member: str, low: int, high: int, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        value = get(name)
        if value is None:
            return None
        if not low <= len(value) <= high:
            errors.append(
                f"Value '{value}' at '{member}' failed to satisfy constraint: "
                f"Member must have length between {low} and {high}"
            )
        elif not value.isascii():
            errors.append(
                f"Value '{value}' at '{member}' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: \\p{ASCII}*"
            )
        elif pattern is not None and not pattern.match(value):
            errors.append(
                f"Value '{value}' at '{member}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern.pattern}"
            )
        return value

    def number(name: str, member: str, low: int, high: int, default: int) -> int:
        value = get(name)
        if value is None:
            return default
        try:
            parsed = int(value)
        except ValueError:
            errors.append(
                f"Value '{value}' at '{member}' failed to satisfy constraint: Member must be an integer"
            )
            return default
        if parsed < low:
            errors.append(
                f"Value '{parsed}' at '{member}' failed to satisfy constraint: "
                f"Member must have value greater than or equal to {low}"
            )
        elif parsed > high:
            errors.append(
                f"Value '{parsed}' at '{member}' failed to satisfy constraint: "
                f"Member must have value less than or equal to {high}"
            )
        return parsed

    checked = _Headers(
        content_type=text("Content-Type", "contentType", 0, 1024),
        accept=text("Accept", "accept", 0, 1024),
        custom_attributes=text("Custom-Attributes", "customAttributes", 0, 1024),
        inference_id=text("Inference-Id", "inferenceId", 1, 64, _INFERENCE_ID),
        input_location=text("InputLocation", "inputLocation", 1, 1024, _INPUT_LOCATION),
        extension=text("S3OutputPathExtension", "s3OutputPathExtension", 1, 512, _EXTENSION),
        filename=text("Filename", "filename", 1, 32, _FILENAME),
        ttl_s=number("RequestTTLSeconds", "requestTTLSeconds", 60, 21600, DEFAULT_TTL_S),
        timeout_s=number("InvocationTimeoutSeconds", "invocationTimeoutSeconds", 1, 3600, DEFAULT_TIMEOUT_S),
    )
    if errors:
        count = len(errors)
        raise ValidationError(
            f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(errors)
        )
    if checked.input_location is not None and not checked.input_location.startswith("s3://"):
        raise ValidationError(
            f"InputLocation {checked.input_location!r} is not supported by moorage: "
            "give an s3://bucket/key URL."
        )
    return checked


class AsyncRuntimeApi:
    def __init__(self, endpoints: AsyncEndpoints, dispatcher: Dispatcher, account: str) -> None:
        self.endpoints = endpoints
        self.dispatcher = dispatcher
        self.account = account

    async def refuse_realtime(self, endpoint: str) -> Response | None:
        """InvokeEndpoint's refusal for an asynchronous endpoint (None: a real-time one, go ahead)."""
        mode = await self.endpoints.mode(endpoint)
        if mode.config is None:
            return None
        error = ValidationError(
            f"Endpoint {endpoint} of account {self.account} is an asynchronous endpoint (its config has "
            "AsyncInferenceConfig): it accepts only InvokeEndpointAsync. Put the input in S3 and call "
            "invoke_endpoint_async, or predict_async in the SageMaker SDK."
        )
        return runtime_error(error, new_request_id())

    async def invoke_async(self, request: Request, endpoint: str) -> Response:
        request_id = new_request_id()
        try:
            if len(endpoint) > 63 or not _NAME.match(endpoint):
                raise ValidationError(
                    "1 validation error detected: Value at 'endpointName' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
                )
            headers = check_headers({name.lower(): value for name, value in request.headers.items()})
            body = await request.body(MAX_INLINE_BODY) if request.content_length != 0 else b""
            if (headers.input_location is None) == (not body):
                raise ValidationError(
                    "InvokeEndpointAsync needs exactly one of InputLocation (an s3:// URL of the input) and "
                    f"Body (at most {MAX_INLINE_BODY} bytes)."
                )
            mode = await self.endpoints.mode(endpoint)
            if not mode.exists:
                raise ValidationError(f"Endpoint {endpoint} of account {self.account} not found.")
            if mode.config is None:
                raise ValidationError(
                    f"Endpoint {endpoint} of account {self.account} is not an asynchronous endpoint: "
                    "its config has no AsyncInferenceConfig. Call InvokeEndpoint instead."
                )
            if mode.status not in ("InService", "Updating"):
                raise ValidationError(
                    f"Endpoint {endpoint} of account {self.account} is {mode.status}; "
                    "it can be invoked once it is InService."
                )
            queue_id = str(uuid.uuid4())
            output, failure = result_locations(
                mode.config, queue_id, extension=headers.extension, filename=headers.filename
            )
            accepted = await self.dispatcher.submit(
                AsyncRequest(
                    seq=0,
                    id=queue_id,
                    endpoint=endpoint,
                    inference_id=headers.inference_id or queue_id,
                    received=time.time(),
                    ttl_s=headers.ttl_s,
                    timeout_s=headers.timeout_s,
                    content_type=headers.content_type,
                    accept=headers.accept,
                    custom_attributes=headers.custom_attributes,
                    input_location=headers.input_location,
                    output_location=output,
                    failure_location=failure,
                    config=mode.config,
                ),
                None if headers.input_location is not None else body,
            )
        except MoorageError as exc:
            response = runtime_error(exc, request_id)
            if exc.status == 413:
                response.close = True
            return response
        return Response(
            202,
            json.dumps({"InferenceId": accepted.inference_id}).encode(),
            [
                ("Content-Type", "application/json"),
                ("x-amzn-RequestId", request_id),
                ("X-Amzn-SageMaker-OutputLocation", accepted.output_location),
                ("X-Amzn-SageMaker-FailureLocation", accepted.failure_location),
            ],
        )
