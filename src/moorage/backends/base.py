"""The one interface between the runtime and wherever workers run.

A backend starts workers from a `WorkerSpec` and hands back a `WorkerHandle`; the runtime (pools,
supervisor, routing, timeouts) only ever talks to handles. `local` forks processes on this machine;
`ray` places actors on a cluster. Both run the same worker code and the same handler pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from moorage.worker.protocol import Invoke, Reply, WorkerSpec

__all__ = ["Backend", "PlacementProfile", "ReadyInfo", "WorkerHandle", "WorkerLost"]


class WorkerLost(Exception):
    """The worker went away while a request was on it; `detail` says how (exit code, signal, node)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class ReadyInfo:
    pid: int | None
    load_seconds: float
    device: str
    node: str = "local"


@dataclass(frozen=True)
class PlacementProfile:
    """What one worker may use: derived from the instance type (vCPUs, memory, GPUs)."""

    cpus: int
    memory_bytes: int | None
    gpus: int = 0


class WorkerHandle(Protocol):
    name: str

    @property
    def pid(self) -> int | None: ...

    async def wait_ready(self, timeout: float) -> ReadyInfo:
        """Until model_fn has returned; InstanceStartError if it raised, the worker died, or time ran out."""
        ...

    def invoke(self, batch: Sequence[Invoke]) -> list[asyncio.Future[Reply]]:
        """Send one request (or one batch); each future fails with WorkerLost if the worker dies first."""
        ...

    async def ping(self, timeout: float) -> None:
        """Round trip to an idle worker; TimeoutError or WorkerLost when it does not answer."""
        ...

    def kill(self, reason: str) -> None:
        """Stop it now (SIGKILL or equivalent); in-flight futures fail with WorkerLost(reason)."""
        ...

    async def stop(self, grace_s: float) -> None:
        """Ask it to exit, wait up to `grace_s`, then kill it."""
        ...

    async def wait_gone(self) -> str:
        """Until the worker is gone; returns how it ended, in words."""
        ...


class Backend(Protocol):
    name: str

    async def start(self) -> None: ...

    async def spawn_worker(self, spec: WorkerSpec, profile: PlacementProfile, log_path: Path) -> WorkerHandle:
        """Start one worker; returns as soon as it exists (call `wait_ready` for the model to load)."""
        ...

    def capacity(self) -> PlacementProfile:
        """What one machine of this backend offers (for choosing worker counts and threads)."""
        ...

    async def close(self) -> None: ...
