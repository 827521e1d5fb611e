"""CloudWatch's own error codes, as its API model names them (botocore raises the modeled classes).

Each is a ControlPlaneError, so it renders at the edge like every other control-plane error; the
`query_code` is the code CloudWatch's older query protocol used, which botocore reads from the
`x-amzn-query-error` header (awsQueryCompatible) to pick the modeled exception class.
"""

from __future__ import annotations

from typing import ClassVar

from moorage.errors import ControlPlaneError

__all__ = [
    "CloudWatchError",
    "InvalidFormat",
    "InvalidNextToken",
    "InvalidParameterCombination",
    "InvalidParameterValue",
    "LimitExceeded",
    "MissingParameter",
    "ResourceNotFound",
]


class CloudWatchError(ControlPlaneError):
    code: ClassVar[str] = "InvalidParameterValue"
    status: ClassVar[int] = 400
    shape: ClassVar[str] = "InvalidParameterValueException"  # the error's shape name in the API model


class InvalidParameterValue(CloudWatchError):
    pass


class MissingParameter(CloudWatchError):
    code = "MissingParameter"
    shape = "MissingRequiredParameterException"


class InvalidParameterCombination(CloudWatchError):
    code = "InvalidParameterCombination"
    shape = "InvalidParameterCombinationException"


class InvalidNextToken(CloudWatchError):
    code = "InvalidNextToken"
    shape = "InvalidNextToken"


class InvalidFormat(CloudWatchError):
    code = "InvalidFormat"
    shape = "InvalidFormatFault"


class ResourceNotFound(CloudWatchError):
    code = "ResourceNotFound"
    status = 404
    shape = "ResourceNotFound"


class LimitExceeded(CloudWatchError):
    code = "LimitExceeded"
    shape = "LimitExceededFault"
