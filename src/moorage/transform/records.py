"""A transform job as stored: its request, the model's container it was created with, its status."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from moorage.control.records import ContainerSpec, JsonObject

__all__ = ["InputObject", "ObjectState", "TransformJob", "TransformStatus"]


class TransformStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def final(self) -> bool:
        return self in (TransformStatus.COMPLETED, TransformStatus.FAILED, TransformStatus.STOPPED)


class ObjectState(StrEnum):
    PENDING = "pending"  # not started, or started and interrupted: done again, whole
    DONE = "done"  # its output is published
    FAILED = "failed"  # no output; `reason` says why


@dataclass(frozen=True)
class TransformJob:
    name: str
    arn: str
    status: TransformStatus
    creation_time: float
    last_modified_time: float
    request: JsonObject  # the validated CreateTransformJob input, echoed by DescribeTransformJob
    container: ContainerSpec  # the model's, copied at creation: DeleteModel does not change the job
    start_time: float | None = None
    end_time: float | None = None
    failure_reason: str | None = None
    listed: bool = False  # the input objects are recorded (a restart reuses that list)


@dataclass(frozen=True)
class InputObject:
    """One input object of a job, in input order; `name` is its path relative to the input root."""

    seq: int
    bucket: str
    key: str
    name: str
    size: int
    state: ObjectState = ObjectState.PENDING
    records: int = 0
    reason: str | None = None
