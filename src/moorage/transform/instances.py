"""A transform job's instances and the one kind of call it makes of them.

The instances are an endpoint variant's (runtime/variant.py) with two differences: answers may be as
large as a batch request (RESPONSE_CAP, not the real-time 6 MiB), and a resumed job's instances take
the ids its earlier instances had, so the job keeps one log stream per instance. A request that fails
(an error status, a timeout, a worker lost with its process or its Ray node) is sent again, to
whichever worker is free, up to InvocationsMaxRetries times.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from moorage.asyncinf.bodies import BodyFiles, ReplyFileError
from moorage.errors import MoorageError
from moorage.runtime.outcomes import Answered, Died, Outcome, TimedOut
from moorage.runtime.pool import next_request_id
from moorage.runtime.variant import VariantRuntime
from moorage.transform.config import JobConfig
from moorage.transform.split import Payload
from moorage.worker.protocol import REPLY_IN_FILE, REPLY_TOO_LARGE, Invoke, WorkerSpec

__all__ = ["FILE_OVER", "RESPONSE_CAP", "BatchVariant", "ObjectFailed", "call", "earlier_instances"]

RESPONSE_CAP = 100 * 1024 * 1024  # what one answer may be: as large as the largest request body
FILE_OVER = 32 * 1024 * 1024  # bodies and answers above this go through files, not worker frames
_FRAMED_CAP = 60 * 1024 * 1024  # an answer sent in a frame (worker/protocol.py frames at most 64 MiB)


class ObjectFailed(Exception):
    """One input object failed; the others go on."""


class BatchVariant(VariantRuntime):
    """An endpoint variant whose workers may answer up to MaxPayloadInMB-sized bodies, not 6 MiB, and
    whose instances take the ids a resumed job's earlier instances had (`reuse`): the job keeps one log
    stream per instance across restarts, as the SDK's `logs=True` expects (it lists no more streams than
    the job has instances, and loops when there are more)."""

    def __init__(self, *args: Any, reuse: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reuse = reuse

    def _specs(self, instance_id: str) -> list[WorkerSpec]:
        return [replace(spec, max_response_bytes=_FRAMED_CAP) for spec in super()._specs(instance_id)]

    def _instance_id(self) -> str:
        return self._reuse.pop(0) if self._reuse else super()._instance_id()


def earlier_instances(streams: Path, count: int) -> list[str]:
    """The instance ids of the job's earlier runs (their stream files), at most `count`, by name."""
    try:
        return sorted(path.stem for path in streams.glob("i-*.log"))[:count]
    except OSError:
        return []


async def call(runtime: VariantRuntime, config: JobConfig, payload: Payload, files: BodyFiles) -> bytes:
    """One request, retried up to InvocationsMaxRetries times; ObjectFailed when it never succeeds."""
    error = ""
    for _ in range(config.retries + 1):
        try:
            outcome = await _attempt(runtime, config, payload, files)
        except MoorageError as exc:
            error = exc.message
            continue
        except ReplyFileError as exc:
            error = str(exc)
            continue
        if isinstance(outcome, Answered) and outcome.reply.status < 300 and not outcome.reply.too_large:
            return outcome.reply.body
        error = _describe(outcome)
    where = (
        f"record {payload.first_index + 1}"
        if payload.count == 1
        else f"records {payload.first_index + 1}-{payload.first_index + payload.count}"
    )
    raise ObjectFailed(
        f"{where} (byte offset {payload.first_offset}) failed after {config.retries + 1} attempts: {error}"
    )


async def _attempt(runtime: VariantRuntime, config: JobConfig, payload: Payload, files: BodyFiles) -> Outcome:
    """Send the request once. A body above FILE_OVER (MaxPayloadInMB goes to 100; a worker frame holds
    64 MiB) travels as a file, and so does any answer above it (the worker writes one only then); the
    answer is read back whole, and one over RESPONSE_CAP is reported as too large."""
    request_id = next_request_id()
    large = len(payload.body) > FILE_OVER
    body_path, reply_path = files.input_path(str(request_id)), files.reply_path(str(request_id))
    in_file = False
    try:
        if large:
            await asyncio.to_thread(body_path.write_bytes, payload.body)
        message = Invoke(
            request_id=request_id,
            body=b"" if large else payload.body,
            content_type=config.content_type,
            accept=config.accept,
            body_file=str(body_path) if large else None,
            reply_file=str(reply_path),
            reply_over=FILE_OVER,
        )
        outcome = await runtime.pool.submit(message)
        if isinstance(outcome, Answered) and outcome.reply.in_file:
            in_file = True
            body = await asyncio.to_thread(lambda: b"".join(files.chunks(reply_path, RESPONSE_CAP + 1)))
            if len(body) > RESPONSE_CAP:
                outcome = Answered(replace(outcome.reply, body=b"", flags=REPLY_TOO_LARGE | REPLY_IN_FILE))
            else:
                outcome = Answered(replace(outcome.reply, body=body, flags=0))
        return outcome
    finally:
        if large or in_file:
            await asyncio.to_thread(files.discard, str(request_id))


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, TimedOut):
        return f"no answer within InvocationsTimeoutInSeconds ({outcome.timeout_s:g} s)"
    if isinstance(outcome, Died):
        return f"the worker died ({outcome.detail})"
    reply = outcome.reply
    if reply.too_large:
        limit = RESPONSE_CAP if reply.in_file else _FRAMED_CAP
        return f"the answer was larger than {limit} bytes"
    body = reply.body.decode("utf-8", "replace").strip()
    return f"the handler answered {reply.status}: {body[:500]}"
