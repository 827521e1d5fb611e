"""CreateModel, DescribeModel, ListModels, DeleteModel (spec §3.3).

A model is a record only: nothing runs until an endpoint uses it, and CreateEndpoint copies what it
needs, so DeleteModel never touches a running endpoint (spec §3.3, documented semantics). CreateModel
does refuse model data that the artifact policy forbids (a metadata, loopback or private address, a
bucket or path outside the allowlists), so that no connection is ever attempted for it
(reliability.md row 12); the fetch checks again, since DNS answers can change.
"""

from __future__ import annotations

from moorage.artifacts.policy import check_source_allowed
from moorage.control.arns import ControlContext, ResourceKind, already_exists, not_found
from moorage.control.records import ContainerSpec, JsonObject, ModelRecord
from moorage.control.store import ListQuery, Store
from moorage.control.tags import refuse_reserved_keys
from moorage.control.unsupported import refuse_unsupported
from moorage.control.validation import output_members, validate
from moorage.errors import ArtifactSourceError, ValidationException
from moorage.multimodel.config import check_container

__all__ = ["create_model", "delete_model", "describe_model", "list_models"]

_KIND = ResourceKind.MODEL


def create_model(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("CreateModel", request)
    name = request["ModelName"]
    refuse_reserved_keys(request.get("Tags", []))
    refuse_unsupported("CreateModel", request)
    container = _container(request)
    _check_sources(ctx, container)
    record = ModelRecord(
        name=name,
        arn=ctx.arn(_KIND, name),
        creation_time=ctx.clock(),
        container=container,
        request=request,
    )
    if not store.add_model(record, request.get("Tags", [])):
        raise already_exists(ctx, _KIND, name)
    return {"ModelArn": record.arn}


def describe_model(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DescribeModel", request)
    record = store.get_model(request["ModelName"])
    if record is None:
        raise not_found(ctx, _KIND, request["ModelName"])
    echoed = {key: value for key, value in record.request.items() if key in output_members("DescribeModel")}
    return {**echoed, "ModelName": record.name, "ModelArn": record.arn, "CreationTime": record.creation_time}


def list_models(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("ListModels", request)
    page = store.list_models(ListQuery.from_request(request))
    result: JsonObject = {
        "Models": [
            {"ModelName": model.name, "ModelArn": model.arn, "CreationTime": model.creation_time}
            for model in page.items
        ]
    }
    if page.next_token is not None:
        result["NextToken"] = page.next_token
    return result


def delete_model(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DeleteModel", request)
    if not store.delete_model(request["ModelName"]):
        raise not_found(ctx, _KIND, request["ModelName"])
    ctx.model_deleted(request["ModelName"])  # its cached trees go once no endpoint uses them
    return {}


def _check_sources(ctx: ControlContext, container: ContainerSpec) -> None:
    """ValidationException when the artifact policy refuses where the model data is."""
    urls = (container.model_data_url, (container.model_data_source or {}).get("S3Uri"))
    for url in urls:
        if not url:
            continue
        try:
            check_source_allowed(url, ctx.artifact_policy)
        except ArtifactSourceError as exc:
            raise ValidationException(exc.message) from None


def _container(request: JsonObject) -> ContainerSpec:
    """The one container moorage runs: PrimaryContainer, or the only entry of Containers."""
    primary = request.get("PrimaryContainer")
    containers = request.get("Containers")
    if primary is not None and containers:
        raise ValidationException("Specify either PrimaryContainer or Containers, not both.")
    if primary is None:
        if not containers:
            raise ValidationException("Either PrimaryContainer or Containers must be specified.")
        if len(containers) > 1:
            # An inference pipeline chains containers; moorage serves one handler per model.
            raise ValidationException(
                f"moorage serves one container per model; Containers has {len(containers)}. "
                "Inference pipelines (serial containers) are not supported."
            )
        primary = containers[0]
    if primary.get("ModelPackageName"):
        raise ValidationException(
            "ModelPackageName is not supported by moorage: give Image and ModelDataUrl (or ModelDataSource)."
        )
    mode, model_cache = check_container(primary)  # Mode MultiModel: moorage.multimodel
    return ContainerSpec(
        image=primary.get("Image"),
        model_data_url=primary.get("ModelDataUrl"),
        model_data_source=(primary.get("ModelDataSource") or {}).get("S3DataSource"),
        environment=dict(primary.get("Environment", {})),
        mode=mode,
        model_cache=model_cache,
    )
