"""The server's side of one live stream: the parts a worker sends, handed to an HTTP edge in order.

A worker handle (backends/local.py, backends/ray.py) makes a `PartStream` when the StreamHead of a
request arrives and feeds it the parts that follow; the pool's future for the request resolves with
it, and the pool keeps the worker's slot busy until `finished` (the worker sent StreamEnd, or died).
The edge iterates it; every part it takes is credit given back to the worker (`grant`), in steps of
half the window, so the worker runs at most `window` parts ahead of the client.

How a stream can end besides its last part, as SageMaker's in-stream errors (spec §c.4):
- the handler raised after its first part → ModelStreamError, ErrorCode StreamBroken, its message;
- the invocation timeout ran out (the whole stream), or no part came within the idle timeout while
  the edge waited → ModelStreamError, ErrorCode ModelInvocationTimeExceeded; the worker is killed;
- the worker died → ModelStreamError, ErrorCode StreamBroken;
- moorage itself failed (a malformed frame) → InternalStreamFailure.
The client leaving is `cancel()`: the worker is told to close the generator, and is free once it has.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from moorage.streaming.frames import EndHow, StreamEnd
from moorage.worker.protocol import Reply

__all__ = ["PartStream", "StreamFailure"]

MODEL_STREAM_ERROR = "ModelStreamError"
INTERNAL_STREAM_FAILURE = "InternalStreamFailure"


class StreamFailure(Exception):
    """A stream that broke after its first part: `kind` and `error_code` are SageMaker's event names."""

    def __init__(self, kind: str, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.error_code = error_code

    @property
    def timed_out(self) -> bool:
        return self.error_code == "ModelInvocationTimeExceeded"


class PartStream:
    """The parts of one streamed answer, in order; an async iterator of byte strings."""

    def __init__(
        self,
        head: Reply,
        *,
        window: int,
        idle_timeout_s: float,
        grant: Callable[[int], None],
        cancel: Callable[[], None],
        kill: Callable[[str], None],
    ) -> None:
        """`head`: the request's status, content type and headers, with the first part as its body.
        `grant(n)`: let the worker send n more parts; `cancel()`: tell it to stop; `kill(reason)`: end
        a worker that stopped answering."""
        self.head = head
        self._loop = asyncio.get_running_loop()
        self._parts: deque[bytes] = deque((head.body,))
        self._grant = grant
        self._cancel = cancel
        self._kill = kill
        self._grant_every = max(1, window // 2)
        self._taken = 0  # parts taken since credit was last given back
        self._idle_timeout_s = idle_timeout_s
        self._idle: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._failure: StreamFailure | None = None
        self._ended = False  # the worker sent StreamEnd (or is gone): no part will follow
        self._cancelled = False
        self.worker_lost = False  # the worker went away mid-stream: its slot must not take requests
        self.model_us = head.model_us
        # Called with the joined parts (up to 6 MiB) once the stream has ended well (data capture).
        self.on_whole: Callable[[bytes], None] | None = None
        self.finished: asyncio.Future[None] = self._loop.create_future()  # the worker is free again

    # Worker side (the handle calls these) ----------------------------------------------------------
    def feed(self, part: bytes) -> None:
        if self._cancelled or self._ended:
            return
        self._parts.append(part)
        self._wake()

    def end(self, message: StreamEnd) -> None:
        """The worker's StreamEnd: the last part came, or how the stream broke."""
        self.model_us = message.model_us
        if message.how in (EndHow.FAILED, EndHow.BROKEN):
            self._fail(StreamFailure(MODEL_STREAM_ERROR, message.message, "StreamBroken"))
        self._close()

    def lost(self, detail: str) -> None:
        """The worker went away mid-stream (a crash, or killed for a timeout already reported)."""
        self.worker_lost = True
        self._fail(
            StreamFailure(
                MODEL_STREAM_ERROR,
                f"The model's worker stopped while streaming: {detail}.",
                "StreamBroken",
            )
        )
        self._close()

    def broken(self, detail: str) -> None:
        """moorage itself could not go on relaying this stream (a frame it cannot read)."""
        self._fail(StreamFailure(INTERNAL_STREAM_FAILURE, f"moorage could not relay the stream: {detail}"))

    def time_out(self, timeout_s: float) -> None:
        """The invocation timeout ran out on the whole stream (the pool kills the worker next)."""
        self._fail(
            StreamFailure(
                MODEL_STREAM_ERROR,
                f"The model did not finish streaming within the {timeout_s:g} s invocation timeout.",
                "ModelInvocationTimeExceeded",
            )
        )

    # Edge side -------------------------------------------------------------------------------------
    def __aiter__(self) -> PartStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._parts:
            if self._failure is not None:
                raise self._failure
            if self._ended:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            self._arm_idle()
            try:
                await self._waiter
            finally:
                self._waiter = None
                self._disarm_idle()
        part = self._parts.popleft()
        self._taken += 1
        if self._taken >= self._grant_every and not self._ended:
            self._grant(self._taken)
            self._taken = 0
        return part

    def cancel(self) -> None:
        """The client left (or the edge stopped reading): stop the generator; idempotent."""
        if self._cancelled:
            return
        self._cancelled = True
        self._parts.clear()
        if not self._ended:
            self._cancel()
            self._arm_idle()  # a worker that never acknowledges is ended after the idle timeout

    # Internals -------------------------------------------------------------------------------------
    def _fail(self, failure: StreamFailure) -> None:
        if self._failure is None:
            self._failure = failure
        self._wake()

    def _close(self) -> None:
        self._ended = True
        self._disarm_idle()
        if not self.finished.done():
            self.finished.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _arm_idle(self) -> None:
        self._disarm_idle()
        if not self._ended:
            self._idle = self._loop.call_later(self._idle_timeout_s, self._idle_expired)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        if self._ended:
            return
        self._fail(
            StreamFailure(
                MODEL_STREAM_ERROR,
                f"The model sent no part within the {self._idle_timeout_s:g} s stream idle timeout "
                "(MOORAGE_STREAM_IDLE_TIMEOUT).",
                "ModelInvocationTimeExceeded",
            )
        )
        self._kill(f"it sent no part within the {self._idle_timeout_s:g} s stream idle timeout")
