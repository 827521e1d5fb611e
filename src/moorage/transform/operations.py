"""CreateTransformJob, DescribeTransformJob, ListTransformJobs, StopTransformJob (spec §c.2).

The operations run on the control plane's store thread, like the hosting ones; they record what
should happen and tell the runner (`notify`), which does it. DescribeTransformJob keeps SageMaker's
shape and adds `MoorageProgress` (objects, records, bytes, rate, ETA): boto3 and the SDKs parse only
the members they model, so they never see it, and moorage's CLI shows it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moorage.control.arns import ControlContext, ResourceKind, name_key
from moorage.control.records import JsonObject
from moorage.control.store import Store
from moorage.control.validation import output_members, validate
from moorage.errors import ControlPlaneError, ValidationException
from moorage.transform.dataproc import DataProcessing
from moorage.transform.members import refuse_unsupported
from moorage.transform.records import TransformJob, TransformStatus
from moorage.transform.store import TransformStore

__all__ = ["MAX_PAYLOAD_MB", "ResourceNotFound", "TransformApi", "job_arn"]

# What `serve-model` as a batch container takes (SAGEMAKER_MAX_PAYLOAD_IN_MB): its bodies cross the
# worker protocol in one frame of at most 64 MiB (worker/protocol.py MAX_FRAME), and 60 MiB leaves room
# for the headers. A transform job's own requests go up to SageMaker's 100: a body above one frame
# travels as a file (instances.py).
MAX_PAYLOAD_MB = 60
_SAGEMAKER_MAX_PAYLOAD_MB = 100


class ResourceNotFound(ControlPlaneError):
    """The error botocore models for a missing transform job (DescribeTransformJob, StopTransformJob)."""

    code = "ResourceNotFound"


def job_arn(ctx: ControlContext, name: str) -> str:
    return f"arn:aws:sagemaker:{ctx.region}:{ctx.account_id}:transform-job/{name_key(name)}"


Progress = Callable[[str], JsonObject | None]
Operation = Callable[[Store, ControlContext, JsonObject], JsonObject]


@dataclass
class TransformApi:
    """The four operations over `store`; `notify(name)` may be called from any thread."""

    store: TransformStore
    notify: Callable[[str], None]
    progress: Progress
    embedded_s3: bool  # outputs go to moorage's own store (no KMS there)

    def operations(self) -> dict[str, Operation]:
        return {
            "CreateTransformJob": self.create,
            "DescribeTransformJob": self.describe,
            "ListTransformJobs": self.list,
            "StopTransformJob": self.stop,
        }

    def create(self, control: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
        request = validate("CreateTransformJob", request)
        refuse_unsupported(request)
        _check(request, embedded_s3=self.embedded_s3)
        model = control.get_model(request["ModelName"])
        if model is None:
            raise ValidationException(
                f'Could not find model "{ctx.arn(ResourceKind.MODEL, request["ModelName"])}".'
            )
        if model.container.mode == "MultiModel":
            # Records carry no TargetModel, so such a job could only fail once it ran: refuse it now.
            raise ValidationException(
                f'Model "{request["ModelName"]}" is a multi-model model (Mode MultiModel); batch transform '
                "runs one model: create a model with the archive's own ModelDataUrl and use that."
            )
        now = ctx.clock()
        job = TransformJob(
            name=request["TransformJobName"],
            arn=job_arn(ctx, request["TransformJobName"]),
            status=TransformStatus.IN_PROGRESS,
            creation_time=now,
            last_modified_time=now,
            request=request,
            container=model.container,
        )
        if not self.store.add_job(job):
            raise ValidationException(
                f"Job name must be unique within an AWS account and region, and a job "
                f"with this name already exists ({job.arn})"
            )
        self.notify(job.name)
        return {"TransformJobArn": job.arn}

    def describe(self, control: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
        request = validate("DescribeTransformJob", request)
        job = self._job(ctx, request["TransformJobName"])
        echoed = {k: v for k, v in job.request.items() if k in output_members("DescribeTransformJob")}
        result: JsonObject = {
            **echoed,
            "TransformJobName": job.name,
            "TransformJobArn": job.arn,
            "TransformJobStatus": job.status.value,
            "CreationTime": job.creation_time,
        }
        for member, value in (
            ("TransformStartTime", job.start_time),
            ("TransformEndTime", job.end_time),
            ("FailureReason", job.failure_reason),
        ):
            if value is not None:
                result[member] = value
        progress = self.progress(job.name)
        if progress is not None:
            result["MoorageProgress"] = progress
        return result

    def list(self, control: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
        request = validate("ListTransformJobs", request)
        jobs = [job for job in self.store.list_jobs() if _matches(job, request)]
        sort_by = request.get("SortBy", "CreationTime")
        descending = request.get("SortOrder", "Descending") == "Descending"
        jobs.sort(key=lambda job: (_sort_value(job, sort_by), name_key(job.name)), reverse=descending)
        scope = {k: v for k, v in request.items() if k not in ("NextToken", "MaxResults")}
        fingerprint = hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()[:16]
        start = 0
        if "NextToken" in request:
            cursor = control.decode_token(request["NextToken"])
            if cursor.get("f") != fingerprint or not isinstance(cursor.get("o"), int):
                raise ValidationException(
                    "Invalid pagination token: the NextToken was not issued for this request."
                )
            start = cursor["o"]
        end = start + request.get("MaxResults", 10)
        result: JsonObject = {"TransformJobSummaries": [_summary(job) for job in jobs[start:end]]}
        if end < len(jobs):
            result["NextToken"] = control.encode_token({"f": fingerprint, "o": end})
        return result

    def stop(self, control: Store, ctx: ControlContext, request: JsonObject) -> JsonObject:
        request = validate("StopTransformJob", request)
        job = self.store.set_status(
            request["TransformJobName"],
            TransformStatus.STOPPING,
            allowed_from=(TransformStatus.IN_PROGRESS,),
        )
        if job is None:
            raise _not_found(ctx, request["TransformJobName"])
        if job.status in (TransformStatus.COMPLETED, TransformStatus.FAILED):
            raise ValidationException(
                f"The transform job {job.name} has already ended ({job.status.value}); only a job that is "
                "InProgress can be stopped."
            )
        self.notify(job.name)
        return {}

    def _job(self, ctx: ControlContext, name: str) -> TransformJob:
        job = self.store.get_job(name)
        if job is None:
            raise _not_found(ctx, name)
        return job


def _not_found(ctx: ControlContext, name: str) -> ResourceNotFound:
    return ResourceNotFound(f'Could not find transform job "{job_arn(ctx, name)}".')


def _check(request: JsonObject, *, embedded_s3: bool) -> None:
    """What botocore's model cannot say: limits between members, URIs moorage reads, filters it parses."""
    problems: list[str] = []
    payload = request.get("MaxPayloadInMB")
    concurrency = request.get("MaxConcurrentTransforms") or 0
    if payload == 0:
        problems.append("MaxPayloadInMB 0 (chunked encoding of unlimited size) is not supported by moorage")
    elif payload is not None and payload > _SAGEMAKER_MAX_PAYLOAD_MB:
        problems.append(f"MaxPayloadInMB must be at most {_SAGEMAKER_MAX_PAYLOAD_MB}")
    if payload and concurrency and payload * concurrency > _SAGEMAKER_MAX_PAYLOAD_MB:
        problems.append(
            f"MaxConcurrentTransforms × MaxPayloadInMB ({concurrency} × {payload}) must not exceed "
            f"{_SAGEMAKER_MAX_PAYLOAD_MB}"
        )
    source = request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    output = request["TransformOutput"]["S3OutputPath"]
    for member, uri in (("S3Uri", source), ("S3OutputPath", output)):
        if not uri.startswith("s3://") or len(uri) <= len("s3://") or uri[5] == "/":
            problems.append(f"{member} {uri!r} must be an s3://bucket/key URI")
    if embedded_s3 and request["TransformOutput"].get("KmsKeyId"):
        problems.append(
            "TransformOutput.KmsKeyId: moorage's embedded S3 store does not encrypt objects with KMS keys; "
            "remove KmsKeyId, or run moorage with AWS_ENDPOINT_URL_S3 pointing at an S3 that does"
        )
    try:
        DataProcessing.from_request(
            request.get("DataProcessing", {}), request["TransformInput"].get("ContentType")
        )
    except ValueError as exc:
        problems.append(f"DataProcessing: {exc}")
    if problems:
        raise ValidationException("; ".join(problems))


