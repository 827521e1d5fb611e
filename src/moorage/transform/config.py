"""A transform job's request, resolved once into what the runner needs (defaults applied, spec §c.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from moorage.transform.dataproc import DataProcessing
from moorage.transform.split import SplitType

__all__ = ["JobConfig", "output_key", "relative_name", "split_s3_uri"]

_MIB = 1024 * 1024
DEFAULT_TIMEOUT_S = 600  # ModelClientConfig.InvocationsTimeoutInSeconds' documented default
DEFAULT_RETRIES = 3  # ModelClientConfig.InvocationsMaxRetries' documented default
DEFAULT_PAYLOAD_MB = 6  # MaxPayloadInMB's documented default


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of an s3:// URI (validated when the job was created)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def relative_name(prefix: str, key: str) -> str:
    """An input's name relative to the input root: the key after the prefix's last `/`.

    `s3://b/in/` and `s3://b/in/da` both make `in/data/x.csv` → `data/x.csv` (sub-folders are kept, as
    SageMaker's local mode does; docs/compatibility.md).
    """
    root = prefix[: prefix.rfind("/") + 1]
    return key[len(root) :]


def output_key(output_prefix: str, name: str) -> str:
    base = output_prefix.rstrip("/")
    return f"{base}/{name}.out" if base else f"{name}.out"


@dataclass(frozen=True)
class JobConfig:
    input_uri: str
    input_type: str  # S3Prefix | ManifestFile
    content_type: str | None
    compression: str | None
    split: SplitType
    multi_record: bool
    max_payload_bytes: int
    max_payload_mb: int
    concurrency: int | None  # per instance; None: one per worker of an instance
    timeout_s: int
    retries: int
    output_bucket: str
    output_prefix: str
    accept: str | None
    assemble_line: bool
    kms_key_id: str | None
    processing: DataProcessing
    instance_type: str
    instance_count: int
    environment: dict[str, str]

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> JobConfig:
        source = request["TransformInput"]
        output = request["TransformOutput"]
        client = request.get("ModelClientConfig") or {}
        payload_mb = request.get("MaxPayloadInMB") or DEFAULT_PAYLOAD_MB
        bucket, prefix = split_s3_uri(output["S3OutputPath"])
        return cls(
            input_uri=source["DataSource"]["S3DataSource"]["S3Uri"],
            input_type=source["DataSource"]["S3DataSource"]["S3DataType"],
            content_type=source.get("ContentType"),
            compression=source.get("CompressionType"),
            split=cast(SplitType, source.get("SplitType", "None")),
            # SageMaker's own default is unconfirmed; the SDK and local mode send MultiRecord.
            multi_record=request.get("BatchStrategy", "MultiRecord") == "MultiRecord",
            max_payload_bytes=payload_mb * _MIB,
            max_payload_mb=payload_mb,
            concurrency=request.get("MaxConcurrentTransforms") or None,
            timeout_s=client.get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT_S),
            retries=client.get("InvocationsMaxRetries", DEFAULT_RETRIES),
            output_bucket=bucket,
            output_prefix=prefix,
            accept=output.get("Accept"),
            assemble_line=output.get("AssembleWith") == "Line",
            kms_key_id=output.get("KmsKeyId"),
            processing=DataProcessing.from_request(
                request.get("DataProcessing") or {}, source.get("ContentType")
            ),
            instance_type=request["TransformResources"]["InstanceType"],
            instance_count=request["TransformResources"]["InstanceCount"],
            environment=dict(request.get("Environment") or {}),
        )

    def worker_environment(self, model_environment: dict[str, str], concurrency: int) -> dict[str, str]:
        """The model's environment, the job's Environment over it, then the batch contract's variables.

        The invocation timeout is ModelClientConfig's (the pool enforces SAGEMAKER_MODEL_SERVER_TIMEOUT).
        """
        return {
            **model_environment,
            **self.environment,
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(self.max_payload_mb),
            "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD" if self.multi_record else "SINGLE_RECORD",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": str(concurrency),
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(self.timeout_s),
        }
