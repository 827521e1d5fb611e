"""Row and JSON codecs of the control-plane store: how each record becomes the JSON body of its row.

Split out of `control/store.py` so that the store keeps the SQL (transactions, tables, paging) and
this module keeps the record <-> JSON mapping, which is pure and has no database in it. Records are
stored as JSON, never pickled; a field added to a record later gets its default here when an older
row lacks it (`ContainerSpec.mode`, `ContainerSpec.model_cache`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from moorage.control.records import (
    ContainerSpec,
    Deployment,
    EndpointConfigRecord,
    EndpointRecord,
    EndpointStatus,
    JsonObject,
    ModelRecord,
    ScalableTarget,
    ScalingPolicy,
    VariantSpec,
    VariantState,
)

__all__ = [
    "ENDPOINT_COLUMNS",
    "container_from_json",
    "container_json",
    "deployment_from_json",
    "deployment_json",
    "desired_from",
    "endpoint_body",
    "endpoint_config_from_row",
    "endpoint_from_row",
    "json_key",
    "model_from_row",
    "scalable_target_from",
    "scaling_policy_from",
]


def json_key(*parts: str) -> str:
    return json.dumps(parts)


def scalable_target_from(body: str) -> ScalableTarget:
    return ScalableTarget(**json.loads(body))


def scaling_policy_from(body: str) -> ScalingPolicy:
    return ScalingPolicy(**json.loads(body))


ENDPOINT_COLUMNS = "name, arn, status, creation_time, last_modified_time, body"


def model_from_row(row: Any) -> ModelRecord:
    body = json.loads(row[3])
    return ModelRecord(
        name=row[0],
        arn=row[1],
        creation_time=row[2],
        container=container_from_json(body["container"]),
        request=body["request"],
    )


def endpoint_config_from_row(row: Any) -> EndpointConfigRecord:
    return EndpointConfigRecord(
        name=row[0], arn=row[1], creation_time=row[2], request=json.loads(row[3])["request"]
    )


def endpoint_from_row(row: Any, tags: Sequence[JsonObject]) -> EndpointRecord:
    body = json.loads(row[5])
    return EndpointRecord(
        name=row[0],
        arn=row[1],
        status=EndpointStatus(row[2]),
        creation_time=row[3],
        last_modified_time=row[4],
        deployment=deployment_from_json(body["deployment"]),
        pending=deployment_from_json(body["pending"]),
        variants=tuple(VariantState(**state) for state in body["variants"]),
        failure_reason=body["failure_reason"],
        tags=tuple(tags),
    )


def endpoint_body(record: EndpointRecord) -> JsonObject:
    return {
        "deployment": deployment_json(record.deployment),
        "pending": deployment_json(record.pending),
        "variants": [asdict(state) for state in record.variants],
        "failure_reason": record.failure_reason,
    }


def container_json(container: ContainerSpec) -> JsonObject:
    return asdict(container)


def container_from_json(data: JsonObject) -> ContainerSpec:
    return ContainerSpec(
        image=data["image"],
        model_data_url=data["model_data_url"],
        model_data_source=data["model_data_source"],
        environment=dict(data["environment"]),
        mode=data.get("mode", "SingleModel"),
        model_cache=data.get("model_cache", "Enabled"),
    )


def deployment_json(deployment: Deployment | None) -> JsonObject | None:
    return None if deployment is None else asdict(deployment)


def deployment_from_json(data: JsonObject | None) -> Deployment | None:
    if data is None:
        return None
    variants = tuple(
        VariantSpec(**{**variant, "container": container_from_json(variant["container"])})
        for variant in data["variants"]
    )
    return Deployment(**{**data, "variants": variants})


def desired_from(deployment: Deployment | None, states: tuple[VariantState, ...]) -> tuple[VariantState, ...]:
    """Variant counters whose desired values are the serving deployment's again (after a rollback)."""
    if deployment is None:
        return states
    specs = {variant.variant_name: variant for variant in deployment.variants}
    return tuple(
        replace(
            state,
            desired_weight=specs[state.variant_name].weight,
            desired_instance_count=specs[state.variant_name].instance_count,
        )
        if state.variant_name in specs
        else state
        for state in states
    )
