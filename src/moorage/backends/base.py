"""The one interface between the runtime and wherever workers run.

A backend starts workers from a `WorkerSpec` and hands back a `WorkerHandle`; the runtime (pools,
supervisor, routing, timeouts) only ever talks to handles. `local` forks processes on this machine;
`ray` places actors on a cluster. Both run the same worker code and the same handler pipeline.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from moorage.streaming.relay import PartStream
from moorage.worker.protocol import Invoke, LoadFailed, Reply, WorkerSpec

__all__ = ["Backend", "PlacementProfile", "ReadyInfo", "WorkerHandle", "WorkerLost", "load_failure_text"]


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

    def invoke(self, batch: Sequence[Invoke]) -> list[asyncio.Future[Reply | PartStream]]:
        """Send one request (or one batch); each future fails with WorkerLost if the worker dies first.
        A single request with `stream` set may resolve with a PartStream (its handler yielded)."""
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

    async def start(self) -> None:
        """Get ready to place workers (fork server up, cluster joined). Idempotent: later calls wait for
        the first; a call after a failed one tries again. Raises InstanceStartError when it cannot."""
        ...

    async def spawn_worker(self, spec: WorkerSpec, profile: PlacementProfile, log_path: Path) -> WorkerHandle:
        """Start one worker; returns as soon as it exists (call `wait_ready` for the model to load).

        InstanceStartError when no place could ever hold `profile` (say, GPUs on a cluster without any).
        """
        ...

    def capacity(self) -> PlacementProfile:
        """What one machine of this backend offers (for choosing worker counts and threads).

        Valid once `start` has returned: a cluster's machines are only known after joining it.
        """
        ...

    async def close(self) -> None: ...


def load_failure_text(failure: LoadFailed, log_path: Path) -> str:
    """What the user reads in FailureReason: the exception, then the last lines of the worker's log
    (or of the traceback, when the log is on another machine)."""
    text = f"The model could not be loaded: {failure.error}"
    tail = _log_tail(log_path, 8)
    if tail:
        return text + f"\nLast lines of the log ({log_path.name}):\n{tail}"
    traceback = "\n".join(failure.detail.strip().splitlines()[-8:])
    return text + (f"\nLast lines of the traceback:\n{traceback}" if traceback else "")


def _log_tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
