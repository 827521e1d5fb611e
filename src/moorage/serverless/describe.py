"""How a serverless variant is frozen into a deployment and shown by DescribeEndpoint (spec §c.5).

SageMaker's ProductionVariantSummary of a serverless variant carries CurrentServerlessConfig and
DesiredServerlessConfig instead of an instance type and a desired count. moorage also keeps
CurrentInstanceCount there: the instances running now (0 while idle), which is how a user sees the
variant go to zero and come back (docs/serverless.md).
"""

from __future__ import annotations

from typing import Any

from moorage.control.records import Deployment, JsonObject

__all__ = ["SERVERLESS_INSTANCE_TYPE", "scales_to_zero", "serverless_instance_count", "serverless_summary"]

# What one serverless instance is planned as (runtime/instance_types.py): a 2-vCPU CPU machine, so
# torch gets at most two threads; the memory limit is MemorySizeInMB instead of the type's.
SERVERLESS_INSTANCE_TYPE = "ml.m5.large"


def serverless_instance_count(variant: JsonObject) -> int:
    """The instance count a variant is deployed with: InitialInstanceCount, or for a serverless one the
    instances kept warm while idle (ProvisionedConcurrency, else 0)."""
    config: dict[str, Any] | None = variant.get("ServerlessConfig")
    if config is None:
        count: int = variant["InitialInstanceCount"]
        return count
    return int(config.get("ProvisionedConcurrency", 0))


def serverless_summary(summary: JsonObject, config: JsonObject, *, pending: bool = False) -> None:
    """Turn a variant summary into a serverless one, in place."""
    summary.pop("DesiredInstanceCount", None)
    summary.pop("InstanceType", None)
    if not pending:
        summary["CurrentServerlessConfig"] = dict(config)
    summary["DesiredServerlessConfig"] = dict(config)


def scales_to_zero(deployment: Deployment | None) -> bool:
    """Whether a deployment's variants may have zero instances: an async endpoint's, whose queue keeps
    requests while none runs (Application Auto Scaling with MinCapacity 0, spec §c.3)."""
    return deployment is not None and deployment.async_config is not None
