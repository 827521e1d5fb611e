"""CreateEndpoint, DescribeEndpoint, ListEndpoints, UpdateEndpoint, UpdateEndpointWeightsAndCapacities,
DeleteEndpoint (spec §3.3, §3.4).

These only record intent: each writes the endpoint's new status and the deployment it should reach,
and returns at once. The reconciler starts and stops instances and reports back through the store
(`endpoint_in_service`, `endpoint_failed`, ...). A deployment is frozen here, with every model resolved,
so later changes to configs or models never reach a running endpoint (spec §3.3).
"""

from __future__ import annotations

from dataclasses import replace

from moorage.capture.config import capture_summary
from moorage.control.arns import ControlContext, ResourceKind, already_exists, not_found
from moorage.control.lifecycle import Action, refusal, transition
from moorage.control.records import (
    Deployment,
    EndpointConfigRecord,
    EndpointRecord,
    EndpointStatus,
    JsonObject,
    VariantSpec,
    VariantState,
)
from moorage.control.store import ListQuery, Store
from moorage.control.tags import refuse_reserved_keys
from moorage.control.unsupported import refuse_unsupported
from moorage.control.validation import validate
from moorage.deployments.describe import describe_deployment, with_deployment_config
from moorage.errors import ValidationException
from moorage.multimodel.config import refuse_combinations
from moorage.serverless.describe import (
    SERVERLESS_INSTANCE_TYPE,
    scales_to_zero,
    serverless_instance_count,
    serverless_summary,
)

__all__ = [
    "create_endpoint",
    "delete_endpoint",
    "describe_endpoint",
    "list_endpoints",
    "update_endpoint",
    "update_endpoint_weights_and_capacities",
]

_KIND = ResourceKind.ENDPOINT


