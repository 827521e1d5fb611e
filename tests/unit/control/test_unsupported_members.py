"""Every member of the requests that define a deployment is implemented, recorded-and-ignored, or refused.

The brief's rule "nothing accepted and ignored": these tests read botocore's own service model, so a
member that a newer botocore adds fails here until someone decides what moorage does with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest

from moorage.control.unsupported import IGNORED, REFUSED, refuse_unsupported
from moorage.errors import ValidationException

# Members the control plane implements (validated, stored, acted on).
IMPLEMENTED = {
    "CreateModel.ModelName",
    "CreateModel.PrimaryContainer",
    "CreateModel.Containers",
    "CreateModel.Tags",
    "Container.ModelDataUrl",
    "Container.ModelDataSource",
    "Container.Environment",
    "Container.ModelPackageName",  # refused in control/models.py with its own message
    "Container.Mode",  # multi-model endpoints (moorage.multimodel)
    "Container.MultiModelConfig",
    "CreateEndpointConfig.EndpointConfigName",
    "CreateEndpointConfig.ProductionVariants",
    "CreateEndpointConfig.Tags",
    "CreateEndpointConfig.AsyncInferenceConfig",  # asynchronous inference (moorage.asyncinf)
    "CreateEndpointConfig.DataCaptureConfig",  # data capture (moorage.capture)
    "Variant.VariantName",
    "Variant.ModelName",
    "Variant.InitialInstanceCount",
    "Variant.InstanceType",
    "Variant.ServerlessConfig",  # serverless variants (moorage.serverless)
    "Variant.InitialVariantWeight",
    "Variant.ModelDataDownloadTimeoutInSeconds",
    "Variant.ContainerStartupHealthCheckTimeoutInSeconds",
    "CreateEndpoint.EndpointName",
    "CreateEndpoint.EndpointConfigName",
    "CreateEndpoint.Tags",
    "UpdateEndpoint.EndpointName",
    "UpdateEndpoint.EndpointConfigName",
    "UpdateEndpoint.RetainAllVariantProperties",
    "UpdateEndpoint.ExcludeRetainedVariantProperties",
    "CreateEndpointConfig.ShadowProductionVariants",  # shadow variants (runtime/shadow.py)
    "UpdateEndpoint.DeploymentConfig",  # guarded updates (moorage.deployments)
    "UpdateEndpoint.RetainDeploymentConfig",
}

_SHAPES = {
    "CreateModel": ("operation", "CreateModel"),
    "CreateEndpointConfig": ("operation", "CreateEndpointConfig"),
    "CreateEndpoint": ("operation", "CreateEndpoint"),
    "UpdateEndpoint": ("operation", "UpdateEndpoint"),
    "Container": ("shape", "ContainerDefinition"),
    "Variant": ("shape", "ProductionVariant"),
}


def _members() -> list[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    names = []
    for scope, (kind, name) in _SHAPES.items():
        shape = model.operation_model(name).input_shape if kind == "operation" else model.shape_for(name)
        names += [f"{scope}.{member}" for member in shape.members]
    return names


@pytest.mark.parametrize("member", _members())
def test_every_member_is_classified(member: str) -> None:
    assert member in IMPLEMENTED or member in IGNORED or member in REFUSED, (
        f"{member} is neither implemented, recorded-and-ignored (control/unsupported.py IGNORED, with "
        "its reason in docs/compatibility.md), nor refused (REFUSED)"
    )


def test_the_lists_do_not_overlap() -> None:
    assert not IMPLEMENTED & set(IGNORED)
    assert not IMPLEMENTED & set(REFUSED)
    assert not set(IGNORED) & set(REFUSED)


def test_every_ignored_member_is_documented_with_its_reason() -> None:
    page = (Path(__file__).parents[3] / "docs" / "compatibility.md").read_text()
    section = page.split("## Recorded and ignored", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Za-z]+\.[A-Za-z]+)`", section))
    assert documented == set(IGNORED)


@pytest.mark.parametrize(
    ("operation", "request_", "named"),
    [
        ("CreateModel", {"EnableNetworkIsolation": True}, "EnableNetworkIsolation"),
        ("CreateEndpointConfig", {"ExplainerConfig": {"ClarifyExplainerConfig": {}}}, "ExplainerConfig"),
        ("CreateEndpointConfig", {"ProductionVariants": [{"AcceleratorType": "ml.eia2.medium"}]}, "Accel"),
        ("CreateEndpoint", {"DeploymentConfig": {"RollingUpdatePolicy": {}}}, "UpdateEndpoint"),
        ("CreateEndpointConfig", {"ShadowProductionVariants": [{"AcceleratorType": "ml.eia2.m"}]}, "Accel"),
    ],
)
def test_refused_members_name_themselves(operation: str, request_: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationException) as refused:
        refuse_unsupported(operation, request_)
    assert named in refused.value.message


@pytest.mark.parametrize(
    ("operation", "request_"),
    [
        ("CreateModel", {"PrimaryContainer": {"Mode": "SingleModel", "Image": "x"}, "ExecutionRoleArn": "r"}),
        (
            "CreateModel",
            {
                "PrimaryContainer": {
                    "Mode": "MultiModel",
                    "MultiModelConfig": {"ModelCacheSetting": "Disabled"},
                },
            },
        ),
        ("CreateModel", {"EnableNetworkIsolation": False}),
        ("CreateEndpointConfig", {"ProductionVariants": [{"VolumeSizeInGB": 30, "EnableSSMAccess": False}]}),
        (
            "UpdateEndpoint",
            {
                "DeploymentConfig": {
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
                    }
                }
            },
        ),
    ],
)
def test_what_moorage_does_or_records_is_accepted(operation: str, request_: dict[str, object]) -> None:
    refuse_unsupported(operation, request_)
