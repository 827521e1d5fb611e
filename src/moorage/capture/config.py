"""An endpoint config's DataCaptureConfig as moorage runs it, and what DescribeEndpoint says of it.

The control plane checks it here (beyond botocore's shapes, which control/validation.py already
enforces) and freezes it into the endpoint's deployment, as it does AsyncInferenceConfig; the invoke
path reads the frozen copy (capture/endpoints.py), so a capture change takes effect when the
UpdateEndpoint that carries it completes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moorage.asyncinf.config import split_s3_url
from moorage.errors import ValidationException

__all__ = [
    "DEFAULT_CSV_TYPES",
    "DEFAULT_JSON_TYPES",
    "CaptureConfig",
    "capture_summary",
    "check_capture_config",
]

# What SageMaker captures as text when CaptureContentTypeHeader does not say (spec §c.5); anything
# else is base64-encoded.
DEFAULT_CSV_TYPES = ("text/csv",)
DEFAULT_JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class CaptureConfig:
    enabled: bool
    percentage: int
    bucket: str
    prefix: str  # DestinationS3Uri's key part, without a trailing slash
    capture_input: bool
    capture_output: bool
    csv_types: frozenset[str]
    json_types: frozenset[str]

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> CaptureConfig:
        bucket, key = split_s3_url(str(config["DestinationS3Uri"]))
        modes = {str(option["CaptureMode"]) for option in config["CaptureOptions"]}
        header = config.get("CaptureContentTypeHeader") or {}
        return cls(
            enabled=bool(config.get("EnableCapture", True)),
            percentage=int(config["InitialSamplingPercentage"]),
            bucket=bucket,
            prefix=key.strip("/"),
            capture_input=bool(modes & {"Input", "InputAndOutput"}),
            capture_output=bool(modes & {"Output", "InputAndOutput"}),
            csv_types=_media_types(header.get("CsvContentTypes"), DEFAULT_CSV_TYPES),
            json_types=_media_types(header.get("JsonContentTypes"), DEFAULT_JSON_TYPES),
        )

    @property
    def active(self) -> bool:
        """Whether any request of the endpoint can be captured."""
        return self.enabled and self.percentage > 0 and (self.capture_input or self.capture_output)


def _media_types(given: object, default: tuple[str, ...]) -> frozenset[str]:
    values = given if isinstance(given, list) and given else default
    return frozenset(str(value).split(";", 1)[0].strip().lower() for value in values)


def check_capture_config(config: Mapping[str, Any]) -> None:
    """What moorage needs of a DataCaptureConfig beyond its shape (which validation.py checked)."""
    destination = str(config.get("DestinationS3Uri", ""))
    try:
        split_s3_url(destination)
    except ValueError:
        raise ValidationException(
            f"DataCaptureConfig.DestinationS3Uri {destination!r} is not supported by moorage: give an "
            "s3://bucket/prefix URL."
        ) from None
    if config.get("KmsKeyId"):
        raise ValidationException(
            "DataCaptureConfig.KmsKeyId is not supported by moorage yet: captured files are written without "
            "SSE-KMS. Remove KmsKeyId."
        )
    modes = [option.get("CaptureMode") for option in config.get("CaptureOptions") or []]
    if not modes:
        raise ValidationException("DataCaptureConfig.CaptureOptions must name Input, Output or both.")


def capture_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    """DescribeEndpoint's DataCaptureConfig: a summary of the config the endpoint serves with."""
    enabled = bool(config.get("EnableCapture", True))
    return {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": int(config["InitialSamplingPercentage"]),
        "DestinationS3Uri": str(config["DestinationS3Uri"]),
    }
