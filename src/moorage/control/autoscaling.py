"""Application Auto Scaling, the part a SageMaker endpoint uses: scalable targets and target tracking.

RegisterScalableTarget, DescribeScalableTargets, DeregisterScalableTarget, PutScalingPolicy,
DescribeScalingPolicies and DeleteScalingPolicy, checked against botocore's `application-autoscaling`
model and served as its AWS JSON 1.1 protocol (`X-Amz-Target: AnyScaleFrontendService.<Operation>`),
so an unchanged `boto3.client("application-autoscaling")` and the AWS CLI work. Only what a SageMaker
variant can use is accepted: namespace `sagemaker`, resource `endpoint/<endpoint>/variant/<variant>`,
dimension `sagemaker:variant:DesiredInstanceCount`, and TargetTrackingScaling on the predefined metric
SageMakerVariantInvocationsPerInstance (there is no CloudWatch here for custom metrics or step alarms),
plus the async scale-to-zero recipe: MinCapacity 0, target tracking on ApproximateBacklogSizePerInstance
and a StepScaling policy run on HasBacklogWithoutCapacity (serverless/backlog.py).

Like the SageMaker operations, these only record intent in the store; `control/autoscaler.py` reads it
and moves instance counts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from moorage.control.arns import ControlContext
from moorage.control.records import JsonObject, ScalableTarget, ScalingPolicy
from moorage.control.store import Store
from moorage.control.validation import validate
from moorage.errors import ObjectNotFoundException, ValidationException
from moorage.serverless.backlog import BACKLOG_METRIC, check_step_scaling, tracks_backlog
from moorage.serverless.describe import scales_to_zero

__all__ = [
    "DIMENSION",
    "METRIC",
    "NAMESPACE",
    "OPERATIONS",
    "SERVICE",
    "TARGET_PREFIX",
    "parse_resource_id",
]

SERVICE = "application-autoscaling"  # botocore's name for the service model
TARGET_PREFIX = "AnyScaleFrontendService."
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
# Without a RoleARN, Application Auto Scaling uses (and reports) its service-linked role.
_SERVICE_LINKED_ROLE = (
    "arn:aws:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)
_UNSUPPORTED = "Unsupported service namespace, resource type or scalable dimension"
_RESOURCE = re.compile(r"^endpoint/(?P<endpoint>[^/]+)/variant/(?P<variant>[^/]+)$")
_SUSPENDED = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")
_PAGE = 50

_T = TypeVar("_T")


def parse_resource_id(resource_id: str) -> tuple[str, str] | None:
    """(endpoint, variant) of `endpoint/<endpoint>/variant/<variant>`, or None."""
    match = _RESOURCE.match(resource_id)
    return (match["endpoint"], match["variant"]) if match else None


def _key(request: JsonObject) -> tuple[str, str, str]:
    """The target a request names, refused unless it is a SageMaker variant's instance count."""
    namespace, resource_id, dimension = (
        request["ServiceNamespace"],
        request["ResourceId"],
        request["ScalableDimension"],
    )
    if namespace != NAMESPACE or dimension != DIMENSION or parse_resource_id(resource_id) is None:
        raise ValidationException(_UNSUPPORTED)
    return namespace, resource_id, dimension


def _target_missing(key: tuple[str, str, str], verb: str) -> ObjectNotFoundException:
    namespace, resource_id, dimension = key
    return ObjectNotFoundException(
        f"No scalable target {verb} for service namespace: {namespace}, resource ID: {resource_id}, "
        f"scalable dimension: {dimension}"
    )


