"""The rules of multi-model endpoints that need no server: what CreateModel accepts for Mode MultiModel,
which deployments CreateEndpoint refuses with one, and how a TargetModel becomes a URL under the prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.control.records import ContainerSpec, Deployment, VariantSpec
from moorage.errors import ValidationError, ValidationException
from moorage.multimodel.config import check_container, refuse_combinations
from moorage.multimodel.targets import target_url

MME = ContainerSpec(image="x", model_data_url="s3://b/models/", model_data_source=None, mode="MultiModel")


def deployment(*, spec: VariantSpec | None = None, **members: object) -> Deployment:
    variant = spec or VariantSpec("v", "m", MME, "ml.m5.large", 1, 1.0)
    return Deployment(config_name="c", variants=(variant,), resolved_at=0.0, **members)  # type: ignore[arg-type]


def test_a_multi_model_container_is_accepted_with_its_cache_setting() -> None:
    container = {
        "Mode": "MultiModel",
        "ModelDataUrl": "s3://b/p/",
        "MultiModelConfig": {"ModelCacheSetting": "Disabled"},
    }
    assert check_container(container) == ("MultiModel", "Disabled")
    assert check_container({"Mode": "MultiModel", "ModelDataUrl": "/srv/models"}) == ("MultiModel", "Enabled")
    assert check_container({"ModelDataUrl": "s3://b/m.tar.gz"}) == ("SingleModel", "Enabled")


@pytest.mark.parametrize(
    ("container", "says"),
    [
        ({"Mode": "MultiModel", "ModelDataUrl": "s3://b/one.tar.gz"}, "names one archive"),
        ({"Mode": "MultiModel", "ModelDataUrl": "https://example.com/models/"}, "give an s3:// prefix"),
        (
            {"Mode": "MultiModel", "ModelDataSource": {"S3DataSource": {}}},
            "takes its models from ModelDataUrl",
        ),
        ({"ModelDataUrl": "s3://b/m.tar.gz", "MultiModelConfig": {}}, "only valid for a container with Mode"),
    ],
)
def test_containers_that_cannot_serve_many_models_are_refused(
    container: dict[str, object], says: str
) -> None:
    with pytest.raises(ValidationException) as refused:
        check_container(container)
    assert says in refused.value.message


def test_deployments_a_multi_model_variant_cannot_serve_are_refused() -> None:
    refuse_combinations(deployment())  # on either backend (docs/multi-model.md, "On Ray")
    with pytest.raises(ValidationException, match="InvokeEndpointAsync has no TargetModel"):
        refuse_combinations(deployment(async_config={"OutputConfig": {}}))
    serverless = VariantSpec("v", "m", MME, "ml.m5.large", 0, 1.0, serverless={"MemorySizeInMB": 2048})
    with pytest.raises(ValidationException, match="serverless variant cannot serve"):
        refuse_combinations(deployment(spec=serverless))
    single = ContainerSpec(image="x", model_data_url="s3://b/m.tar.gz", model_data_source=None)
    refuse_combinations(deployment(spec=VariantSpec("v", "m", single, "ml.m5.large", 1, 1.0)))


@pytest.mark.parametrize(
    "target", ["../x.tar.gz", "a/../../x.tar.gz", "/etc/passwd", "a\\..\\x", "./a.tar.gz", " a"]
)
def test_targets_that_leave_the_prefix_are_refused(target: str) -> None:
    with pytest.raises(ValidationError):
        target_url("s3://b/models/", target)


def test_targets_join_the_prefix(tmp_path: Path) -> None:
    assert target_url("s3://b/models", "a/b.tar.gz") == "s3://b/models/a/b.tar.gz"
    assert target_url("s3://b/models/", "m.tar.gz") == "s3://b/models/m.tar.gz"
    assert target_url(f"file://{tmp_path}", "m.tar.gz") == f"file://{tmp_path.resolve()}/m.tar.gz"
    (tmp_path / "out").symlink_to("/etc")
    with pytest.raises(ValidationError, match="resolves outside"):
        target_url(str(tmp_path), "out/passwd")
