"""A worker handle's live streams: the stream frames it sends and receives, kept out of the handle.

The local handle (backends/local.py) owns one `StreamDesk`: it asks it for the StreamOpen frame of a
request that may stream, hands it every stream frame the worker sends, and tells it when the worker
is gone. The desk turns a StreamHead into the `PartStream` the request's future resolves with. The Ray
handle (backends/ray.py) owns `PulledStreams`, the same with actor calls instead of a socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from moorage.backends.base import WorkerLost
from moorage.settings import WorkerSettings
from moorage.streaming.frames import (
    StreamCancel,
    StreamCredit,
    StreamEnd,
    StreamHead,
    StreamMessage,
    StreamOpen,
    StreamPart,
    encode_stream,
)
from moorage.streaming.relay import PartStream
from moorage.worker.protocol import Invoke, Message, ProtocolError, Reply, decode, encode, split_frames

__all__ = ["PulledStreams", "StreamDesk", "StreamLimits", "frames_of", "head_reply"]


@dataclass(frozen=True)
class StreamLimits:
    window: int = 16  # MOORAGE_STREAM_WINDOW
    idle_timeout_s: float = 60.0  # MOORAGE_STREAM_IDLE_TIMEOUT

    @classmethod
    def of(cls, workers: WorkerSettings) -> StreamLimits:
        return cls(workers.stream_window, workers.stream_idle_timeout_s)


def head_reply(head: StreamHead) -> Reply:
    """The stream's status, content type and headers as the Reply the edges already read."""
    return Reply(
        head.request_id,
        head.status,
        head.body,
        head.content_type,
        head.reason,
        head.headers,
        0,
        head.model_us,
    )


class StreamDesk:
    def __init__(
        self, limits: StreamLimits, send: Callable[[list[bytes]], None], kill: Callable[[str], None]
    ) -> None:
        """`send`: write frames to the worker; `kill`: end a worker that stopped streaming."""
        self.limits = limits
        self._send = send
        self._kill = kill
        self._streams: dict[int, PartStream] = {}

    def open_frames(self, request_id: int) -> list[bytes]:
        """The StreamOpen frame to send just before a request's Invoke."""
        return encode_stream(StreamOpen(request_id, self.limits.window))

    def receive(
        self, message: StreamMessage, pending: dict[int, asyncio.Future[Reply | PartStream]]
    ) -> Reply | None:
        """A stream frame from the worker. Returns the Reply-shaped head when it started a stream
        (the handle's bookkeeping for answers, such as the thread budget, applies to it)."""
        request_id = message.request_id
        if isinstance(message, StreamPart):
            stream = self._streams.get(request_id)
            if stream is not None:
                stream.feed(message.body)
            return None
        if isinstance(message, StreamEnd):
            stream = self._streams.pop(request_id, None)
            if stream is not None:
                stream.end(message)
            return None
        if not isinstance(message, StreamHead):
            raise ProtocolError(
                f"a worker sent stream message kind {message.kind}, which only the server sends"
            )
        reply = head_reply(message)
        stream = PartStream(
            reply,
            window=self.limits.window,
            idle_timeout_s=self.limits.idle_timeout_s,
            grant=lambda parts: self._send(encode_stream(StreamCredit(request_id, parts))),
            cancel=lambda: self._send(encode_stream(StreamCancel(request_id))),
            kill=self._kill,
        )
        self._streams[request_id] = stream
        future = pending.pop(request_id, None)
        if future is None or future.done():  # nobody waits (the request timed out): stop it at once
            stream.cancel()
        else:
            future.set_result(stream)
        return reply

    def lost(self, detail: str) -> None:
        """The worker is gone: every stream on it ends with how."""
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.lost(detail)

    def broken(self, detail: str) -> None:
        """The worker sent something unreadable (it is killed next): its streams end as moorage's failure."""
        for stream in self._streams.values():
            stream.broken(detail)