def _matches(job: TransformJob, request: JsonObject) -> bool:
    contains = request.get("NameContains")
    if contains and name_key(contains) not in name_key(job.name):
        return False
    if "StatusEquals" in request and job.status.value != request["StatusEquals"]:
        return False
    for member, value, before in (
        ("CreationTimeBefore", job.creation_time, True),
        ("CreationTimeAfter", job.creation_time, False),
        ("LastModifiedTimeBefore", job.last_modified_time, True),
        ("LastModifiedTimeAfter", job.last_modified_time, False),
    ):
        bound = request.get(member)
        # At the precision a client holds a time (microseconds), as control/store.py compares them.
        value = round(value, 6)
        if bound is not None and not (value < bound if before else value > bound):
            return False
    return True


def _sort_value(job: TransformJob, sort_by: str) -> Any:
    if sort_by == "Name":
        return name_key(job.name)
    if sort_by == "Status":
        return job.status.value
    return job.creation_time


def _summary(job: TransformJob) -> JsonObject:
    summary: JsonObject = {
        "TransformJobName": job.name,
        "TransformJobArn": job.arn,
        "CreationTime": job.creation_time,
        "LastModifiedTime": job.last_modified_time,
        "TransformJobStatus": job.status.value,
    }
    if job.end_time is not None:
        summary["TransformEndTime"] = job.end_time
    if job.failure_reason is not None:
        summary["FailureReason"] = job.failure_reason
    return summary
