"""Every member of CreateTransformJob is implemented, recorded-and-ignored, or refused by name.

Read from botocore's own service model, so a member a newer botocore adds fails here until someone
decides what moorage does with it ("nothing accepted and ignored").
"""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest

from moorage.errors import ValidationException
from moorage.transform.members import IGNORED, IMPLEMENTED, REFUSED, refuse_unsupported

_SCOPES = {
    "CreateTransformJob": None,
    "TransformInput": "TransformInput",
    "TransformDataSource": "TransformDataSource",
    "TransformS3DataSource": "TransformS3DataSource",
    "TransformOutput": "TransformOutput",
    "TransformResources": "TransformResources",
    "ModelClientConfig": "ModelClientConfig",
    "DataProcessing": "DataProcessing",
}


def _members() -> list[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    names = []
    for scope, shape_name in _SCOPES.items():
        shape = (
            model.operation_model("CreateTransformJob").input_shape
            if shape_name is None
            else model.shape_for(shape_name)
        )
        names += [f"{scope}.{member}" for member in shape.members]
    return names


@pytest.mark.parametrize("member", _members())
def test_every_member_is_classified(member: str) -> None:
    assert member in IMPLEMENTED or member in IGNORED or member in REFUSED, (
        f"{member} is neither implemented (transform/members.py IMPLEMENTED), recorded-and-ignored "
        "(IGNORED, with its reason in docs/compatibility.md) nor refused (REFUSED)"
    )


def test_structures_with_members_are_all_walked() -> None:
    """A new sub-structure of CreateTransformJob would need its own scope above."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    seen = {shape for shape in _SCOPES.values() if shape}
    nested = {
        member.name
        for scope in seen
        for member in model.shape_for(scope).members.values()
        if member.type_name == "structure"
    }
    top = model.operation_model("CreateTransformJob").input_shape
    nested |= {m.name for m in top.members.values() if m.type_name == "structure"}
    assert nested - seen <= {"BatchDataCaptureConfig", "ExperimentConfig"}  # refused / ignored as a whole


def test_the_lists_do_not_overlap() -> None:
    assert not IMPLEMENTED & set(IGNORED)
    # A member may be implemented for some values and refused for others (S3DataType).
    assert all(REFUSED[member].applies is not None for member in IMPLEMENTED & set(REFUSED))
    assert not set(IGNORED) & set(REFUSED)


def test_every_ignored_member_is_documented_with_its_reason() -> None:
    page = (Path(__file__).parents[3] / "docs" / "compatibility.md").read_text()
    section = page.split("## Batch transform", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Za-z]+\.[A-Za-z]+)`", section.split("Recorded and ignored", 1)[1]))
    assert set(IGNORED) <= documented


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        ({"DataCaptureConfig": {"DestinationS3Uri": "s3://b/c"}}, "DataCaptureConfig"),
        ({"Tags": [{"Key": "k", "Value": "v"}]}, "Tags"),
        (
            {
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "Converse", "S3Uri": "s3://b"}}
                }
            },
            "Converse",
        ),
    ],
)
def test_refused_members_name_themselves(request_: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationException) as refused:
        refuse_unsupported(request_)
    assert named in refused.value.message


def test_what_moorage_does_or_records_is_accepted() -> None:
    refuse_unsupported(
        {
            "Tags": [],
            "ExperimentConfig": {"ExperimentName": "e"},
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://b"}}
            },
        }
    )
