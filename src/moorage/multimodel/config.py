"""What CreateModel accepts for `Mode: MultiModel`, and how moorage asks whether a container is one.

SageMaker takes an S3 prefix in ModelDataUrl; moorage also takes a local directory (`file://` or an
absolute path), as it does for single models. The checks run at CreateModel, so a model that could
never serve is refused with a message that says what to change, instead of failing at the first call.
"""

from __future__ import annotations

from collections.abc import Mapping

from moorage.control.records import Deployment
from moorage.errors import ValidationException

__all__ = ["MULTI_MODEL", "check_container", "is_multi_model", "refuse_combinations"]

MULTI_MODEL = "MultiModel"


def is_multi_model(container: object) -> bool:
    """Whether a stored container (control.records.ContainerSpec) serves many models."""
    return getattr(container, "mode", "SingleModel") == MULTI_MODEL


def check_container(container: Mapping[str, object]) -> tuple[str, str]:
    """(Mode, ModelCacheSetting) of a CreateModel container; ValidationException when they cannot work."""
    mode = str(container.get("Mode") or "SingleModel")
    config = container.get("MultiModelConfig")
    setting = "Enabled"
    if isinstance(config, Mapping):
        setting = str(config.get("ModelCacheSetting") or "Enabled")
    if mode != MULTI_MODEL:
        if config is not None:
            raise ValidationException(
                "MultiModelConfig is only valid for a container with Mode MultiModel; "
                "set Mode to MultiModel or remove MultiModelConfig."
            )
        return mode, setting
    url = str(container.get("ModelDataUrl") or "")
    if container.get("ModelDataSource") is not None or not url:
        raise ValidationException(
            "A container with Mode MultiModel takes its models from ModelDataUrl, an S3 prefix such as "
            "s3://bucket/models/ (or a local directory); ModelDataSource is not used for multi-model "
            "endpoints."
        )
    if url.startswith(("http://", "https://")):
        raise ValidationException(
            f"ModelDataUrl {url} cannot be a multi-model prefix: give an s3:// prefix such as "
            "s3://bucket/models/, or a local directory."
        )
    if url.endswith((".tar.gz", ".tgz", ".tar")):
        raise ValidationException(
            f"ModelDataUrl {url} names one archive, but Mode MultiModel needs the prefix that holds the "
            "archives (for example s3://bucket/models/); each InvokeEndpoint names one with TargetModel."
        )
    return mode, setting


def refuse_combinations(deployment: Deployment) -> None:
    """ValidationException at CreateEndpoint/UpdateEndpoint for what a multi-model variant cannot do here,
    rather than an endpoint that accepts it and ignores it."""
    multi = [spec for spec in deployment.variants if is_multi_model(spec.container)]
    if not multi:
        return
    names = ", ".join(spec.variant_name for spec in multi)
    if deployment.async_config:
        raise ValidationException(
            "AsyncInferenceConfig cannot be used with a multi-model model: InvokeEndpointAsync has no "
            f"TargetModel (production variant {names}). Use InvokeEndpoint with TargetModel."
        )
    if any(spec.serverless for spec in multi):
        raise ValidationException(
            f"A serverless variant cannot serve a multi-model model (production variant {names}), as in "
            "SageMaker; give the variant InstanceType and InitialInstanceCount."
        )
    if any(spec.shadow for spec in deployment.variants):
        raise ValidationException(
            "ShadowProductionVariants cannot be used on an endpoint with a multi-model model "
            f"(production variant {names}) in moorage yet."
        )
