"""What moorage does with each member of the requests that define a deployment.

SageMaker's API has grown many members that change what a deployment does (multi-model mode, async
inference, data capture, guardrails, accelerators). Accepting one and then not honouring it would be
silent wrong behaviour: the user believes their traffic is captured, or their update rolls back on an
alarm, and it is not. So every input member of CreateModel, CreateEndpointConfig, CreateEndpoint and
UpdateEndpoint is classified here, once:

- implemented elsewhere in `control/` (not listed here);
- `IGNORED`: recorded and echoed by Describe*, with no effect, because on one machine it has no meaning
  (a VPC, a KMS key for the instance volume); each reason is repeated in docs/compatibility.md;
- `REFUSED`: a ValidationException that names the member, when moorage does not do what it asks.

`tests/unit/control/test_unsupported_members.py` checks that every member of botocore's input shapes
is implemented or listed here, so a member that a newer botocore adds cannot slip through unclassified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from moorage.control.records import JsonObject
from moorage.errors import ValidationException

__all__ = ["IGNORED", "REFUSED", "refuse_unsupported"]


@dataclass(frozen=True)
class Refusal:
    """A member moorage refuses, and when: `applies` sees the member's value (None: always)."""

    reason: str
    applies: Callable[[object], bool] | None = None

    def refuses(self, value: object) -> bool:
        return self.applies is None or self.applies(value)


def _truthy(value: object) -> bool:
    return bool(value)


def _enabled(value: object) -> bool:
    return isinstance(value, Mapping) and str(value.get("Status", "")).upper() == "ENABLED"


# Member paths are "Operation.Member", "Container.Member" (PrimaryContainer and Containers[] entries)
# and "Variant.Member" (ProductionVariants[] entries).
IGNORED: Mapping[str, str] = {
    "CreateModel.ExecutionRoleArn": "models run with no AWS credentials at all (the worker sandbox); "
    "the role is recorded so that DescribeModel echoes it",
    "CreateModel.VpcConfig": "workers use the host's network; there is no VPC on one machine",
    "CreateModel.InferenceExecutionConfig": "it only orders several containers, and moorage runs one",
    "Container.Image": "moorage runs its own PyTorch serving stack, the equivalent of SageMaker's "
    "PyTorch inference image; the image URI is recorded and echoed",
    "Container.ImageConfig": "no container image is pulled, so there is no registry to configure",
    "Container.ContainerHostname": "workers have no hostname of their own",
    "Container.ContainerMetricsConfig": "moorage's /metrics are always on",
    "CreateEndpointConfig.KmsKeyId": "no volume is attached: the model's files live in the server's "
    "data dir; encrypt that disk to get encryption at rest",
    "CreateEndpointConfig.ExecutionRoleArn": "as for CreateModel: workers have no AWS credentials",
    "CreateEndpointConfig.VpcConfig": "workers use the host's network",
    "CreateEndpointConfig.MetricsConfig": "moorage's /metrics are always on, at full resolution",
    "CreateEndpointConfig.TracingConfig": "moorage does not export traces",
    "CreateEndpointConfig.CrossRegionTrafficConfig": "one server is one region",
    "Variant.VolumeSizeInGB": "the model's files use the server's disk (see MOORAGE_CACHE_MAX_BYTES)",
    "Variant.VariantInstanceProvisionTimeoutInSeconds": "instances are processes, provisioned at once",
    "Variant.CoreDumpConfig": "a crashing worker is logged and replaced; no core dump is copied to S3",
    "Variant.InferenceAmiVersion": "there is no machine image to choose",
    "Variant.CapacityReservationConfig": "the machine's capacity is all there is",
    "Variant.RoutingConfig": "moorage always routes to the least-busy ready worker, which is "
    "LEAST_OUTSTANDING_REQUESTS; RANDOM is not reproduced",
}

REFUSED: Mapping[str, Refusal] = {
    "Container.AdditionalModelDataSources": Refusal(
        "AdditionalModelDataSources is not supported by moorage: put every file the handler needs "
        "into the one model archive (ModelDataUrl)."
    ),
    "Container.InferenceSpecificationName": Refusal(
        "InferenceSpecificationName (model packages) is not supported by moorage."
    ),
    "CreateModel.EnableNetworkIsolation": Refusal(
        "EnableNetworkIsolation is not supported by moorage: workers keep the host's network "
        "(handlers may fetch URLs). Leave it out or set it to false.",
        _truthy,
    ),
    "CreateEndpointConfig.EnableNetworkIsolation": Refusal(
        "EnableNetworkIsolation is not supported by moorage: workers keep the host's network. "
        "Leave it out or set it to false.",
        _truthy,
    ),
    "CreateEndpointConfig.ExplainerConfig": Refusal(
        "ExplainerConfig (SageMaker Clarify explainers) is not supported by moorage."
    ),
    "Variant.AcceleratorType": Refusal(
        "AcceleratorType (Elastic Inference) is not supported by moorage; choose a GPU instance type "
        "(ml.g*/ml.p*) to get a GPU."
    ),
    "Variant.InstancePools": Refusal("InstancePools is not supported by moorage: give one InstanceType."),
    "Variant.AcceleratorPartitionLayouts": Refusal(
        "AcceleratorPartitionLayouts is not supported by moorage."
    ),
    "Variant.ManagedInstanceScaling": Refusal(
        "ManagedInstanceScaling is not supported by moorage; use Application Auto Scaling's target "
        "tracking (RegisterScalableTarget, PutScalingPolicy), which moorage serves.",
        _enabled,
    ),
    "Variant.EnableSSMAccess": Refusal(
        "EnableSSMAccess is not supported by moorage: there is no SSM agent; the workers' output is in "
        "the endpoint's logs (moorage logs).",
        _truthy,
    ),
    "CreateEndpoint.DeploymentConfig": Refusal(
        "DeploymentConfig on CreateEndpoint is not supported by moorage: give it to UpdateEndpoint, where "
        "canary, linear and rolling updates with auto-rollback alarms are honoured.",
        _truthy,
    ),
}


def refuse_unsupported(operation: str, request: JsonObject) -> None:
    """Raise ValidationException for the first member of `request` that moorage refuses."""
    _check(operation, request)
    if operation == "CreateModel":
        containers = [request.get("PrimaryContainer"), *(request.get("Containers") or [])]
        for container in containers:
            if isinstance(container, Mapping):
                _check("Container", container)
    if operation == "CreateEndpointConfig":
        shadows = request.get("ShadowProductionVariants") or []
        for variant in [*(request.get("ProductionVariants") or []), *shadows]:
            if isinstance(variant, Mapping):
                _check("Variant", variant)


def _check(scope: str, members: Mapping[str, object]) -> None:
    for member, value in members.items():
        refusal = REFUSED.get(f"{scope}.{member}")
        if refusal is not None and refusal.refuses(value):
            raise ValidationException(refusal.reason)
