"""The control-plane operations called directly: shapes, exact error messages, lists, lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.control import endpoint_configs, endpoints, models, tags
from moorage.control.arns import ControlContext
from moorage.control.records import EndpointStatus, VariantState
from moorage.control.store import Store
from moorage.errors import ValidationException

PREFIX = "arn:aws:sagemaker:us-west-2:123456789012"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    store = Store(tmp_path / "state.sqlite3", clock=clock)  # the reconciler's transitions share the clock
    yield store
    store.close()


@pytest.fixture
def ctx(clock: Clock) -> ControlContext:
    return ControlContext("us-west-2", "123456789012", clock)


def fails(call: Any, store: Store, ctx: ControlContext, request: dict[str, Any]) -> str:
    with pytest.raises(ValidationException) as caught:
        call(store, ctx, request)
    return caught.value.message


def make_model(store: Store, ctx: ControlContext, name: str = "m", image: str | None = "img:1") -> None:
    container: dict[str, Any] = {"ModelDataUrl": "s3://b/model.tar.gz", "Environment": {"A": "1"}}
    if image:
        container["Image"] = image
    models.create_model(store, ctx, {"ModelName": name, "PrimaryContainer": container})


def make_config(store: Store, ctx: ControlContext, name: str = "cfg", *variants: dict[str, Any]) -> None:
    chosen = list(variants) or [
        {
            "VariantName": "AllTraffic",
            "ModelName": "m",
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1,
        }
    ]
    endpoint_configs.create_endpoint_config(
        store, ctx, {"EndpointConfigName": name, "ProductionVariants": chosen}
    )


def make_endpoint(store: Store, ctx: ControlContext, name: str = "ep", in_service: bool = True) -> None:
    endpoints.create_endpoint(store, ctx, {"EndpointName": name, "EndpointConfigName": "cfg"})
    if in_service:
        assert store.endpoint_in_service(name, variants=(VariantState("AllTraffic", 1.0, 1.0, 1, 1),))


@pytest.fixture
def deployed(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    make_config(store, ctx)
    make_endpoint(store, ctx)


# Models -------------------------------------------------------------------------------------------
def test_model_round_trip(store: Store, ctx: ControlContext) -> None:
    request = {
        "ModelName": "My-Model",
        "PrimaryContainer": {"Image": "img", "ModelDataUrl": "file:///m.tar.gz", "Environment": {"K": "V"}},
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/r",
        "Tags": [{"Key": "a", "Value": "b"}],
    }
    assert models.create_model(store, ctx, request) == {"ModelArn": f"{PREFIX}:model/my-model"}
    described = models.describe_model(store, ctx, {"ModelName": "my-model"})
    assert described == {
        "ModelName": "My-Model",
        "PrimaryContainer": request["PrimaryContainer"],
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/r",
        "ModelArn": f"{PREFIX}:model/my-model",
        "CreationTime": 1_700_000_001.0,
    }
    record = store.get_model("My-Model")
    assert record is not None
    assert (record.container.image, record.container.model_data_url, record.container.environment) == (
        "img",
        "file:///m.tar.gz",
        {"K": "V"},
    )


def test_model_from_containers(store: Store, ctx: ControlContext) -> None:
    source = {"S3DataSource": {"S3Uri": "s3://b/p/", "S3DataType": "S3Prefix", "CompressionType": "None"}}
    models.create_model(store, ctx, {"ModelName": "m", "Containers": [{"ModelDataSource": source}]})
    record = store.get_model("m")
    assert record is not None
    assert record.container.model_data_source == source["S3DataSource"]
    assert record.container.model_data_url is None


def test_model_errors(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    assert fails(models.create_model, store, ctx, {"ModelName": "M", "PrimaryContainer": {}}) == (
        f'Cannot create already existing model "{PREFIX}:model/m".'
    )
    assert fails(models.describe_model, store, ctx, {"ModelName": "Nope"}) == (
        f'Could not find model "{PREFIX}:model/nope".'
    )
    assert fails(models.delete_model, store, ctx, {"ModelName": "nope"}) == (
        f'Could not find model "{PREFIX}:model/nope".'
    )
    assert "Either PrimaryContainer or Containers" in fails(
        models.create_model, store, ctx, {"ModelName": "x"}
    )
    both = {"ModelName": "x", "PrimaryContainer": {}, "Containers": [{}]}
    assert "not both" in fails(models.create_model, store, ctx, both)
    pipeline = {"ModelName": "x", "Containers": [{}, {}]}
    assert "Inference pipelines" in fails(models.create_model, store, ctx, pipeline)
    assert models.delete_model(store, ctx, {"ModelName": "M"}) == {}
    assert store.get_model("m") is None


# Endpoint configs ---------------------------------------------------------------------------------
def test_endpoint_config_round_trip(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "m",
        "InstanceType": "local",
        "InitialInstanceCount": 2,
        "ContainerStartupHealthCheckTimeoutInSeconds": 600,
    }
    created = endpoint_configs.create_endpoint_config(
        store,
        ctx,
        {"EndpointConfigName": "Cfg", "ProductionVariants": [variant], "Tags": [{"Key": "k", "Value": "v"}]},
    )
    assert created == {"EndpointConfigArn": f"{PREFIX}:endpoint-config/cfg"}
    described = endpoint_configs.describe_endpoint_config(store, ctx, {"EndpointConfigName": "cfg"})
    assert described == {
        "EndpointConfigName": "Cfg",
        "ProductionVariants": [variant | {"InitialVariantWeight": 1.0}],
        "EndpointConfigArn": f"{PREFIX}:endpoint-config/cfg",
        "CreationTime": 1_700_000_002.0,
    }


def test_endpoint_config_errors(store: Store, ctx: ControlContext) -> None:
    variant = {
        "VariantName": "v",
        "ModelName": "ghost",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    create = endpoint_configs.create_endpoint_config
    assert fails(create, store, ctx, {"EndpointConfigName": "c", "ProductionVariants": [variant]}) == (
        f'Could not find model "{PREFIX}:model/ghost".'
    )
    make_model(store, ctx, "ghost")
    make_config(store, ctx, "c", variant)
    assert fails(create, store, ctx, {"EndpointConfigName": "C", "ProductionVariants": [variant]}) == (
        f'Cannot create already existing endpoint configuration "{PREFIX}:endpoint-config/c".'
    )
    twice = {"EndpointConfigName": "d", "ProductionVariants": [variant, variant]}
    assert fails(create, store, ctx, twice).endswith("repeated: v.")
    serverless = variant | {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1}}
    assert "cannot also have InstanceType, InitialInstanceCount" in fails(
        create, store, ctx, {"EndpointConfigName": "d", "ProductionVariants": [serverless]}
    )
    bare = {"VariantName": "v"}
    assert fails(create, store, ctx, {"EndpointConfigName": "d", "ProductionVariants": [bare]}) == (
        'Production variant "v" needs ModelName, InstanceType, InitialInstanceCount.'
    )
    assert fails(endpoint_configs.describe_endpoint_config, store, ctx, {"EndpointConfigName": "x"}) == (
        f'Could not find endpoint configuration "{PREFIX}:endpoint-config/x".'
    )
    assert fails(endpoint_configs.delete_endpoint_config, store, ctx, {"EndpointConfigName": "x"}) == (
        f'Could not find endpoint configuration "{PREFIX}:endpoint-config/x".'
    )


# Endpoints ----------------------------------------------------------------------------------------
def test_create_endpoint_freezes_a_pending_deployment(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "m",
        "InstanceType": "ml.g5.xlarge",
        "InitialInstanceCount": 2,
        "InitialVariantWeight": 0.5,
        "ContainerStartupHealthCheckTimeoutInSeconds": 300,
        "ModelDataDownloadTimeoutInSeconds": 900,
    }
    make_config(store, ctx, "cfg", variant)
    result = endpoints.create_endpoint(
        store, ctx, {"EndpointName": "Ep", "EndpointConfigName": "CFG", "Tags": []}
    )
    assert result == {"EndpointArn": f"{PREFIX}:endpoint/ep"}
    record = store.get_endpoint("ep")
    assert record is not None
    assert record.status is EndpointStatus.CREATING
    assert record.deployment is None
    assert record.pending is not None
    assert record.pending.config_name == "cfg"
    (spec,) = record.pending.variants
    model = store.get_model("m")
    assert model is not None
    assert (
        spec.variant_name,
        spec.model_name,
        spec.container,
        spec.instance_type,
        spec.instance_count,
        spec.weight,
        spec.startup_timeout_s,
        spec.download_timeout_s,
    ) == (
        "AllTraffic",
        "m",
        model.container,
        "ml.g5.xlarge",
        2,
        0.5,
        300.0,
        900.0,
    )
    assert record.variants == (VariantState("AllTraffic", 0.0, 0.5, 0, 2),)


def test_create_endpoint_errors(store: Store, ctx: ControlContext) -> None:
    create = endpoints.create_endpoint
    assert fails(create, store, ctx, {"EndpointName": "ep", "EndpointConfigName": "cfg"}) == (
        f'Could not find endpoint configuration "{PREFIX}:endpoint-config/cfg".'
    )
    make_model(store, ctx)
    make_config(store, ctx)
    models.delete_model(store, ctx, {"ModelName": "m"})
    assert fails(create, store, ctx, {"EndpointName": "ep", "EndpointConfigName": "cfg"}) == (
        f'Could not find model "{PREFIX}:model/m".'
    )
    make_model(store, ctx)
    make_endpoint(store, ctx)
    assert fails(create, store, ctx, {"EndpointName": "EP", "EndpointConfigName": "cfg"}) == (
        f'Cannot create already existing endpoint "{PREFIX}:endpoint/ep".'
    )


def test_describe_creating(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    make_config(store, ctx)
    make_endpoint(store, ctx, "Ep", in_service=False)
    assert endpoints.describe_endpoint(store, ctx, {"EndpointName": "ep"}) == {
        "EndpointName": "Ep",
        "EndpointArn": f"{PREFIX}:endpoint/ep",
        "EndpointConfigName": "cfg",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "DeployedImages": [
                    {"SpecifiedImage": "img:1", "ResolvedImage": "img:1", "ResolutionTime": 1_700_000_003.0}
                ],
                "CurrentWeight": 0.0,
                "DesiredWeight": 1.0,
                "CurrentInstanceCount": 0,
                "DesiredInstanceCount": 1,
            }
        ],
        "EndpointStatus": "Creating",
        "CreationTime": 1_700_000_003.0,
        "LastModifiedTime": 1_700_000_003.0,
    }


def test_describe_without_image_has_no_deployed_images(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx, image=None)
    make_config(store, ctx)
    make_endpoint(store, ctx)
    (variant,) = endpoints.describe_endpoint(store, ctx, {"EndpointName": "ep"})["ProductionVariants"]
    assert "DeployedImages" not in variant
    assert variant["CurrentInstanceCount"] == 1


def test_describe_failed(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    make_config(store, ctx)
    make_endpoint(store, ctx, in_service=False)
    store.endpoint_failed("ep", "model_fn raised ValueError")
    described = endpoints.describe_endpoint(store, ctx, {"EndpointName": "ep"})
    assert (described["EndpointStatus"], described["FailureReason"], described["EndpointConfigName"]) == (
        "Failed",
        "model_fn raised ValueError",
        "cfg",
    )
    assert fails(endpoints.describe_endpoint, store, ctx, {"EndpointName": "x"}) == (
        f'Could not find endpoint "{PREFIX}:endpoint/x".'
    )


def test_update_endpoint(store: Store, ctx: ControlContext, deployed: None) -> None:
    variant = {
        "VariantName": "Blue",
        "ModelName": "m",
        "InstanceType": "ml.m5.xlarge",
        "InitialInstanceCount": 3,
    }
    make_config(store, ctx, "cfg2", variant)
    assert endpoints.update_endpoint(store, ctx, {"EndpointName": "EP", "EndpointConfigName": "cfg2"}) == {
        "EndpointArn": f"{PREFIX}:endpoint/ep"
    }
    record = store.get_endpoint("ep")
    assert record is not None
    assert record.status is EndpointStatus.UPDATING
    assert record.deployment is not None and record.deployment.config_name == "cfg"
    assert record.pending is not None and record.pending.config_name == "cfg2"
    described = endpoints.describe_endpoint(store, ctx, {"EndpointName": "ep"})
    # The old deployment still serves; the new one shows in PendingDeploymentSummary.
    assert described["EndpointConfigName"] == "cfg"
    assert [variant["VariantName"] for variant in described["ProductionVariants"]] == ["AllTraffic"]
    assert described["PendingDeploymentSummary"] == {
        "EndpointConfigName": "cfg2",
        "ProductionVariants": [
            {
                "VariantName": "Blue",
                "DeployedImages": [
                    {
                        "SpecifiedImage": "img:1",
                        "ResolvedImage": "img:1",
                        "ResolutionTime": record.pending.resolved_at,
                    }
                ],
                "DesiredWeight": 1.0,
                "DesiredInstanceCount": 3,
                "InstanceType": "ml.m5.xlarge",
            }
        ],
        "StartTime": record.last_modified_time,
    }
    assert fails(
        endpoints.update_endpoint, store, ctx, {"EndpointName": "ep", "EndpointConfigName": "cfg"}
    ) == (f'Cannot update in-progress endpoint "{PREFIX}:endpoint/ep".')
    assert store.endpoint_in_service("ep", variants=(VariantState("Blue", 1.0, 1.0, 3, 3),))
    assert endpoints.describe_endpoint(store, ctx, {"EndpointName": "ep"})["EndpointConfigName"] == "cfg2"


@pytest.mark.parametrize(
    ("excluded", "expected"),
    [([], (0.25, 4)), (["DesiredWeight"], (1.0, 4)), (["DesiredInstanceCount"], (0.25, 1))],
)
def test_update_retains_variant_properties(
    store: Store, ctx: ControlContext, deployed: None, excluded: list[str], expected: tuple[float, int]
) -> None:
    endpoints.update_endpoint_weights_and_capacities(
        store,
        ctx,
        {
            "EndpointName": "ep",
            "DesiredWeightsAndCapacities": [
                {"VariantName": "AllTraffic", "DesiredWeight": 0.25, "DesiredInstanceCount": 4}
            ],
        },
    )
    assert store.endpoint_in_service("ep", variants=(VariantState("AllTraffic", 0.25, 0.25, 4, 4),))
    make_config(store, ctx, "cfg2")
    request = {
        "EndpointName": "ep",
        "EndpointConfigName": "cfg2",
        "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": [{"VariantPropertyType": name} for name in excluded],
    }
    endpoints.update_endpoint(store, ctx, request)
    record = store.get_endpoint("ep")
    assert record is not None and record.pending is not None
    (spec,) = record.pending.variants
    assert (spec.weight, spec.instance_count) == expected


def test_update_errors(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    make_config(store, ctx)
    update = endpoints.update_endpoint
    assert fails(update, store, ctx, {"EndpointName": "ep", "EndpointConfigName": "cfg"}) == (
        f'Could not find endpoint "{PREFIX}:endpoint/ep".'
    )
    make_endpoint(store, ctx, in_service=False)
    assert fails(update, store, ctx, {"EndpointName": "ep", "EndpointConfigName": "cfg"}) == (
        f'Cannot update in-progress endpoint "{PREFIX}:endpoint/ep".'
    )
    store.endpoint_failed("ep", "boom")
    assert fails(update, store, ctx, {"EndpointName": "ep", "EndpointConfigName": "cfg"}).startswith(
        f'Cannot update failed endpoint "{PREFIX}:endpoint/ep".'
    )
    make_endpoint(store, ctx, "ok")
    assert fails(update, store, ctx, {"EndpointName": "ok", "EndpointConfigName": "nope"}) == (
        f'Could not find endpoint configuration "{PREFIX}:endpoint-config/nope".'
    )
    endpoints.delete_endpoint(store, ctx, {"EndpointName": "ok"})
    assert "being deleted" in fails(update, store, ctx, {"EndpointName": "ok", "EndpointConfigName": "cfg"})


def test_update_weights(store: Store, ctx: ControlContext, deployed: None) -> None:
    request = {
        "EndpointName": "ep",
        "DesiredWeightsAndCapacities": [{"VariantName": "AllTraffic", "DesiredWeight": 2}],
    }
    endpoints.update_endpoint_weights_and_capacities(store, ctx, request)
    record = store.get_endpoint("ep")
    assert record is not None and record.pending is not None and record.deployment is not None
    assert record.status is EndpointStatus.UPDATING
    assert (record.pending.variants[0].weight, record.pending.variants[0].instance_count) == (2.0, 1)
    assert record.deployment.variants[0].weight == 1.0
    assert record.variants == (VariantState("AllTraffic", 1.0, 2.0, 1, 1),)
    assert fails(endpoints.update_endpoint_weights_and_capacities, store, ctx, request) == (
        f'Cannot update in-progress endpoint "{PREFIX}:endpoint/ep".'
    )
    # A failed update rolls back: InService, old deployment, FailureReason shown.
    store.update_failed("ep", "could not start 1 instance")
    described = endpoints.describe_endpoint(store, ctx, {"EndpointName": "ep"})
    assert described["EndpointStatus"] == "InService"
    assert described["FailureReason"] == "could not start 1 instance"
    assert described["ProductionVariants"][0]["DesiredWeight"] == 1.0


def test_update_weights_errors(store: Store, ctx: ControlContext, deployed: None) -> None:
    call = endpoints.update_endpoint_weights_and_capacities

    def request(*items: dict[str, Any]) -> dict[str, Any]:
        return {"EndpointName": "ep", "DesiredWeightsAndCapacities": list(items)}

    assert fails(call, store, ctx, request({"VariantName": "Ghost", "DesiredWeight": 1})) == (
        f'The endpoint "{PREFIX}:endpoint/ep" has no production variant named Ghost.'
    )
    assert "give DesiredWeight, DesiredInstanceCount or both" in fails(
        call, store, ctx, request({"VariantName": "AllTraffic"})
    )
    assert "only once" in fails(
        call,
        store,
        ctx,
        request(
            {"VariantName": "AllTraffic", "DesiredWeight": 1},
            {"VariantName": "AllTraffic", "DesiredWeight": 2},
        ),
    )
    assert "at least 1" in fails(
        call, store, ctx, request({"VariantName": "AllTraffic", "DesiredInstanceCount": 0})
    )
    record = store.get_endpoint("ep")
    assert record is not None and record.status is EndpointStatus.IN_SERVICE


def test_delete_endpoint(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    make_config(store, ctx)
    make_endpoint(store, ctx, in_service=False)
    delete = endpoints.delete_endpoint
    assert fails(delete, store, ctx, {"EndpointName": "ep"}) == (
        f'Cannot update in-progress endpoint "{PREFIX}:endpoint/ep".'
    )
    store.endpoint_failed("ep", "boom")
    assert delete(store, ctx, {"EndpointName": "EP"}) == {}
    record = store.get_endpoint("ep")
    assert record is not None and record.status is EndpointStatus.DELETING
    assert delete(store, ctx, {"EndpointName": "ep"}) == {}  # again: still Deleting
    assert store.remove_endpoint("ep")
    assert (
        fails(delete, store, ctx, {"EndpointName": "ep"})
        == f'Could not find endpoint "{PREFIX}:endpoint/ep".'
    )


def test_deleting_config_and_model_leaves_the_endpoint_alone(
    store: Store, ctx: ControlContext, deployed: None
) -> None:
    before = store.get_endpoint("ep")
    endpoint_configs.delete_endpoint_config(store, ctx, {"EndpointConfigName": "cfg"})
    models.delete_model(store, ctx, {"ModelName": "m"})
    assert store.get_endpoint("ep") == before
    described = endpoints.describe_endpoint(store, ctx, {"EndpointName": "ep"})
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "cfg")


# Lists --------------------------------------------------------------------------------------------
def all_pages(call: Any, store: Store, ctx: ControlContext, key: str, name: str, **request: Any) -> list[str]:
    names: list[str] = []
    while True:
        page = call(store, ctx, request)
        names += [item[name] for item in page[key]]
        if "NextToken" not in page:
            return names
        request["NextToken"] = page["NextToken"]


def test_list_models_sort_filter_and_pages(store: Store, ctx: ControlContext) -> None:
    for name in ["beta", "Alpha", "gamma-x", "delta-X", "epsilon"]:
        make_model(store, ctx, name)
    listed = models.list_models(store, ctx, {})
    assert [item["ModelName"] for item in listed["Models"]] == [
        "epsilon",
        "delta-X",
        "gamma-x",
        "Alpha",
        "beta",
    ]
    assert listed["Models"][0] == {
        "ModelName": "epsilon",
        "ModelArn": f"{PREFIX}:model/epsilon",
        "CreationTime": 1_700_000_005.0,
    }
    by_name = all_pages(
        models.list_models,
        store,
        ctx,
        "Models",
        "ModelName",
        SortBy="Name",
        SortOrder="Ascending",
        MaxResults=2,
    )
    assert by_name == ["Alpha", "beta", "delta-X", "epsilon", "gamma-x"]
    assert all_pages(models.list_models, store, ctx, "Models", "ModelName", NameContains="-x") == [
        "delta-X",
        "gamma-x",
    ]
    window = models.list_models(
        store, ctx, {"CreationTimeAfter": 1_700_000_001.0, "CreationTimeBefore": 1_700_000_004.0}
    )
    assert [item["ModelName"] for item in window["Models"]] == ["gamma-x", "Alpha"]


def test_list_endpoint_configs(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    for name in ["c1", "c2", "c3"]:
        make_config(store, ctx, name)
    pages = all_pages(
        endpoint_configs.list_endpoint_configs,
        store,
        ctx,
        "EndpointConfigs",
        "EndpointConfigName",
        MaxResults=1,
        SortOrder="Ascending",
    )
    assert pages == ["c1", "c2", "c3"]


def test_list_endpoints_defaults_to_ten(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx)
    make_config(store, ctx)
    for index in range(12):
        make_endpoint(store, ctx, f"ep{index:02d}", in_service=index % 3 == 0)
    first = endpoints.list_endpoints(store, ctx, {})
    assert len(first["Endpoints"]) == 10
    assert first["Endpoints"][0]["EndpointName"] == "ep11"
    assert set(first["Endpoints"][0]) == {
        "EndpointName",
        "EndpointArn",
        "CreationTime",
        "LastModifiedTime",
        "EndpointStatus",
    }
    rest = endpoints.list_endpoints(store, ctx, {"NextToken": first["NextToken"]})
    assert [item["EndpointName"] for item in rest["Endpoints"]] == ["ep01", "ep00"]
    assert "NextToken" not in rest
    in_service = all_pages(
        endpoints.list_endpoints,
        store,
        ctx,
        "Endpoints",
        "EndpointName",
        StatusEquals="InService",
        SortBy="Name",
        SortOrder="Ascending",
    )
    assert in_service == ["ep00", "ep03", "ep06", "ep09"]
    by_status = all_pages(
        endpoints.list_endpoints,
        store,
        ctx,
        "Endpoints",
        "EndpointStatus",
        SortBy="Status",
        SortOrder="Ascending",
        MaxResults=3,
    )
    assert by_status == ["Creating"] * 8 + ["InService"] * 4
    # One tick per write: ep06 was created at ...011 and went InService at ...012; ep05 last moved at ...010.
    recent = endpoints.list_endpoints(
        store, ctx, {"LastModifiedTimeAfter": 1_700_000_011.5, "MaxResults": 100}
    )
    assert sorted(item["EndpointName"] for item in recent["Endpoints"]) == [
        f"ep{i:02d}" for i in range(6, 12)
    ]


def test_bad_token(store: Store, ctx: ControlContext) -> None:
    make_model(store, ctx, "a")
    make_model(store, ctx, "b")
    token = models.list_models(store, ctx, {"MaxResults": 1})["NextToken"]
    assert "Invalid pagination token" in fails(
        models.list_models, store, ctx, {"NextToken": token[:-2] + "xx"}
    )
    assert "Invalid pagination token" in fails(endpoints.list_endpoints, store, ctx, {"NextToken": token})


# Tags ---------------------------------------------------------------------------------------------
def test_tags(store: Store, ctx: ControlContext, deployed: None) -> None:
    arn = f"{PREFIX}:endpoint/ep"
    added = tags.add_tags(store, ctx, {"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v"}]})
    assert added == {"Tags": [{"Key": "k", "Value": "v"}]}
    assert tags.list_tags(store, ctx, {"ResourceArn": arn}) == {"Tags": [{"Key": "k", "Value": "v"}]}
    assert tags.delete_tags(store, ctx, {"ResourceArn": arn, "TagKeys": ["k"]}) == {}
    assert tags.list_tags(store, ctx, {"ResourceArn": arn}) == {"Tags": []}
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    tags.add_tags(store, ctx, {"ResourceArn": arn, "Tags": many})
    assert len(tags.list_tags(store, ctx, {"ResourceArn": arn, "MaxResults": 50})["Tags"]) == 50
    assert "at most 50 tags" in fails(
        tags.add_tags, store, ctx, {"ResourceArn": arn, "Tags": [{"Key": "one-more", "Value": "v"}]}
    )


def test_tag_errors(store: Store, ctx: ControlContext) -> None:
    missing = f"{PREFIX}:model/ghost"
    assert fails(tags.list_tags, store, ctx, {"ResourceArn": missing}) == f'Could not find model "{missing}".'
    assert (
        fails(tags.add_tags, store, ctx, {"ResourceArn": missing, "Tags": []})
        == f'Could not find model "{missing}".'
    )
    other_account = "arn:aws:sagemaker:us-west-2:999999999999:endpoint/ep"
    assert fails(tags.list_tags, store, ctx, {"ResourceArn": other_account}) == (
        f'Could not find endpoint "{other_account}".'
    )
    job = f"{PREFIX}:training-job/t"
    assert "models, endpoint configs and endpoints only" in fails(
        tags.list_tags, store, ctx, {"ResourceArn": job}
    )
    make_model(store, ctx)
    reserved = {"ResourceArn": f"{PREFIX}:model/m", "Tags": [{"Key": "aws:owner", "Value": "x"}]}
    assert "reserved for AWS use: aws:owner" in fails(tags.add_tags, store, ctx, reserved)
    tagged = {"ModelName": "n", "PrimaryContainer": {}, "Tags": [{"Key": "AWS:x", "Value": "y"}]}
    assert "reserved for AWS use: AWS:x" in fails(models.create_model, store, ctx, tagged)
    assert store.get_model("n") is None


def test_a_creation_time_sent_back_as_a_filter_does_not_match_its_own_resource(tmp_path: Path) -> None:
    """A client holds times to the microsecond (botocore parses and sends them so): a model's own
    CreationTime, read back and sent as CreationTimeAfter, must not list that model."""
    from datetime import UTC, datetime

    from botocore.serialize import JSONSerializer

    times = iter([1_733_400_000.4567893, 1_733_400_001.2345678])
    ctx = ControlContext("us-west-2", "123456789012", lambda: next(times))
    store = Store(tmp_path / "state.sqlite3", clock=ctx.clock)
    try:
        make_model(store, ctx, "first")
        make_model(store, ctx, "second")
        created = models.describe_model(store, ctx, {"ModelName": "first"})["CreationTime"]
        held = datetime.fromtimestamp(created, UTC)  # what botocore makes of the answer
        bound = JSONSerializer()._timestamp_unixtimestamp(held)  # and sends back
        listed = models.list_models(store, ctx, {"CreationTimeAfter": bound})
        assert [model["ModelName"] for model in listed["Models"]] == ["second"]
    finally:
        store.close()
