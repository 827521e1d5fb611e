"""What the Python SDK raises: one tree, so a notebook or the CLI can catch `SdkError` and print it.

Every class is a `moorage.errors.MoorageError` (the CLI prints its `message` and exits 1). The ones
that come from an AWS error answer are also botocore `ClientError`s carrying the same `response`, so
code written for the SageMaker SDK (`except ClientError`, `e.response["Error"]["Code"]`) still works.

    SdkError
    ├── InvalidArgument        a bad argument, found before anything is sent (also a ValueError)
    ├── PackagingError         model_data, entry_point or source_dir cannot be read or repacked
    ├── ServerUnreachable      nothing answered at the server URL (the message says where it came from)
    ├── ServiceError           the server (or S3) refused a request; also a botocore ClientError
    │   └── PredictionError    InvokeEndpoint's ModelError: the handler failed; the container's answer
    └── DeploymentFailed       the endpoint ended in Failed; the message carries its FailureReason
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from moorage.errors import MoorageError

__all__ = [
    "DeploymentFailed",
    "InvalidArgument",
    "PackagingError",
    "PredictionError",
    "SdkError",
    "ServerUnreachable",
    "ServiceError",
]


class SdkError(MoorageError):
    code = "SdkError"


class InvalidArgument(SdkError, ValueError):
    """SageMaker's SDK raises ValueError for these; so does this (it is both)."""

    code = "InvalidArgument"


class PackagingError(SdkError):
    code = "PackagingError"


class ServerUnreachable(SdkError):
    code = "ServerUnreachable"


class ServiceError(SdkError, ClientError):  # type: ignore[misc]  # botocore is untyped
    """An AWS error answer. `error_code` is its code (e.g. ValidationException); `response` is botocore's."""

    code = "ServiceError"

    def __init__(self, response: dict[str, Any], operation_name: str, message: str) -> None:
        ClientError.__init__(self, response, operation_name)
        self.args = (message,)  # str(error) reads like every other moorage error, not botocore's template
        self.message = message
        self.error_code = str(response.get("Error", {}).get("Code", "Unknown"))
        self.request_id: str | None = response.get("ResponseMetadata", {}).get("RequestId")


class PredictionError(ServiceError):
    """The model's handler failed (ModelError, spec §4.2): the container's status code and body."""

    code = "PredictionError"

    def __init__(self, response: dict[str, Any], operation_name: str, message: str) -> None:
        super().__init__(response, operation_name, message)
        self.original_status: int | None = response.get("OriginalStatusCode")
        self.original_message: str | None = response.get("OriginalMessage")
        self.log_stream_arn: str | None = response.get("LogStreamArn")


class DeploymentFailed(SdkError):
    code = "DeploymentFailed"

    def __init__(self, endpoint_name: str, status: str, failure_reason: str | None) -> None:
        reason = failure_reason or "the server gave no reason"
        super().__init__(f"Endpoint {endpoint_name} did not start ({status}): {reason}")
        self.endpoint_name = endpoint_name
        self.endpoint_status = status
        self.failure_reason = failure_reason
