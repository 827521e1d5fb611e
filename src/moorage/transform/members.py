"""What moorage does with each member of CreateTransformJob: implemented, recorded-and-ignored, or refused.

The same rule as control/unsupported.py for deployments: a member accepted and then not honoured is
silent wrong behaviour, so every input member is classified here once, and
`tests/unit/transform/test_members.py` checks botocore's own input shapes against these tables.
Paths are `<Scope>.<Member>`: the operation, or the structure the member belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping

from moorage.control.records import JsonObject
from moorage.control.unsupported import Refusal
from moorage.errors import ValidationException

__all__ = ["IGNORED", "IMPLEMENTED", "REFUSED", "refuse_unsupported"]

IMPLEMENTED = frozenset(
    {
        "CreateTransformJob.TransformJobName",
        "CreateTransformJob.ModelName",
        "CreateTransformJob.MaxConcurrentTransforms",
        "CreateTransformJob.ModelClientConfig",
        "CreateTransformJob.MaxPayloadInMB",
        "CreateTransformJob.BatchStrategy",
        "CreateTransformJob.Environment",
        "CreateTransformJob.TransformInput",
        "CreateTransformJob.TransformOutput",
        "CreateTransformJob.TransformResources",
        "CreateTransformJob.DataProcessing",
        "TransformInput.DataSource",
        "TransformInput.ContentType",
        "TransformInput.CompressionType",
        "TransformInput.SplitType",
        "TransformDataSource.S3DataSource",
        "TransformS3DataSource.S3DataType",  # S3Prefix and ManifestFile; the others are refused below
        "TransformS3DataSource.S3Uri",
        "TransformOutput.S3OutputPath",
        "TransformOutput.Accept",
        "TransformOutput.AssembleWith",
        "TransformOutput.KmsKeyId",  # SSE-KMS on an external S3; refused for the embedded store
        "TransformResources.InstanceType",
        "TransformResources.InstanceCount",
        "ModelClientConfig.InvocationsTimeoutInSeconds",
        "ModelClientConfig.InvocationsMaxRetries",
        "DataProcessing.InputFilter",
        "DataProcessing.OutputFilter",
        "DataProcessing.JoinSource",
    }
)

IGNORED: Mapping[str, str] = {
    "CreateTransformJob.ExperimentConfig": "moorage has no SageMaker Experiments; the configuration is "
    "recorded and echoed by DescribeTransformJob",
    "TransformResources.VolumeKmsKeyId": "no volume is attached: records stream through the server's "
    "memory and outputs are staged in its data dir; encrypt that disk to get encryption at rest",
    "TransformResources.TransformAmiVersion": "there is no machine image to choose",
}


def _not_transform_input(value: object) -> bool:
    return value not in ("S3Prefix", "ManifestFile")


def _truthy(value: object) -> bool:
    return bool(value)


REFUSED: Mapping[str, Refusal] = {
    "CreateTransformJob.DataCaptureConfig": Refusal(
        "DataCaptureConfig is not supported by moorage's batch transform: no input or output would be "
        "captured. Remove it."
    ),
    "CreateTransformJob.Tags": Refusal(
        "Tags on transform jobs are not supported by moorage yet (ListTags could not find them); "
        "remove Tags.",
        _truthy,
    ),
    "TransformS3DataSource.S3DataType": Refusal(
        "A transform job reads S3DataType S3Prefix or ManifestFile; AugmentedManifestFile and Converse "
        "are not valid for batch transform.",
        _not_transform_input,
    ),
}


def refuse_unsupported(request: JsonObject) -> None:
    """Raise ValidationException for the first member of a CreateTransformJob input that moorage refuses."""
    _check("CreateTransformJob", request)
    source = ((request.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource")
    if isinstance(source, Mapping):
        _check("TransformS3DataSource", source)


def _check(scope: str, members: Mapping[str, object]) -> None:
    for member, value in members.items():
        refusal = REFUSED.get(f"{scope}.{member}")
        if refusal is not None and refusal.refuses(value):
            raise ValidationException(refusal.reason)