# Scalable targets -----------------------------------------------------------------------------------
def register_scalable_target(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("RegisterScalableTarget", request, service=SERVICE)
    key = _key(request)
    endpoint, variant = parse_resource_id(key[1]) or ("", "")
    _require_variant(store, endpoint, variant)
    record = store.get_endpoint(endpoint)
    zero_allowed = record is not None and scales_to_zero(record.deployment or record.pending)
    suspended = {name: bool(request.get("SuspendedState", {}).get(name, False)) for name in _SUSPENDED}

    def change(current: ScalableTarget | None) -> ScalableTarget:
        if current is None:
            if "MinCapacity" not in request or "MaxCapacity" not in request:
                raise ValidationException(
                    "MinCapacity and MaxCapacity are required to register a new scalable target."
                )
            target = ScalableTarget(
                service_namespace=key[0],
                resource_id=key[1],
                scalable_dimension=key[2],
                min_capacity=request["MinCapacity"],
                max_capacity=request["MaxCapacity"],
                arn=f"arn:aws:application-autoscaling:{ctx.region}:{ctx.account_id}:scalable-target/"
                f"{uuid.uuid4().hex}",
                role_arn=request.get("RoleARN") or _SERVICE_LINKED_ROLE.format(account=ctx.account_id),
                creation_time=ctx.clock(),
                suspended_state=suspended,
            )
        else:
            # Registering a target again updates what the request gives and keeps the rest.
            target = replace(
                current,
                min_capacity=request.get("MinCapacity", current.min_capacity),
                max_capacity=request.get("MaxCapacity", current.max_capacity),
                role_arn=request.get("RoleARN") or current.role_arn,
                suspended_state={**current.suspended_state, **request.get("SuspendedState", {})},
            )
        if target.min_capacity < 1 and not (target.min_capacity == 0 and zero_allowed):
            raise ValidationException(
                "The minimum capacity of a SageMaker endpoint variant must be at least 1 (0 only for an "
                "asynchronous inference endpoint, whose queue keeps requests while it has no instance)."
            )
        if target.min_capacity > target.max_capacity:
            raise ValidationException("Minimum capacity cannot be greater than maximum capacity")
        return target

    return {"ScalableTargetARN": store.register_scalable_target(key, change).arn}


def _require_variant(store: Store, endpoint: str, variant: str) -> None:
    record = store.get_endpoint(endpoint)
    deployment = record and (record.deployment or record.pending)
    if deployment is None or variant not in {spec.variant_name for spec in deployment.variants}:
        raise ValidationException(
            f"The endpoint variant endpoint/{endpoint}/variant/{variant} does not exist: create the endpoint "
            "first, then register its variant."
        )


def describe_scalable_targets(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DescribeScalableTargets", request, service=SERVICE)
    wanted_ids = set(request.get("ResourceIds", []))
    dimension = request.get("ScalableDimension")
    targets = [
        target
        for target in store.list_scalable_targets(request["ServiceNamespace"])
        if (not wanted_ids or target.resource_id in wanted_ids)
        and (dimension is None or target.scalable_dimension == dimension)
    ]
    page, token = _paginate(store, "targets", request, targets)
    result: JsonObject = {"ScalableTargets": [_target_json(target) for target in page]}
    if token is not None:
        result["NextToken"] = token
    return result


def deregister_scalable_target(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DeregisterScalableTarget", request, service=SERVICE)
    key = (request["ServiceNamespace"], request["ResourceId"], request["ScalableDimension"])
    if not store.deregister_scalable_target(key):
        raise _target_missing(key, "found")
    return {}


def _target_json(target: ScalableTarget) -> JsonObject:
    return {
        "ServiceNamespace": target.service_namespace,
        "ResourceId": target.resource_id,
        "ScalableDimension": target.scalable_dimension,
        "MinCapacity": target.min_capacity,
        "MaxCapacity": target.max_capacity,
        "RoleARN": target.role_arn,
        "CreationTime": target.creation_time,
        "SuspendedState": {name: bool(target.suspended_state.get(name, False)) for name in _SUSPENDED},
        "ScalableTargetARN": target.arn,
    }


# Scaling policies -----------------------------------------------------------------------------------
def put_scaling_policy(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("PutScalingPolicy", request, service=SERVICE)
    key = _key(request)
    name = request["PolicyName"]
    policy_type = request.get("PolicyType", "StepScaling")  # the service's default
    step: JsonObject | None = None
    config: JsonObject = {}
    if policy_type == "StepScaling":
        # Run when HasBacklogWithoutCapacity is 1, the alarm SageMaker's async recipe pairs it with.
        step = check_step_scaling(request.get("StepScalingPolicyConfiguration"))
    elif policy_type != "TargetTrackingScaling":
        raise ValidationException(
            f"PolicyType {policy_type} is not supported here: moorage scales endpoint variants with "
            "TargetTrackingScaling (and StepScaling for an async endpoint's scale from zero)."
        )
    else:
        config = _tracking_config(request.get("TargetTrackingScalingPolicyConfiguration"))
    namespace, resource_id, _ = key
    policy = ScalingPolicy(
        policy_name=name,
        policy_arn=f"arn:aws:autoscaling:{ctx.region}:{ctx.account_id}:scalingPolicy:{uuid.uuid4()}:"
        f"resource/{namespace}/{resource_id}:policyName/{name}",
        service_namespace=namespace,
        resource_id=resource_id,
        scalable_dimension=key[2],
        policy_type=policy_type,
        target_tracking=config,
        creation_time=ctx.clock(),
        step_scaling=step,
    )
    stored = store.put_scaling_policy(policy)
    if stored is None:
        raise _target_missing(key, "registered")
    # Alarms are the CloudWatch alarms AWS creates for the policy; moorage evaluates it itself.
    return {"PolicyARN": stored.policy_arn, "Alarms": []}


def _tracking_config(config: JsonObject | None) -> JsonObject:
    if config is None:
        raise ValidationException(
            "TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy."
        )
    metric = config.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
    if not tracks_backlog(config) and ("CustomizedMetricSpecification" in config or metric != METRIC):
        raise ValidationException(
            f"moorage tracks the predefined metric {METRIC} (give it as PredefinedMetricSpecification."
            f"PredefinedMetricType), or for an async endpoint the customized metric {BACKLOG_METRIC} "
            "(CustomizedMetricSpecification.MetricName, Namespace AWS/SageMaker)."
        )
    if config["TargetValue"] <= 0:
        raise ValidationException("TargetValue must be greater than 0.")
    return config


def describe_scaling_policies(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DescribeScalingPolicies", request, service=SERVICE)
    names = set(request.get("PolicyNames", []))
    resource_id, dimension = request.get("ResourceId"), request.get("ScalableDimension")
    policies = [
        policy
        for policy in store.list_scaling_policies(request["ServiceNamespace"])
        if (not names or policy.policy_name in names)
        and (resource_id is None or policy.resource_id == resource_id)
        and (dimension is None or policy.scalable_dimension == dimension)
    ]
    page, token = _paginate(store, "policies", request, policies)
    result: JsonObject = {"ScalingPolicies": [_policy_json(policy) for policy in page]}
    if token is not None:
        result["NextToken"] = token
    return result


def delete_scaling_policy(store: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
    request = validate("DeleteScalingPolicy", request, service=SERVICE)
    key = (request["ServiceNamespace"], request["ResourceId"], request["ScalableDimension"])
    if not store.delete_scaling_policy(key, request["PolicyName"]):
        namespace, resource_id, dimension = key
        raise ObjectNotFoundException(
            f"No scaling policy found for service namespace: {namespace}, resource ID: {resource_id}, "
            f"scalable dimension: {dimension}, policy name: {request['PolicyName']}"
        )
    return {}


def _policy_json(policy: ScalingPolicy) -> JsonObject:
    return {
        "PolicyARN": policy.policy_arn,
        "PolicyName": policy.policy_name,
        "ServiceNamespace": policy.service_namespace,
        "ResourceId": policy.resource_id,
        "ScalableDimension": policy.scalable_dimension,
        "PolicyType": policy.policy_type,
        **(
            {"StepScalingPolicyConfiguration": policy.step_scaling}
            if policy.step_scaling is not None
            else {"TargetTrackingScalingPolicyConfiguration": policy.target_tracking}
        ),
        "Alarms": [],
        "CreationTime": policy.creation_time,
    }


def _paginate(
    store: Store, kind: str, request: JsonObject, items: Sequence[_T]
) -> tuple[list[_T], str | None]:
    """One page of `items` from the request's NextToken (a signed offset into this very listing)."""
    limit = request.get("MaxResults", _PAGE)
    scope = {key: value for key, value in request.items() if key not in ("MaxResults", "NextToken")}
    start = 0
    if "NextToken" in request:
        try:
            cursor = store.decode_token(request["NextToken"])
        except ValidationException:
            cursor = {}
        if (
            cursor.get("kind") != kind
            or cursor.get("scope") != scope
            or not isinstance(cursor.get("at"), int)
        ):
            raise ValidationException("Invalid NextToken: it was not issued for this request.")
        start = cursor["at"]
    end = start + limit
    token = store.encode_token({"kind": kind, "scope": scope, "at": end}) if end < len(items) else None
    return list(items[start:end]), token


Operation = Callable[[Store, ControlContext, JsonObject], JsonObject]

OPERATIONS: dict[str, Operation] = {
    "RegisterScalableTarget": register_scalable_target,
    "DescribeScalableTargets": describe_scalable_targets,
    "DeregisterScalableTarget": deregister_scalable_target,
    "PutScalingPolicy": put_scaling_policy,
    "DescribeScalingPolicies": describe_scaling_policies,
    "DeleteScalingPolicy": delete_scaling_policy,
}
