"""The domain exception tree: every error moorage raises on purpose, each with its AWS wire code.

Errors are raised deep (control, runtime, artifacts) and rendered once, at the HTTP edge, by
`moorage.api.errors`. Nothing below the edge knows about status lines or JSON bodies; a class only
says which AWS error it is (`code`) and which HTTP status botocore expects for it (`status`).

    MoorageError
    ├── ConfigError                    bad flag or environment value (never reaches the wire)
    ├── ControlPlaneError              AWS JSON 1.1 control plane (`POST /`, X-Amz-Target)
    │   ├── ValidationException        bad input, unknown or duplicate names (SageMaker uses it for all)
    │   ├── ObjectNotFoundException    Application Auto Scaling: no such scalable target or policy
    │   ├── ResourceLimitExceeded
    │   ├── UnknownOperationException
    │   └── SerializationException     body is not the JSON object the operation needs
    ├── AuthError                      SigV4 failures, the same on every API (403)
    │   ├── MissingAuthenticationToken
    │   ├── UnrecognizedClientException
    │   ├── InvalidSignatureException  (also "Signature expired")
    │   └── AccessDeniedException
    ├── RuntimeApiError                SageMaker Runtime (rest-json, InvokeEndpoint)
    │   ├── ValidationError            unknown endpoint, bad header
    │   ├── ModelError                 the container answered non-2xx, died or timed out (424)
    │   ├── ModelNotReadyException     (429)
    │   ├── ServiceUnavailable         no instance could take the request; safe to retry (503)
    │   ├── ThrottlingException        admission queue full; botocore backs off and retries
    │   └── PayloadTooLarge            body over the 6 MiB limit (413)
    ├── InternalFailure                a bug or an unexpected failure of ours (500)
    └── DeploymentError                why an endpoint could not start (becomes FailureReason)
        ├── ArtifactError              model data could not be fetched or is unsafe
        │   ├── ArtifactSourceError    not found, not allowed, download failed
        │   ├── IntegrityError         checksum or ETag pin does not match
        │   └── UnsafeArchiveError     a tar member that could escape or is not a plain file
        ├── RequirementsError          pip could not install code/requirements.txt
        └── InstanceStartError         the worker could not load the model
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDeniedException",
    "ArtifactError",
    "ArtifactSourceError",
    "AuthError",
    "ConfigError",
    "ControlPlaneError",
    "DeploymentError",
    "InstanceStartError",
    "IntegrityError",
    "InternalFailure",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "ModelError",
    "ModelNotReadyException",
    "MoorageError",
    "ObjectNotFoundException",
    "PayloadTooLarge",
    "RequirementsError",
    "ResourceLimitExceeded",
    "RuntimeApiError",
    "SerializationException",
    "ServiceUnavailable",
    "ThrottlingException",
    "UnknownOperationException",
    "UnrecognizedClientException",
    "UnsafeArchiveError",
    "ValidationError",
    "ValidationException",
]


class MoorageError(Exception):
    """Base of every error moorage raises on purpose; `message` is what the user reads."""

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(MoorageError):
    """A flag or environment variable has a value moorage cannot use; the message names it."""

    code = "ConfigError"


class ControlPlaneError(MoorageError):
    status = 400


class ValidationException(ControlPlaneError):
    """SageMaker reports bad input, missing and duplicate resources all with this code (spec §3.5)."""

    code = "ValidationException"


class ObjectNotFoundException(ControlPlaneError):
    """Application Auto Scaling's code for a scalable target or scaling policy that does not exist."""

    code = "ObjectNotFoundException"


class ResourceLimitExceeded(ControlPlaneError):
    code = "ResourceLimitExceeded"


class UnknownOperationException(ControlPlaneError):
    code = "UnknownOperationException"


class SerializationException(ControlPlaneError):
    code = "SerializationException"


class AuthError(MoorageError):
    status = 403


class MissingAuthenticationToken(AuthError):
    code = "MissingAuthenticationToken"


class UnrecognizedClientException(AuthError):
    code = "UnrecognizedClientException"


class InvalidSignatureException(AuthError):
    code = "InvalidSignatureException"


class AccessDeniedException(AuthError):
    code = "AccessDeniedException"


class RuntimeApiError(MoorageError):
    pass


class ValidationError(RuntimeApiError):
    code = "ValidationError"
    status = 400


class ModelError(RuntimeApiError):
    """The container failed the request: its status and body travel back to the client (spec §4.2)."""

    code = "ModelError"
    status = 424

    def __init__(
        self, message: str, *, original_status: int, original_message: str, log_stream_arn: str
    ) -> None:
        super().__init__(message)
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn


class ModelNotReadyException(RuntimeApiError):
    code = "ModelNotReadyException"
    status = 429


class ServiceUnavailable(RuntimeApiError):
    """No user code ran, so the client may safely retry (botocore does, with backoff)."""

    code = "ServiceUnavailable"
    status = 503


class ThrottlingException(RuntimeApiError):
    """The endpoint's admission queue is full; botocore's standard retry mode backs off on this code."""

    code = "ThrottlingException"
    status = 400


class PayloadTooLarge(RuntimeApiError):
    code = "PayloadTooLarge"
    status = 413


class InternalFailure(MoorageError):
    code = "InternalFailure"
    status = 500


class DeploymentError(MoorageError):
    """Why an endpoint (or one of its instances) could not start; shown as FailureReason."""

    code = "DeploymentError"


class ArtifactError(DeploymentError):
    pass


class ArtifactSourceError(ArtifactError):
    pass


class IntegrityError(ArtifactError):
    pass


class UnsafeArchiveError(ArtifactError):
    pass


class RequirementsError(DeploymentError):
    pass


class InstanceStartError(DeploymentError):
    pass
