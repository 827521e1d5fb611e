"""CreateEndpointConfig, DescribeEndpointConfig, ListEndpointConfigs, DeleteEndpointConfig (spec §3.3).

An endpoint config is a record only. CreateEndpoint and UpdateEndpoint copy it into the endpoint's
deployment, so deleting it later never touches a running endpoint (spec §3.3, documented semantics).
"""

from __future__ import annotations

from moorage.asyncinf.config import check_async_config
from moorage.capture.config import check_capture_config
from moorage.control.arns import ControlContext, ResourceKind, already_exists, not_found
from moorage.control.records import EndpointConfigRecord, JsonObject
from moorage.control.store import ListQuery, Store
from moorage.control.tags import refuse_reserved_keys
from moorage.control.unsupported import refuse_unsupported
from moorage.control.validation import output_members, validate
from moorage.errors import ValidationException
from moorage.serverless.config import check_serverless_variants

__all__ = [
    "create_endpoint_config",
    "delete_endpoint_config",
    "describe_endpoint_config",
    "list_endpoint_configs",
]

_KIND = ResourceKind.ENDPOINT_CONFIG
DEFAULT_VARIANT_WEIGHT = 1.0  # SageMaker's InitialVariantWeight when none is given


def create_endpoint_config(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("CreateEndpointConfig", request)
    name = request["EndpointConfigName"]
    refuse_reserved_keys(request.get("Tags", []))
    refuse_unsupported("CreateEndpointConfig", request)
    if "AsyncInferenceConfig" in request:
        check_async_config(request["AsyncInferenceConfig"])
    if "DataCaptureConfig" in request:
        check_capture_config(request["DataCaptureConfig"])
    variants = [_check_variant(variant) for variant in request["ProductionVariants"]]
    shadows = [_check_variant(variant) for variant in request.get("ShadowProductionVariants", [])]
    _check_shadows(request, variants, shadows)
    names = [variant["VariantName"] for variant in variants + shadows]
    duplicates = sorted({variant for variant in names if names.count(variant) > 1})
    if duplicates:
        raise ValidationException(
            f"Production variant names must be unique within an endpoint configuration; repeated: "
            f"{', '.join(duplicates)}."
        )
    if store.get_endpoint_config(name) is not None:
        raise already_exists(ctx, _KIND, name)
    models = {variant["ModelName"]: store.get_model(variant["ModelName"]) for variant in variants + shadows}
    for model_name, model in models.items():
        if model is None:
            raise not_found(ctx, ResourceKind.MODEL, model_name)
    check_serverless_variants(request, {name: model.request for name, model in models.items() if model})
    accepted = {**request, "ProductionVariants": variants}
    if shadows:
        accepted["ShadowProductionVariants"] = shadows
    record = EndpointConfigRecord(
        name=name, arn=ctx.arn(_KIND, name), creation_time=ctx.clock(), request=accepted
    )
    if not store.add_endpoint_config(record, request.get("Tags", [])):
        raise already_exists(ctx, _KIND, name)
    return {"EndpointConfigArn": record.arn}


def describe_endpoint_config(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DescribeEndpointConfig", request)
    record = store.get_endpoint_config(request["EndpointConfigName"])
    if record is None:
        raise not_found(ctx, _KIND, request["EndpointConfigName"])
    members = output_members("DescribeEndpointConfig")
    echoed = {key: value for key, value in record.request.items() if key in members}
    return {
        **echoed,
        "EndpointConfigName": record.name,
        "EndpointConfigArn": record.arn,
        "CreationTime": record.creation_time,
    }


def list_endpoint_configs(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("ListEndpointConfigs", request)
    page = store.list_endpoint_configs(ListQuery.from_request(request))
    result: JsonObject = {
        "EndpointConfigs": [
            {
                "EndpointConfigName": config.name,
                "EndpointConfigArn": config.arn,
                "CreationTime": config.creation_time,
            }
            for config in page.items
        ]
    }
    if page.next_token is not None:
        result["NextToken"] = page.next_token
    return result


def delete_endpoint_config(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DeleteEndpointConfig", request)
    if not store.delete_endpoint_config(request["EndpointConfigName"]):
        raise not_found(ctx, _KIND, request["EndpointConfigName"])
    return {}


def _check_shadows(request: JsonObject, variants: list[JsonObject], shadows: list[JsonObject]) -> None:
    """SageMaker's rules for shadow variants: one production variant and one shadow, synchronous only."""
    if not shadows:
        return
    if len(shadows) > 1:
        raise ValidationException(
            "An endpoint configuration may have at most one shadow production variant; "
            f"it has {len(shadows)}."
        )
    if len(variants) != 1:
        raise ValidationException(
            "An endpoint configuration with ShadowProductionVariants must have exactly one production "
            f"variant; it has {len(variants)}."
        )
    if "AsyncInferenceConfig" in request:
        raise ValidationException("ShadowProductionVariants are not supported with AsyncInferenceConfig.")


def _check_variant(variant: JsonObject) -> JsonObject:
    """What moorage needs of a variant beyond the model's shape: a model, and a type and a count
    unless it is serverless (serverless/config.py checks that one)."""
    name = variant["VariantName"]
    needed = ["ModelName"]
    if "ServerlessConfig" not in variant:
        needed += ["InstanceType", "InitialInstanceCount"]
    missing = [member for member in needed if member not in variant]
    if missing:
        raise ValidationException(f'Production variant "{name}" needs {", ".join(missing)}.')
    return {"InitialVariantWeight": DEFAULT_VARIANT_WEIGHT, **variant}
