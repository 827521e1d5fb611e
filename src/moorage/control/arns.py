"""SageMaker ARNs for the hosting resources, and the context that builds them.

SageMaker lower-cases the name part of an ARN (spec §3.2): `EndpointName "My-Ep"` has the ARN
`arn:aws:sagemaker:<region>:<account>:endpoint/my-ep`. Two names that differ only in case would share
an ARN, so moorage treats names as unique case-insensitively and keys every record by `name_key(name)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from moorage.errors import ValidationException
from moorage.settings import ArtifactPolicy

__all__ = [
    "ControlContext",
    "ParsedArn",
    "ResourceKind",
    "already_exists",
    "build_arn",
    "name_key",
    "not_found",
    "parse_arn",
]


class ResourceKind(StrEnum):
    """The resource types of an ARN's `<type>/<name>` part that moorage hosts."""

    MODEL = "model"
    ENDPOINT_CONFIG = "endpoint-config"
    ENDPOINT = "endpoint"

    @property
    def label(self) -> str:
        """How SageMaker's messages name the kind: `Could not find endpoint configuration "<arn>".`"""
        return _LABELS[self]


_LABELS = {
    ResourceKind.MODEL: "model",
    ResourceKind.ENDPOINT_CONFIG: "endpoint configuration",
    ResourceKind.ENDPOINT: "endpoint",
}


def name_key(name: str) -> str:
    """The identity of a resource name: case-insensitive, like the lower-cased ARN it maps to."""
    return name.lower()


def build_arn(region: str, account_id: str, kind: ResourceKind, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account_id}:{kind.value}/{name_key(name)}"


@dataclass(frozen=True)
class ParsedArn:
    partition: str
    region: str
    account_id: str
    resource_type: str  # "model", "endpoint", ... (any type, not only the ones moorage hosts)
    name: str

    @property
    def kind(self) -> ResourceKind | None:
        """The hosted kind this ARN names, or None for another SageMaker resource type."""
        try:
            return ResourceKind(self.resource_type)
        except ValueError:
            return None


def parse_arn(arn: str) -> ParsedArn | None:
    """Split `arn:<partition>:sagemaker:<region>:<account>:<type>/<name>`; None if it is not one."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sagemaker":
        return None
    partition, region, account_id, resource = parts[1], parts[3], parts[4], parts[5]
    resource_type, slash, name = resource.partition("/")
    if not partition.startswith("aws") or not slash or not resource_type or not name:
        return None
    return ParsedArn(partition, region, account_id, resource_type, name)


@dataclass(frozen=True)
class ControlContext:
    """What every control-plane operation needs besides its input: where it runs, the time, and which
    model sources CreateModel may accept (the fetch checks the same policy again)."""

    region: str
    account_id: str
    clock: Callable[[], float] = field(default=time.time)  # epoch seconds
    artifact_policy: ArtifactPolicy = field(default_factory=ArtifactPolicy)
    # Called by DeleteModel with the model's name, after the record is gone: the server frees the
    # cached trees that only this model held (artifacts/trees.py).
    model_deleted: Callable[[str], None] = field(default=lambda _name: None)
    backend: str = "local"  # where instances run (settings.backend): some features are local-only

    def arn(self, kind: ResourceKind, name: str) -> str:
        return build_arn(self.region, self.account_id, kind, name)

    def owns(self, arn: ParsedArn) -> bool:
        """Whether an ARN points into this server's region and account (others cannot exist here)."""
        return arn.region == self.region and arn.account_id == self.account_id


def not_found(ctx: ControlContext, kind: ResourceKind, name: str) -> ValidationException:
    """SageMaker reports a missing resource as ValidationException; SDK 2.x matches "Could not find"."""
    return ValidationException(f'Could not find {kind.label} "{ctx.arn(kind, name)}".')


def already_exists(ctx: ControlContext, kind: ResourceKind, name: str) -> ValidationException:
    """SDK 2.x reuses a model (and accepts others) on "Cannot create already existing" (spec §3.5)."""
    return ValidationException(f'Cannot create already existing {kind.label} "{ctx.arn(kind, name)}".')
