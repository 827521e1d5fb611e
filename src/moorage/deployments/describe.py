"""What DescribeEndpoint and UpdateEndpoint say and take about guarded updates.

UpdateEndpoint freezes the DeploymentConfig (checked against the new deployment) into the deployment
it rolls out, or the last one when RetainDeploymentConfig is true; DescribeEndpoint shows it as
LastDeploymentConfig once it serves, and while it rolls out, each pending variant's VariantStatus
(Creating, ActivatingTraffic, Baking) with the share of traffic the new fleet has.
"""

from __future__ import annotations

from dataclasses import replace

from moorage.control.records import Deployment, EndpointRecord, JsonObject
from moorage.deployments.config import check_deployment_config

__all__ = ["describe_deployment", "with_deployment_config"]


def with_deployment_config(
    request: JsonObject, record: EndpointRecord, pending: Deployment, now: float
) -> Deployment:
    """`pending` with the DeploymentConfig it rolls out with (ValidationException if it is wrong) and
    its progress, which marks it for a guarded rollout (an UpdateEndpointWeightsAndCapacities copies
    the serving deployment, config included, and is not one)."""
    config = request.get("DeploymentConfig")
    if config is None and request.get("RetainDeploymentConfig") and record.deployment is not None:
        config = record.deployment.deployment_config
    if config is None:
        return pending
    check_deployment_config(config, pending)
    progress = {
        "Status": "Creating",
        "StatusMessage": "Launching the new fleet.",
        "Share": 0.0,
        "StartTime": now,
    }
    return replace(pending, deployment_config=config, progress=progress)


def describe_deployment(record: EndpointRecord, result: JsonObject) -> None:
    """Add LastDeploymentConfig, shadow variants of the pending summary, and the update's progress."""
    if record.deployment is not None and record.deployment.deployment_config is not None:
        result["LastDeploymentConfig"] = record.deployment.deployment_config
    summary = result.get("PendingDeploymentSummary")
    pending = record.pending
    if summary is None or pending is None:
        return
    shadows = {spec.variant_name for spec in pending.variants if spec.shadow}
    weights = {spec.variant_name: spec.weight for spec in pending.variants}
    listed = summary.get("ProductionVariants", [])
    progress = pending.progress
    for variant in listed:
        if progress is not None:
            share = float(progress["Share"])
            variant["CurrentWeight"] = weights[variant["VariantName"]] * (
                1.0 if variant["VariantName"] in shadows else share
            )
            status: JsonObject = {"Status": progress["Status"], "StatusMessage": progress["StatusMessage"]}
            status["StartTime"] = progress["StartTime"]
            variant["VariantStatus"] = [status]
    summary["ProductionVariants"] = [v for v in listed if v["VariantName"] not in shadows]
    if shadows:
        summary["ShadowProductionVariants"] = [v for v in listed if v["VariantName"] in shadows]
