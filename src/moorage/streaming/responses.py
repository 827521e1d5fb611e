"""A live stream as the HTTP edges send it: event-stream messages, or HTTP/1.1 chunks.

InvokeEndpointWithResponseStream sends one PayloadPart event per part, and a broken stream ends with
SageMaker's in-stream exception event (ModelStreamError or InternalStreamFailure), which boto3 raises
as EventStreamError (spec §c.4). The container's /invocations sends one chunk per part; HTTP/1.1 has no
way to say "failed" after the status line, so a broken stream is cut off without its last chunk, which
every HTTP client reports as an incomplete body (what SageMaker's StreamBroken is in the first place).

Either way, when the client leaves (the HTTP server cancels or closes the body iterator) the worker is
told to stop the handler's generator.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from moorage.api.eventstream import exception_event, payload_part
from moorage.settings import MAX_PAYLOAD_BYTES
from moorage.streaming.relay import INTERNAL_STREAM_FAILURE, PartStream, StreamFailure

__all__ = ["chunks", "events"]

log = logging.getLogger("moorage.streaming")


async def events(stream: PartStream, where: str) -> AsyncIterator[bytes]:
    """The event-stream body of InvokeEndpointWithResponseStream (`stream.on_whole`, when set, gets the
    joined parts once the stream has ended well)."""
    on_whole = stream.on_whole
    kept: list[bytes] | None = [] if on_whole is not None else None
    size = 0
    try:
        async for part in stream:
            if kept is not None:
                size += len(part)
                if size <= MAX_PAYLOAD_BYTES:
                    kept.append(part)
            yield payload_part(part)
    except StreamFailure as failure:
        log.warning("%s: the stream ended with %s: %s", where, failure.kind, failure.message)
        yield exception_event(failure.kind, failure.message, failure.error_code)
        return
    except Exception:
        log.exception("%s: relaying the stream failed", where)
        yield exception_event(INTERNAL_STREAM_FAILURE, "An internal error occurred; try your request again.")
        return
    finally:
        stream.cancel()  # a no-op once the worker ended the stream; else the client left
    if on_whole is not None and kept is not None and size <= MAX_PAYLOAD_BYTES:
        on_whole(b"".join(kept))


async def chunks(stream: PartStream, where: str) -> AsyncIterator[bytes]:
    """The chunked body of the container's /invocations; a broken stream is cut off (no last chunk)."""
    try:
        async for part in stream:
            yield part
    except StreamFailure as failure:
        log.warning("%s: the stream ended with %s: %s", where, failure.kind, failure.message)
        raise ConnectionAbortedError(f"the stream broke: {failure.message}") from None
    finally:
        stream.cancel()
