"""What an instance of a given type may use here, and how many workers and threads that makes.

SageMaker's instance types are machines; moorage's instances are groups of worker processes on one
machine. The type's vCPUs cap torch's threads, its memory caps the workers' heap, its GPUs decide
where the model runs. The worker count follows SageMaker's PyTorch container: SAGEMAKER_MODEL_SERVER_WORKERS
if set, else one worker per GPU, else one per vCPU (spec §2.2), never more than this machine's cores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moorage.backends.base import PlacementProfile
from moorage.errors import InstanceStartError
from moorage.settings import ContainerConfig

__all__ = ["InstancePlan", "InstanceProfile", "plan_instance", "profile_for"]

_GIB = 1024**3


@dataclass(frozen=True)
class InstanceProfile:
    vcpus: int | None  # None: this machine's cores
    memory_gib: float | None  # None: no limit
    gpus: int  # -1: every GPU of the machine


# Public AWS figures for the families people deploy PyTorch on; others are estimated from the size
# suffix by `profile_for` (SageMaker's full list is validated by the control plane).
_TABLE: dict[str, tuple[int, float, int]] = {
    "ml.t2.medium": (2, 4, 0),
    "ml.t2.large": (2, 8, 0),
    "ml.t2.xlarge": (4, 16, 0),
    "ml.t2.2xlarge": (8, 32, 0),
    "ml.m4.xlarge": (4, 16, 0),
    "ml.m4.2xlarge": (8, 32, 0),
    "ml.m4.4xlarge": (16, 64, 0),
    "ml.m4.10xlarge": (40, 160, 0),
    "ml.m4.16xlarge": (64, 256, 0),
    "ml.m5.large": (2, 8, 0),
    "ml.m5.xlarge": (4, 16, 0),
    "ml.m5.2xlarge": (8, 32, 0),
    "ml.m5.4xlarge": (16, 64, 0),
    "ml.m5.12xlarge": (48, 192, 0),
    "ml.m5.24xlarge": (96, 384, 0),
    "ml.c4.large": (2, 3.75, 0),
    "ml.c4.xlarge": (4, 7.5, 0),
    "ml.c4.2xlarge": (8, 15, 0),
    "ml.c4.4xlarge": (16, 30, 0),
    "ml.c4.8xlarge": (36, 60, 0),
    "ml.c5.large": (2, 4, 0),
    "ml.c5.xlarge": (4, 8, 0),
    "ml.c5.2xlarge": (8, 16, 0),
    "ml.c5.4xlarge": (16, 32, 0),
    "ml.c5.9xlarge": (36, 72, 0),
    "ml.c5.18xlarge": (72, 144, 0),
    "ml.r5.large": (2, 16, 0),
    "ml.r5.xlarge": (4, 32, 0),
    "ml.r5.2xlarge": (8, 64, 0),
    "ml.r5.4xlarge": (16, 128, 0),
    "ml.r5.12xlarge": (48, 384, 0),
    "ml.r5.24xlarge": (96, 768, 0),
    "ml.g4dn.xlarge": (4, 16, 1),
    "ml.g4dn.2xlarge": (8, 32, 1),
    "ml.g4dn.4xlarge": (16, 64, 1),
    "ml.g4dn.8xlarge": (32, 128, 1),
    "ml.g4dn.12xlarge": (48, 192, 4),
    "ml.g4dn.16xlarge": (64, 256, 1),
    "ml.g5.xlarge": (4, 16, 1),
    "ml.g5.2xlarge": (8, 32, 1),
    "ml.g5.4xlarge": (16, 64, 1),
    "ml.g5.8xlarge": (32, 128, 1),
    "ml.g5.12xlarge": (48, 192, 4),
    "ml.g5.16xlarge": (64, 256, 1),
    "ml.g5.24xlarge": (96, 384, 4),
    "ml.g5.48xlarge": (192, 768, 8),
    "ml.p3.2xlarge": (8, 61, 1),
    "ml.p3.8xlarge": (32, 244, 4),
    "ml.p3.16xlarge": (64, 488, 8),
}

_SIZE = re.compile(r"^ml\.(?P<family>[a-z]+\d*[a-z]*)\.(?P<mult>\d*)(?P<size>medium|large|xlarge|metal)$")


def profile_for(instance_type: str) -> InstanceProfile:
    if instance_type == "local":
        return InstanceProfile(vcpus=None, memory_gib=None, gpus=0)
    if instance_type == "local_gpu":
        return InstanceProfile(vcpus=None, memory_gib=None, gpus=-1)
    if instance_type in _TABLE:
        vcpus, memory, gpus = _TABLE[instance_type]
        return InstanceProfile(vcpus, memory, gpus)
    match = _SIZE.match(instance_type)
    if match is None:
        raise InstanceStartError(f"Unknown instance type {instance_type!r}.")
    size = match["size"]
    mult = int(match["mult"] or "1")
    vcpus = {"medium": 1, "large": 2, "xlarge": 4 * mult, "metal": 96}[size]
    family = match["family"]
    gpus = 1 if family.startswith(("g", "p")) else 0
    return InstanceProfile(vcpus, 4.0 * vcpus, gpus)


@dataclass(frozen=True)
class InstancePlan:
    workers: int
    max_threads: int  # per worker; requests get between 1 and this (runtime/cpu.py)
    fixed_threads: int  # 0: adaptive
    gpus: int
    memory_limit_bytes: int | None  # per worker
    profile: PlacementProfile  # what one worker asks of the backend


def plan_instance(
    instance_type: str,
    container: ContainerConfig,
    machine: PlacementProfile,
    *,
    memory_limit_override: int | None = None,
) -> InstancePlan:
    profile = profile_for(instance_type)
    gpus = machine.gpus if profile.gpus < 0 else profile.gpus
    if gpus > machine.gpus:
        raise InstanceStartError(
            f"Instance type {instance_type} needs {gpus} GPU(s) but this machine has {machine.gpus}. "
            "Use a CPU instance type (for example ml.m5.xlarge) or 'local' here."
        )
    cores = machine.cpus
    vcpus = min(profile.vcpus or cores, cores)
    workers = container.workers or (gpus if gpus else vcpus)
    memory_limit: int | None = None
    if memory_limit_override is not None:
        memory_limit = memory_limit_override or None
    elif profile.memory_gib is not None and gpus == 0:
        # RLIMIT_DATA also counts what a worker inherits from the fork server (torch is ~1 GiB of it),
        # so the floor keeps small instance types usable while still stopping a runaway worker.
        memory_limit = max(int(profile.memory_gib * _GIB / workers), 3 * _GIB)
    return InstancePlan(
        workers=workers,
        max_threads=max(1, vcpus),
        fixed_threads=container.torch_threads or 0,
        gpus=gpus,
        memory_limit_bytes=memory_limit,
        profile=PlacementProfile(
            cpus=max(1, vcpus // workers), memory_bytes=memory_limit, gpus=1 if gpus else 0
        ),
    )