def create_endpoint(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("CreateEndpoint", request)
    name = request["EndpointName"]
    refuse_reserved_keys(request.get("Tags", []))
    refuse_unsupported("CreateEndpoint", request)
    if store.get_endpoint(name) is not None:
        raise already_exists(ctx, _KIND, name)
    now = ctx.clock()
    deployment = _freeze(store, ctx, _config(store, ctx, request["EndpointConfigName"]), now)
    record = EndpointRecord(
        name=name,
        arn=ctx.arn(_KIND, name),
        status=EndpointStatus.CREATING,
        creation_time=now,
        last_modified_time=now,
        deployment=None,
        pending=deployment,
        variants=tuple(
            VariantState(spec.variant_name, 0.0, spec.weight, 0, spec.instance_count, shadow=spec.shadow)
            for spec in deployment.variants
        ),
        tags=tuple(request.get("Tags", [])),
    )
    if not store.add_endpoint(record):
        raise already_exists(ctx, _KIND, name)
    return {"EndpointArn": record.arn}


def describe_endpoint(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DescribeEndpoint", request)
    record = _endpoint(store, ctx, request["EndpointName"])
    result: JsonObject = {
        "EndpointName": record.name,
        "EndpointArn": record.arn,
    }
    if record.config_name is not None:
        result["EndpointConfigName"] = record.config_name
    serving = record.deployment or record.pending
    specs = {spec.variant_name: spec for spec in serving.variants} if serving else {}
    variants = [_variant_summary(state, specs.get(state.variant_name), serving) for state in record.variants]
    shadows = [v for v, state in zip(variants, record.variants, strict=True) if state.shadow]
    variants = [v for v, state in zip(variants, record.variants, strict=True) if not state.shadow]
    if variants:
        result["ProductionVariants"] = variants
    if shadows:
        result["ShadowProductionVariants"] = shadows
    result["EndpointStatus"] = record.status.value
    if serving is not None and serving.async_config is not None:
        result["AsyncInferenceConfig"] = serving.async_config
    if serving is not None and serving.capture_config is not None:
        result["DataCaptureConfig"] = capture_summary(serving.capture_config)
    if record.failure_reason:
        result["FailureReason"] = record.failure_reason
    result["CreationTime"] = record.creation_time
    result["LastModifiedTime"] = record.last_modified_time
    if record.status is EndpointStatus.UPDATING and record.pending is not None:
        result["PendingDeploymentSummary"] = _pending_summary(record, record.pending)
    describe_deployment(record, result)  # LastDeploymentConfig, where a guarded update stands
    return result


def list_endpoints(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("ListEndpoints", request)
    page = store.page_endpoints(ListQuery.from_request(request))
    result: JsonObject = {
        "Endpoints": [
            {
                "EndpointName": endpoint.name,
                "EndpointArn": endpoint.arn,
                "CreationTime": endpoint.creation_time,
                "LastModifiedTime": endpoint.last_modified_time,
                "EndpointStatus": endpoint.status.value,
            }
            for endpoint in page.items
        ]
    }
    if page.next_token is not None:
        result["NextToken"] = page.next_token
    return result


def update_endpoint(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("UpdateEndpoint", request)
    refuse_unsupported("UpdateEndpoint", request)
    name = request["EndpointName"]
    _allow(ctx, _endpoint(store, ctx, name), Action.UPDATE)
    now = ctx.clock()
    deployment = _freeze(store, ctx, _config(store, ctx, request["EndpointConfigName"]), now)
    excluded = {item["VariantPropertyType"] for item in request.get("ExcludeRetainedVariantProperties", [])}
    retain = bool(request.get("RetainAllVariantProperties"))

    def change(record: EndpointRecord) -> EndpointRecord:
        status = _allow(ctx, record, Action.UPDATE)
        pending = deployment
        if retain and record.deployment is not None:
            # RetainAllVariantProperties keeps today's weight and count of variants that keep their
            # name, except the properties listed in ExcludeRetainedVariantProperties.
            old = {spec.variant_name: spec for spec in record.deployment.variants}
            pending = replace(
                deployment,
                variants=tuple(
                    _retained(spec, old.get(spec.variant_name), excluded) for spec in deployment.variants
                ),
            )
        # DeploymentConfig (or, with RetainDeploymentConfig, the last one): a guarded update (deployments/).
        pending = with_deployment_config(request, record, pending, now)
        return replace(record, status=status, pending=pending, failure_reason=None, last_modified_time=now)

    updated = store.modify_endpoint(name, change)
    if updated is None:
        raise not_found(ctx, _KIND, name)
    return {"EndpointArn": updated.arn}


def update_endpoint_weights_and_capacities(
    store: Store, ctx: ControlContext, request: JsonObject
) -> JsonObject:
    request = validate("UpdateEndpointWeightsAndCapacities", request)
    name = request["EndpointName"]
    wanted = request["DesiredWeightsAndCapacities"]
    names = [item["VariantName"] for item in wanted]
    if len(set(names)) != len(names):
        raise ValidationException("Each variant may appear only once in DesiredWeightsAndCapacities.")
    for item in wanted:
        if "ServerlessUpdateConfig" in item:
            raise ValidationException(
                "ServerlessUpdateConfig is not supported by moorage: change a serverless variant with "
                "UpdateEndpoint and a new endpoint configuration."
            )
        if "DesiredWeight" not in item and "DesiredInstanceCount" not in item:
            raise ValidationException(
                f'Variant "{item["VariantName"]}": give DesiredWeight, DesiredInstanceCount or both.'
            )
    record = _endpoint(store, ctx, name)
    deployed = record.deployment.variants if record.deployment is not None else ()
    serverless = {spec.variant_name for spec in deployed if spec.serverless is not None}
    for item in wanted:
        if "DesiredInstanceCount" in item and item["VariantName"] in serverless:
            raise ValidationException(
                f'Variant "{item["VariantName"]}" is serverless: it has no instance count to set; its '
                "instances follow its traffic (ProvisionedConcurrency keeps some warm)."
            )
        if item.get("DesiredInstanceCount") == 0 and not scales_to_zero(record.deployment):
            raise ValidationException(
                f'Variant "{item["VariantName"]}": DesiredInstanceCount must be at least 1 (0 only for an '
                "asynchronous inference endpoint, which keeps its queue while it has no instance)."
            )
    _allow(ctx, record, Action.UPDATE_WEIGHTS)
    now = ctx.clock()

    def change(record: EndpointRecord) -> EndpointRecord:
        status = _allow(ctx, record, Action.UPDATE_WEIGHTS)
        serving = record.deployment
        assert serving is not None  # InService always has a serving deployment
        specs = {spec.variant_name: spec for spec in serving.variants}
        unknown = [variant for variant in names if variant not in specs]
        if unknown:
            raise ValidationException(
                f'The endpoint "{record.arn}" has no production variant named {", ".join(unknown)}.'
            )
        changes = {item["VariantName"]: item for item in wanted}
        variants = tuple(
            replace(
                spec,
                weight=float(changes[spec.variant_name].get("DesiredWeight", spec.weight)),
                instance_count=changes[spec.variant_name].get("DesiredInstanceCount", spec.instance_count),
            )
            if spec.variant_name in changes
            else spec
            for spec in serving.variants
        )
        desired = {spec.variant_name: spec for spec in variants}
        states = tuple(
            replace(
                state,
                desired_weight=desired[state.variant_name].weight,
                desired_instance_count=desired[state.variant_name].instance_count,
            )
            if state.variant_name in desired
            else state
            for state in record.variants
        )
        return replace(
            record,
            status=status,
            pending=replace(serving, variants=variants),
            variants=states,
            failure_reason=None,
            last_modified_time=now,
        )

    updated = store.modify_endpoint(name, change)
    if updated is None:
        raise not_found(ctx, _KIND, name)
    return {"EndpointArn": updated.arn}


def delete_endpoint(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DeleteEndpoint", request)
    name = request["EndpointName"]
    now = ctx.clock()

    def change(record: EndpointRecord) -> EndpointRecord:
        status = _allow(ctx, record, Action.DELETE)
        if record.status is status:
            return record  # already Deleting: nothing changes
        return replace(record, status=status, last_modified_time=now)

    if store.modify_endpoint(name, change) is None:
        raise not_found(ctx, _KIND, name)
    return {}


def _endpoint(store: Store, ctx: ControlContext, name: str) -> EndpointRecord:
    record = store.get_endpoint(name)
    if record is None:
        raise not_found(ctx, _KIND, name)
    return record


def _config(store: Store, ctx: ControlContext, name: str) -> EndpointConfigRecord:
    config = store.get_endpoint_config(name)
    if config is None:
        raise not_found(ctx, ResourceKind.ENDPOINT_CONFIG, name)
    return config


def _allow(ctx: ControlContext, record: EndpointRecord, action: Action) -> EndpointStatus:
    """The status `action` leads to, or the ValidationException SageMaker gives (spec §3.4, §3.5)."""
    status = transition(action, record.status)
    if status is None:
        reason = refusal(action, record.status)
        assert reason is not None
        raise ValidationException(reason.message(record.arn, action))
    return status


def _freeze(store: Store, ctx: ControlContext, config: EndpointConfigRecord, now: float) -> Deployment:
    """The config with every model resolved, as it will run (SageMaker copies it the same way)."""
    variants = []
    shadows = config.request.get("ShadowProductionVariants", [])
    for variant in [*config.production_variants, *shadows]:
        model = store.get_model(variant["ModelName"])
        if model is None:
            raise not_found(ctx, ResourceKind.MODEL, variant["ModelName"])
        startup = variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
        download = variant.get("ModelDataDownloadTimeoutInSeconds")
        variants.append(
            VariantSpec(
                variant_name=variant["VariantName"],
                model_name=model.name,
                container=model.container,
                instance_type=variant.get("InstanceType", SERVERLESS_INSTANCE_TYPE),
                instance_count=serverless_instance_count(variant),
                weight=float(variant["InitialVariantWeight"]),
                startup_timeout_s=float(startup) if startup is not None else None,
                download_timeout_s=float(download) if download is not None else None,
                serverless=variant.get("ServerlessConfig"),
                shadow=any(variant is shadow for shadow in shadows),
            )
        )
    deployment = Deployment(
        config_name=config.name,
        variants=tuple(variants),
        resolved_at=now,
        async_config=config.request.get("AsyncInferenceConfig"),
        capture_config=config.request.get("DataCaptureConfig"),
    )
    refuse_combinations(deployment)  # what a multi-model variant cannot do (moorage.multimodel)
    return deployment


def _retained(spec: VariantSpec, old: VariantSpec | None, excluded: set[str]) -> VariantSpec:
    if old is None:
        return spec
    weight = spec.weight if "DesiredWeight" in excluded else old.weight
    count = spec.instance_count if "DesiredInstanceCount" in excluded else old.instance_count
    return replace(spec, weight=weight, instance_count=count)


def _deployed_images(spec: VariantSpec | None, deployment: Deployment | None) -> list[JsonObject]:
    if spec is None or not spec.container.image:
        return []
    image: JsonObject = {"SpecifiedImage": spec.container.image, "ResolvedImage": spec.container.image}
    if deployment is not None and deployment.resolved_at is not None:
        image["ResolutionTime"] = deployment.resolved_at
    return [image]


def _variant_summary(
    state: VariantState, spec: VariantSpec | None, deployment: Deployment | None
) -> JsonObject:
    summary: JsonObject = {"VariantName": state.variant_name}
    images = _deployed_images(spec, deployment)
    if images:
        summary["DeployedImages"] = images
    summary.update(
        CurrentWeight=state.current_weight,
        DesiredWeight=state.desired_weight,
        CurrentInstanceCount=state.current_instance_count,
        DesiredInstanceCount=state.desired_instance_count,
    )
    if spec is not None and spec.serverless is not None:
        serverless_summary(summary, spec.serverless)
    return summary


def _pending_summary(record: EndpointRecord, pending: Deployment) -> JsonObject:
    """What an update is rolling out, shown while the old deployment still serves (Updating)."""
    variants = []
    for spec in pending.variants:
        summary: JsonObject = {"VariantName": spec.variant_name}
        images = _deployed_images(spec, pending)
        if images:
            summary["DeployedImages"] = images
        summary.update(
            DesiredWeight=spec.weight,
            DesiredInstanceCount=spec.instance_count,
            InstanceType=spec.instance_type,
        )
        if spec.serverless is not None:
            serverless_summary(summary, spec.serverless, pending=True)
        variants.append(summary)
    return {
        "EndpointConfigName": pending.config_name,
        "ProductionVariants": variants,
        "StartTime": record.last_modified_time,
    }
