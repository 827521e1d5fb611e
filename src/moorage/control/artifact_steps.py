"""The artifact side of starting a variant: where its model comes from, and the threads that fetch it.

Split out of `control/reconciler.py`, which keeps the endpoint state machine; these helpers know
nothing about endpoints. Artifact preparation blocks (a download, an unpack) and may be stuck for as
long as ModelDataDownloadTimeoutInSeconds, so it runs on a daemon thread that a stopping server does
not wait for, and it logs to the variant's own log file from that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from moorage.artifacts import ModelSource, PreparedModel
from moorage.control.records import ContainerSpec
from moorage.errors import ArtifactSourceError

__all__ = ["SHA256_PIN", "line_writer", "model_source", "on_daemon_thread", "release_prepared"]

# The reconciler's logger: these lines are about a variant the reconciler starts or stops.
log = logging.getLogger("moorage.control.reconciler")

_T = TypeVar("_T")

SHA256_PIN = "MOORAGE_MODEL_DATA_SHA256"  # an integrity pin for any source, in the model's Environment


def model_source(container: ContainerSpec) -> ModelSource:
    """Where a model's artifact is, with its integrity pins, from its container definition."""
    source = container.model_data_source or {}  # ModelDataSource.S3DataSource, as CreateModel stored it
    url = container.model_data_url or source.get("S3Uri")
    if not url:
        raise ArtifactSourceError(
            "The model has no ModelDataUrl (or ModelDataSource.S3DataSource.S3Uri); moorage needs the model "
            "artifact to serve it."
        )
    prefix = source.get("S3DataType") == "S3Prefix" and source.get("CompressionType") == "None"
    return ModelSource(
        url=url,
        kind="prefix" if prefix else "archive",
        etag=source.get("ETag"),
        sha256=container.environment.get(SHA256_PIN),
    )


async def release_prepared(prepared: PreparedModel) -> None:
    """Release a prepared model's tree leases off the event loop (freeing a tree removes files)."""
    try:
        await asyncio.to_thread(prepared.release)
    except Exception:  # the variant is stopped either way; the cache budget frees the tree later
        log.exception("could not release the model trees of %s", prepared.model_dir)


async def on_daemon_thread(call: Callable[[], _T]) -> _T:
    """Run blocking `call` on a thread of its own that does not hold the process open at exit.

    Artifact preparation may be stuck in a download for as long as ModelDataDownloadTimeoutInSeconds;
    a server asked to stop must not wait for it (its workspace is swept at the next start).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def run() -> None:
        try:
            settle = functools.partial(_succeed, future, call())
        except BaseException as exc:
            settle = functools.partial(_fail, future, exc)
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the server has stopped
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=run, name="artifacts", daemon=True).start()
    return await future


def _succeed(future: asyncio.Future[_T], result: _T) -> None:
    if not future.done():  # a cancelled caller waits no more
        future.set_result(result)


def _fail(future: asyncio.Future[_T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def line_writer(path: Path) -> Callable[[str], None]:
    """Append lines to a log file from any thread (artifact preparation runs in worker threads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def write(line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with lock, path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {line}\n")

    return write
