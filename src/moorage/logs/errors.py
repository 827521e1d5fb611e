"""The CloudWatch Logs error codes our log reader can raise, as domain errors of the control-plane kind.

CloudWatch Logs speaks AWS JSON 1.1 like SageMaker's control plane, so these render through
`moorage.api.errors.control_error` with the codes botocore's `logs` model declares for the four
operations we serve.
"""

from __future__ import annotations

from moorage.errors import ControlPlaneError

__all__ = ["InvalidParameterException", "ResourceNotFoundException"]


class ResourceNotFoundException(ControlPlaneError):
    """No such log group or log stream (a name that is valid but has no files)."""

    code = "ResourceNotFoundException"


class InvalidParameterException(ControlPlaneError):
    """A parameter is malformed, out of range, or a token we did not issue."""

    code = "InvalidParameterException"
