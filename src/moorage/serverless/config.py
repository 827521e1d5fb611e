"""ServerlessConfig of a production variant: SageMaker's rules and exclusions (spec §c.5).

botocore's model already bounds the numbers (MemorySizeInMB 1024–6144, MaxConcurrency and
ProvisionedConcurrency 1–200); this module adds what the model cannot say: 1 GB steps, provisioned
concurrency within the maximum, and the features a serverless endpoint cannot be combined with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from moorage.errors import ValidationException

__all__ = ["ServerlessConfig", "check_serverless_config", "check_serverless_variants"]

_MIB = 1024 * 1024
# Members of a production variant that describe instances, which a serverless variant has none of.
_INSTANCE_MEMBERS = (
    "InstanceType",
    "InitialInstanceCount",
    "AcceleratorType",
    "ManagedInstanceScaling",
    "InstancePools",
    "CapacityReservationConfig",
    "AcceleratorPartitionLayouts",
    "VolumeSizeInGB",
    "ContainerStartupHealthCheckTimeoutInSeconds",
    "EnableSSMAccess",
    "InferenceAmiVersion",
)
# Members of CreateEndpointConfig that SageMaker does not offer with a serverless variant.
_CONFIG_EXCLUSIONS = {
    "DataCaptureConfig": "data capture",
    "AsyncInferenceConfig": "asynchronous inference",
    "ShadowProductionVariants": "shadow variants",
    "VpcConfig": "a VPC",
    "EnableNetworkIsolation": "network isolation",
    "KmsKeyId": "a KMS key for the instance volume",
}


@dataclass(frozen=True)
class ServerlessConfig:
    """A variant's ServerlessConfig, as the runtime uses it."""

    memory_mb: int
    max_concurrency: int
    provisioned_concurrency: int = 0  # instances kept warm while idle

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> ServerlessConfig:
        return cls(
            memory_mb=int(config["MemorySizeInMB"]),
            max_concurrency=int(config["MaxConcurrency"]),
            provisioned_concurrency=int(config.get("ProvisionedConcurrency", 0)),
        )

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * _MIB


def check_serverless_config(variant_name: str, config: Mapping[str, Any]) -> None:
    """The checks of one ServerlessConfig that botocore's ranges do not make."""
    memory = config["MemorySizeInMB"]
    if memory % 1024:
        raise ValidationException(
            f"Value {memory} at 'productionVariants.{variant_name}.serverlessConfig.memorySizeInMB' failed "
            "to satisfy constraint: Member must be one of 1024, 2048, 3072, 4096, 5120 or 6144 (1 GB steps)."
        )
    provisioned = config.get("ProvisionedConcurrency")
    if provisioned is not None and provisioned > config["MaxConcurrency"]:
        raise ValidationException(
            f"ProvisionedConcurrency ({provisioned}) of production variant {variant_name} must be less than "
            f"or equal to its MaxConcurrency ({config['MaxConcurrency']})."
        )


def check_serverless_variants(
    request: Mapping[str, Any], model_requests: Mapping[str, Mapping[str, Any]]
) -> None:
    """SageMaker's exclusions for an endpoint config with a serverless variant (spec §c.5).

    `model_requests`: the CreateModel input of each variant's model, by name (multi-model containers,
    VPCs and network isolation are properties of the model)."""
    variants = request["ProductionVariants"]
    serverless = [variant for variant in variants if "ServerlessConfig" in variant]
    if not serverless:
        return
    if len(variants) > 1:
        raise ValidationException(
            "An endpoint configuration with a serverless variant (ServerlessConfig) must have exactly one "
            f"production variant; this one has {len(variants)}."
        )
    variant = serverless[0]
    name = variant["VariantName"]
    given = [member for member in _INSTANCE_MEMBERS if member in variant]
    if given:
        raise ValidationException(
            f"Production variant {name} has a ServerlessConfig, so it cannot also have {', '.join(given)}: "
            "a serverless variant has no instances to choose. Remove them, or remove ServerlessConfig."
        )
    for member, what in _CONFIG_EXCLUSIONS.items():
        if request.get(member):
            raise ValidationException(
                f"{member} is not supported with a serverless variant: serverless endpoints do not offer "
                f"{what}. Use InstanceType and InitialInstanceCount for production variant {name}."
            )
    check_serverless_config(name, variant["ServerlessConfig"])
    model = model_requests.get(variant.get("ModelName", ""), {})
    containers = [model.get("PrimaryContainer"), *(model.get("Containers") or [])]
    if any(isinstance(c, Mapping) and c.get("Mode") == "MultiModel" for c in containers):
        raise ValidationException(
            f"Model {variant['ModelName']} is a multi-model container (Mode MultiModel); serverless "
            "endpoints do not support multi-model endpoints."
        )
    for member, what in (("VpcConfig", "a VPC"), ("EnableNetworkIsolation", "network isolation")):
        if model.get(member):
            raise ValidationException(
                f"Model {variant['ModelName']} has {member}; serverless endpoints do not support {what}."
            )
