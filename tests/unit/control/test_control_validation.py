"""Server-side validation: SageMaker's Coral messages, exactly, and moorage's own extensions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.model import ListShape, MapShape, Shape, StructureShape

from moorage.api.control import OPERATIONS
from moorage.control.validation import _compiled, coral_message, operation_model, render_value, validate
from moorage.errors import ValidationException

ENDPOINT_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
MODEL_PATTERN = r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?"


def error_of(operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(ValidationException) as caught:
        validate(operation, params)
    return caught.value.message


def variant(**overrides: Any) -> dict[str, Any]:
    return {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large"} | overrides


def test_bad_name_pattern() -> None:
    assert error_of("DescribeEndpoint", {"EndpointName": "bad name"}) == (
        "1 validation error detected: Value 'bad name' at 'endpointName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {ENDPOINT_PATTERN}"
    )


def test_empty_name_fails_only_the_pattern() -> None:
    # The model allows length 0 for EndpointName; botocore sends "" and the pattern catches it.
    assert error_of("DeleteEndpoint", {"EndpointName": ""}) == (
        "1 validation error detected: Value '' at 'endpointName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {ENDPOINT_PATTERN}"
    )


def test_too_long_model_name() -> None:
    name = "m" * 64
    assert error_of("DescribeModel", {"ModelName": name}) == (
        f"1 validation error detected: Value '{name}' at 'modelName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63"
    )


def test_too_long_endpoint_name_breaks_length_and_pattern() -> None:
    name = "e" * 64
    assert error_of("DescribeEndpoint", {"EndpointName": name}) == (
        f"2 validation errors detected: Value '{name}' at 'endpointName' failed to satisfy constraint: "
        f"Member must have length less than or equal to 63; Value '{name}' at 'endpointName' failed to "
        f"satisfy constraint: Member must satisfy regular expression pattern: {ENDPOINT_PATTERN}"
    )


def test_names_that_are_valid() -> None:
    for name in ("a", "A-b--c9", "x" * 63):
        assert validate("DescribeEndpoint", {"EndpointName": name}) == {"EndpointName": name}
    for name in ("a-", "-a", "a_b", "a.b"):
        with pytest.raises(ValidationException):
            validate("DescribeEndpoint", {"EndpointName": name})


def test_enum() -> None:
    assert error_of("ListModels", {"SortBy": "Size"}) == (
        "1 validation error detected: Value 'Size' at 'sortBy' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Name, CreationTime]"
    )


def test_list_index_path_is_one_based() -> None:
    params = {
        "EndpointConfigName": "cfg",
        "ProductionVariants": [variant(), variant(VariantName="b", ModelName="ENTER MODEL NAME")],
    }
    assert error_of("CreateEndpointConfig", params) == (
        "1 validation error detected: Value 'ENTER MODEL NAME' at 'productionVariants.2.member.modelName' "
        f"failed to satisfy constraint: Member must satisfy regular expression pattern: {MODEL_PATTERN}"
    )


def test_two_errors_at_once() -> None:
    params = {"SortOrder": "Up", "MaxResults": 101}
    assert error_of("ListEndpoints", params) == (
        "2 validation errors detected: Value 'Up' at 'sortOrder' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Ascending, Descending]; Value '101' at 'maxResults' failed "
        "to satisfy constraint: Member must have value less than or equal to 100"
    )


def test_numeric_ranges() -> None:
    params = {
        "EndpointConfigName": "cfg",
        "ProductionVariants": [
            variant(ContainerStartupHealthCheckTimeoutInSeconds=30, InitialVariantWeight=-1.5)
        ],
    }
    message = error_of("CreateEndpointConfig", params)
    assert message.startswith("2 validation errors detected: ")
    assert (
        "Value '-1.5' at 'productionVariants.1.member.initialVariantWeight' failed to satisfy constraint: "
        "Member must have value greater than or equal to 0" in message
    )
    assert (
        "Value '30' at 'productionVariants.1.member.containerStartupHealthCheckTimeoutInSeconds' failed to "
        "satisfy constraint: Member must have value greater than or equal to 60" in message
    )


def test_list_size() -> None:
    params = {
        "EndpointConfigName": "cfg",
        "ProductionVariants": [variant(VariantName=f"v{i}") for i in range(11)],
    }
    message = error_of("CreateEndpointConfig", params)
    assert message.startswith("1 validation error detected: Value '[{VariantName=v0, ")
    assert message.endswith(
        "at 'productionVariants' failed to satisfy constraint: "
        "Member must have length less than or equal to 10"
    )


def test_missing_required_member() -> None:
    assert error_of("CreateEndpoint", {"EndpointName": "e"}) == (
        "1 validation error detected: Value null at 'endpointConfigName' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_nested_missing_required_member() -> None:
    params = {"EndpointConfigName": "cfg", "ProductionVariants": [{"ModelName": "m"}]}
    assert error_of("CreateEndpointConfig", params) == (
        "1 validation error detected: Value null at 'productionVariants.1.member.variantName' failed to "
        "satisfy constraint: Member must not be null"
    )


def test_wrong_types() -> None:
    message = error_of("CreateEndpointConfig", {"EndpointConfigName": 5, "ProductionVariants": {"a": 1}})
    assert message == (
        "2 validation errors detected: Value '5' at 'endpointConfigName' failed to satisfy constraint: "
        "Member must be a string; Value '{a=1}' at 'productionVariants' failed to satisfy constraint: "
        "Member must be a list"
    )
    assert "Member must be an integer" in error_of("ListModels", {"MaxResults": True})
    assert "Member must be a finite number" in error_of(
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [variant(InitialVariantWeight=float("nan"))]},
    )
    assert "Member must be a boolean" in error_of(
        "CreateModel", {"ModelName": "m", "EnableNetworkIsolation": "yes"}
    )


def test_map_keys_and_values() -> None:
    params = {"ModelName": "m", "PrimaryContainer": {"Environment": {"1BAD": "x"}}}
    assert error_of("CreateModel", params) == (
        "1 validation error detected: Value '{1BAD=x}' at 'primaryContainer.environment' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: "
        "^[a-zA-Z_][a-zA-Z0-9_]*]"
    )
    long_value = "v" * 1025
    assert error_of(
        "CreateModel", {"ModelName": "m", "PrimaryContainer": {"Environment": {"K": long_value}}}
    ) == (
        f"1 validation error detected: Value '{{K={long_value}}}' at 'primaryContainer.environment' "
        "failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less "
        "than or equal to 1024]"
    )


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/model.tar.gz",
        "https://host/m.tar.gz",
        "http://127.0.0.1:9000/b/m.tar.gz",
        "file:///tmp/model.tar.gz",
        "/srv/models/model.tar.gz",
    ],
)
def test_model_data_url_accepts_moorage_sources(url: str) -> None:
    accepted = validate("CreateModel", {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": url}})
    assert accepted["PrimaryContainer"]["ModelDataUrl"] == url


def test_model_data_url_refuses_other_schemes() -> None:
    params = {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": "ftp://host/m.tar.gz"}}
    assert error_of("CreateModel", params) == (
        "1 validation error detected: Value 'ftp://host/m.tar.gz' at 'primaryContainer.modelDataUrl' failed "
        "to satisfy constraint: Member must satisfy regular expression pattern: "
        "^((https?|s3)://([^/]+)/?(.*)|file://.+|/.*)"
    )


def test_model_data_url_keeps_the_length_limit() -> None:
    url = "s3://b/" + "k" * 1020
    message = error_of("CreateModel", {"ModelName": "m", "PrimaryContainer": {"ModelDataUrl": url}})
    assert message.endswith("Member must have length less than or equal to 1024")


@pytest.mark.parametrize("instance_type", ["ml.m5.large", "ml.g5.xlarge", "local", "local_gpu"])
def test_instance_types_accepted(instance_type: str) -> None:
    params = {"EndpointConfigName": "c", "ProductionVariants": [variant(InstanceType=instance_type)]}
    assert validate("CreateEndpointConfig", params)["ProductionVariants"][0]["InstanceType"] == instance_type


def test_unknown_instance_type() -> None:
    params = {"EndpointConfigName": "c", "ProductionVariants": [variant(InstanceType="ml.m5.huge")]}
    message = error_of("CreateEndpointConfig", params)
    assert message.startswith(
        "1 validation error detected: Value 'ml.m5.huge' at 'productionVariants.1.member.instanceType' "
        "failed to satisfy constraint: Member must satisfy enum value set: [ml.t2.medium, ml.t2.large, "
    )
    assert message.endswith(", local, local_gpu]")


def test_unknown_members_are_dropped_and_timestamps_normalised() -> None:
    accepted = validate(
        "ListEndpoints",
        {"CreationTimeAfter": "2024-01-01T00:00:00Z", "CreationTimeBefore": 1704067300, "Bogus": 1},
    )
    assert accepted == {"CreationTimeAfter": 1704067200.0, "CreationTimeBefore": 1704067300.0}
    assert "Member must be a timestamp" in error_of("ListEndpoints", {"CreationTimeAfter": "yesterday"})


def test_null_optional_members_are_dropped() -> None:
    assert validate("ListModels", {"NameContains": None}) == {}


def test_tag_patterns_use_unicode_classes() -> None:
    tags = [{"Key": "Équipe 1:team/a=b+c-d@e", "Value": "日本 ٣"}]
    assert validate(
        "AddTags", {"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:model/m", "Tags": tags}
    )
    message = error_of(
        "AddTags",
        {
            "ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:model/m",
            "Tags": [{"Key": "a#b", "Value": "v"}],
        },
    )
    assert message == (
        "1 validation error detected: Value 'a#b' at 'tags.1.member.key' failed to satisfy constraint: "
        r"Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"
    )


def test_list_of_strings_path() -> None:
    params = {"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:model/m", "TagKeys": ["ok", ""]}
    assert error_of("DeleteTags", params) == (
        "1 validation error detected: Value '' at 'tagKeys.2.member' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )


def _patterns(shape: Shape, seen: set[str]) -> set[str]:
    if shape.name in seen:
        return set()
    seen.add(shape.name)
    found = {shape.metadata["pattern"]} if "pattern" in shape.metadata else set()
    if isinstance(shape, StructureShape):
        for member in shape.members.values():
            found |= _patterns(member, seen)
    elif isinstance(shape, ListShape):
        found |= _patterns(shape.member, seen)
    elif isinstance(shape, MapShape):
        found |= _patterns(shape.key, seen) | _patterns(shape.value, seen)
    return found


def test_every_pattern_of_every_operation_compiles() -> None:
    patterns: set[str] = set()
    for name in OPERATIONS:
        input_shape = operation_model(name).input_shape
        assert input_shape is not None
        patterns |= _patterns(input_shape, set())
    assert len(patterns) > 10
    for pattern in patterns:
        assert isinstance(_compiled(pattern), re.Pattern)


def test_render_value_like_java() -> None:
    assert render_value(None) == "null"
    assert render_value(True) == "true"
    assert render_value(1.0) == "1.0"
    assert render_value(["a", 2]) == "[a, 2]"
    assert render_value({"K": [1]}) == "{K=[1]}"
    assert coral_message(["x"]) == "1 validation error detected: x"
    assert coral_message(["x", "y"]) == "2 validation errors detected: x; y"
