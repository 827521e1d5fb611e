"""The control plane's records: frozen dataclasses, one per thing SageMaker lets you create.

These are the only shapes that cross from the control plane (store, operations) to the reconciler
that starts instances. `request` fields keep the caller's JSON exactly as accepted, because Describe*
echoes it back (SageMaker returns what you sent, plus server-side fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ContainerSpec",
    "Deployment",
    "EndpointConfigRecord",
    "EndpointRecord",
    "EndpointStatus",
    "ModelRecord",
    "ScalableTarget",
    "ScalingPolicy",
    "VariantSpec",
    "VariantState",
]

JsonObject = dict[str, Any]


class EndpointStatus(StrEnum):
    """SageMaker's EndpointStatus values that moorage uses (spec §3.4)."""

    CREATING = "Creating"  # CreateEndpoint accepted; instances are starting; no traffic yet
    IN_SERVICE = "InService"  # every instance of the deployment passed /ping; traffic flows
    UPDATING = "Updating"  # old deployment serves while the new one starts (blue/green) or scales
    DELETING = "Deleting"  # no new traffic; requests in flight finish; then the record goes
    FAILED = "Failed"  # could not start; FailureReason says why; only DeleteEndpoint is allowed

    @property
    def in_progress(self) -> bool:
        """SageMaker refuses Update/Delete while an endpoint is in one of these (must-match 3)."""
        return self in (EndpointStatus.CREATING, EndpointStatus.UPDATING)


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a model: where its artifact is and which environment it runs with."""

    image: str | None
    model_data_url: str | None  # s3://, https://, http://, file:// or a local path
    # ModelDataSource.S3DataSource: {"S3Uri", "S3DataType": S3Object|S3Prefix, "CompressionType": Gzip|None,
    # "ETag"?}; moorage also reads an optional "Sha256" pin here.
    model_data_source: JsonObject | None
    environment: dict[str, str] = field(default_factory=dict)
    mode: str = "SingleModel"  # Mode; "MultiModel": model_data_url is a prefix of archives (multimodel/)
    model_cache: str = "Enabled"  # MultiModelConfig.ModelCacheSetting


@dataclass(frozen=True)
class ModelRecord:
    name: str
    arn: str
    creation_time: float  # epoch seconds
    container: ContainerSpec  # PrimaryContainer, or Containers[0]
    request: JsonObject  # CreateModel input as accepted (Describe echoes it)


@dataclass(frozen=True)
class EndpointConfigRecord:
    name: str
    arn: str
    creation_time: float
    request: JsonObject  # CreateEndpointConfig input as accepted

    @property
    def production_variants(self) -> list[JsonObject]:
        variants: list[JsonObject] = self.request["ProductionVariants"]
        return variants


@dataclass(frozen=True)
class VariantSpec:
    """One production variant with its model resolved, frozen at CreateEndpoint/UpdateEndpoint time.

    SageMaker copies the configuration when an endpoint is deployed: deleting the endpoint config or
    the model later does not touch a running endpoint, and neither does it here.
    """

    variant_name: str
    model_name: str
    container: ContainerSpec
    instance_type: str
    instance_count: int
    weight: float
    startup_timeout_s: float | None = None  # ContainerStartupHealthCheckTimeoutInSeconds
    download_timeout_s: float | None = None  # ModelDataDownloadTimeoutInSeconds
    shadow: bool = False  # a ShadowProductionVariant: gets copies of sampled requests (runtime/shadow.py)
    serverless: JsonObject | None = None  # ServerlessConfig: zero instances while idle (serverless/)


@dataclass(frozen=True)
class Deployment:
    """What an endpoint runs: the config it came from and its variants."""

    config_name: str
    variants: tuple[VariantSpec, ...]
    resolved_at: float | None = None  # when it was frozen: DescribeEndpoint's DeployedImages.ResolutionTime
    async_config: JsonObject | None = None  # the config's AsyncInferenceConfig: an async endpoint (asyncinf/)
    capture_config: JsonObject | None = None  # the config's DataCaptureConfig (capture/)
    # The DeploymentConfig it was rolled out with (DescribeEndpoint's LastDeploymentConfig), and while it
    # rolls out, where it stands: status, message, start, traffic share (moorage.deployments).
    deployment_config: JsonObject | None = None
    progress: JsonObject | None = None


@dataclass(frozen=True)
class VariantState:
    """DescribeEndpoint's ProductionVariantSummary counters for one variant."""

    variant_name: str
    current_weight: float
    desired_weight: float
    current_instance_count: int
    desired_instance_count: int
    shadow: bool = False  # listed under ShadowProductionVariants


@dataclass(frozen=True)
class EndpointRecord:
    name: str
    arn: str
    status: EndpointStatus
    creation_time: float
    last_modified_time: float
    # What serves traffic now (None while Creating: `pending` holds what is being created).
    deployment: Deployment | None
    # What is being rolled out: the deployment being created (Creating) or replacing `deployment`
    # (Updating). None when nothing is in progress.
    pending: Deployment | None
    variants: tuple[VariantState, ...] = ()
    failure_reason: str | None = None
    tags: tuple[JsonObject, ...] = ()

    @property
    def config_name(self) -> str | None:
        """EndpointConfigName as DescribeEndpoint reports it: the serving config, else the one creating."""
        if self.deployment is not None:
            return self.deployment.config_name
        return self.pending.config_name if self.pending is not None else None


@dataclass(frozen=True)
class ScalableTarget:
    """A variant registered with Application Auto Scaling: the range its instance count may move in.

    Only SageMaker variants are scaled here (namespace `sagemaker`, resource `endpoint/<e>/variant/<v>`,
    dimension `sagemaker:variant:DesiredInstanceCount`); the fields keep Application Auto Scaling's names.
    """

    service_namespace: str
    resource_id: str
    scalable_dimension: str
    min_capacity: int
    max_capacity: int
    arn: str
    role_arn: str
    creation_time: float
    suspended_state: JsonObject = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.service_namespace, self.resource_id, self.scalable_dimension)


@dataclass(frozen=True)
class ScalingPolicy:
    """A target-tracking policy of one scalable target (PutScalingPolicy's input, as accepted)."""

    policy_name: str
    policy_arn: str
    service_namespace: str
    resource_id: str
    scalable_dimension: str
    policy_type: str
    target_tracking: JsonObject  # TargetTrackingScalingPolicyConfiguration
    creation_time: float
    step_scaling: JsonObject | None = None  # StepScalingPolicyConfiguration (scale from zero, serverless/)

    @property
    def target_key(self) -> tuple[str, str, str]:
        return (self.service_namespace, self.resource_id, self.scalable_dimension)