class PulledStreams:
    """The Ray handle's live streams: an actor cannot push frames, so the server pulls them.

    `start` sends StreamOpen and the Invoke in one `handle` call, whose answer is a Reply (the handler
    did not stream) or a StreamHead. Then one `pull` call per part, made only while the client has
    room (the window of credit, as for a local worker); `cancel` when the client leaves. The actor
    takes one call at a time, so it serves nothing else until the stream has ended.
    """

    def __init__(
        self,
        limits: StreamLimits,
        call: Callable[..., asyncio.Future[Any]],
        kill: Callable[[str], None],
    ) -> None:
        """`call(method, *args)`: an actor call whose future fails with WorkerLost if the actor is gone."""
        self.limits = limits
        self._call = call
        self._kill = kill
        self._streams: dict[int, PartStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, message: Invoke) -> asyncio.Future[Reply | PartStream]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply | PartStream] = loop.create_future()
        frames = encode_stream(StreamOpen(message.request_id, self.limits.window)) + encode(message)
        call = self._call("handle", b"".join(frames))
        call.add_done_callback(lambda done: self._started(done, message.request_id, future))
        return future

    def _started(
        self, call: asyncio.Future[Any], request_id: int, future: asyncio.Future[Reply | PartStream]
    ) -> None:
        error = call.exception()
        if error is not None:
            if not future.done():
                future.set_exception(error)
            return
        try:
            (answer,) = frames_of(call.result())
            if not isinstance(answer, Reply | StreamHead) or answer.request_id != request_id:
                raise ProtocolError("the worker answered a request with something else than its Reply")
        except (ProtocolError, ValueError) as exc:
            self._kill(f"protocol error: {exc}")
            if not future.done():
                future.set_exception(exc)
            return
        if isinstance(answer, Reply):
            if not future.done():
                future.set_result(answer)
            return
        credit = asyncio.Event()
        window = [self.limits.window - 1]  # parts the actor may produce before the client takes some
        stopped = [False]

        def grant(parts: int) -> None:
            window[0] += parts
            credit.set()

        def cancel() -> None:
            stopped[0] = True
            credit.set()

        stream = PartStream(
            head_reply(answer),
            window=self.limits.window,
            idle_timeout_s=self.limits.idle_timeout_s,
            grant=grant,
            cancel=cancel,
            kill=self._kill,
        )
        self._streams[request_id] = stream
        if future.done():  # nobody waits any more (timed out): stop the generator at once
            stopped[0] = True
        else:
            future.set_result(stream)

        async def pump() -> None:
            while True:
                while window[0] <= 0 and not stopped[0]:
                    credit.clear()
                    await credit.wait()
                frame = await self._call("cancel" if stopped[0] else "pull", request_id)
                (step,) = frames_of(frame)
                if isinstance(step, StreamPart):
                    stream.feed(step.body)
                    window[0] -= 1
                elif isinstance(step, StreamEnd):
                    self._streams.pop(request_id, None)
                    stream.end(step)
                    return
                else:
                    raise ProtocolError(f"the worker answered a pull with message kind {step.kind}")

        task = asyncio.get_running_loop().create_task(self._guarded(pump(), request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, pump: Coroutine[Any, Any, None], request_id: int) -> None:
        try:
            await pump
        except WorkerLost:
            return  # lost() has ended the stream with how the actor went
        except (ProtocolError, ValueError) as exc:
            stream = self._streams.get(request_id)
            if stream is not None:
                stream.broken(str(exc))
            self._kill(f"protocol error: {exc}")

    def lost(self, detail: str) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.lost(detail)


def frames_of(data: bytes) -> list[Message | StreamMessage]:
    """Every message in an actor's answer (which must end on a frame boundary)."""
    buffer = bytearray(data)
    messages = [decode(frame) for frame in split_frames(buffer)]
    if buffer:
        raise ProtocolError("the answer ends inside a frame")
    return messages
