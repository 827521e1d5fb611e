"""An endpoint's AsyncInferenceConfig as moorage runs it, and the names of a request's result objects.

The control plane checks the config here (beyond botocore's shapes, which control/validation.py already
enforces) and freezes it into the endpoint's deployment; the queue copies it into each accepted request,
so an UpdateEndpoint never changes where an already accepted request's answer goes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moorage.errors import ValidationException

__all__ = ["AsyncConfig", "check_async_config", "result_locations", "split_s3_url"]

_S3_URL = re.compile(r"^s3://(?P<bucket>[^/]+)/?(?P<key>.*)$")


@dataclass(frozen=True)
class AsyncConfig:
    output_path: str
    failure_path: str | None
    max_concurrency: int | None  # MaxConcurrentInvocationsPerInstance; None: one per worker
    success_topic: str | None
    error_topic: str | None
    include_response_in: frozenset[str]

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> AsyncConfig:
        output = config.get("OutputConfig") or {}
        notify = output.get("NotificationConfig") or {}
        client = config.get("ClientConfig") or {}
        return cls(
            output_path=str(output["S3OutputPath"]),
            failure_path=output.get("S3FailurePath") or None,
            max_concurrency=client.get("MaxConcurrentInvocationsPerInstance"),
            success_topic=notify.get("SuccessTopic") or None,
            error_topic=notify.get("ErrorTopic") or None,
            include_response_in=frozenset(notify.get("IncludeInferenceResponseIn") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "output_path": self.output_path,
            "failure_path": self.failure_path,
            "max_concurrency": self.max_concurrency,
            "success_topic": self.success_topic,
            "error_topic": self.error_topic,
            "include_response_in": sorted(self.include_response_in),
        }

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> AsyncConfig:
        return cls(**{**data, "include_response_in": frozenset(data["include_response_in"])})


def check_async_config(config: Mapping[str, Any]) -> None:
    """What moorage needs of an AsyncInferenceConfig beyond its shape (which validation.py checked)."""
    output = config.get("OutputConfig") or {}
    if not output.get("S3OutputPath"):
        raise ValidationException(
            "AsyncInferenceConfig.OutputConfig.S3OutputPath is required: moorage writes each answer there."
        )
    for member in ("S3OutputPath", "S3FailurePath"):
        value = output.get(member)
        if value and not _S3_URL.match(value):
            raise ValidationException(
                f"AsyncInferenceConfig.OutputConfig.{member} {value!r} is not supported by moorage: "
                "give an s3://bucket/prefix URL."
            )
    if output.get("KmsKeyId"):
        raise ValidationException(
            "AsyncInferenceConfig.OutputConfig.KmsKeyId is not supported by moorage yet: answers are "
            "written without SSE-KMS. Remove KmsKeyId."
        )


def split_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URL; ValueError for anything else."""
    match = _S3_URL.match(url)
    if match is None:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    return match["bucket"], match["key"]


def result_locations(
    config: AsyncConfig, request_id: str, *, extension: str | None, filename: str | None
) -> tuple[str, str]:
    """(OutputLocation, FailureLocation) of one request: `<path>[/<extension>]/<name>`, where the name is
    `Filename` or `<request id>.out`, and the failure's is `<that name without .out>-error.out` under
    S3FailurePath (else S3OutputPath). SageMaker's default names are unconfirmed (spec §c.3); clients are
    told both locations in the 202 and the SDK only uses those."""
    name = filename or f"{request_id}.out"
    stem = name[: -len(".out")] if name.endswith(".out") else name

    def under(path: str, leaf: str) -> str:
        parts = [path.rstrip("/")]
        if extension:
            parts.append(extension.strip("/"))
        return "/".join([*parts, leaf])

    return under(config.output_path, name), under(
        config.failure_path or config.output_path, f"{stem}-error.out"
    )
