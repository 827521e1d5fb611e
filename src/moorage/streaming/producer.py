"""The worker's side of a stream: plain blocking code that sends parts as the handler yields them.

Backpressure is credit: the server's StreamOpen grants a window of parts, and it grants more
(StreamCredit) only as its client takes them. With no credit left the worker blocks reading its
socket, so the handler's generator is not advanced: a slow client slows the generator and nothing
piles up in memory. Between parts the worker looks for a StreamCancel without blocking (one poll);
on one it closes the generator, whose `finally` runs, and says so with StreamEnd. The worker takes no
other request until StreamEnd is sent (the server's pool keeps its slot busy).

A Ray actor cannot hold its socket open across calls; it serves the same steps one call at a time
(`ActorStreams`): each call advances the generator by one part, and the server makes a call only when
its client has room, which is the same credit with a window of one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from moorage.handler.toolkit_errors import describe_failure
from moorage.streaming.frames import (
    EndHow,
    StreamCancel,
    StreamCredit,
    StreamEnd,
    StreamHead,
    StreamMessage,
    StreamOpen,
    StreamPart,
    encode_stream,
)
from moorage.streaming.parts import PartIterator
from moorage.worker.protocol import Invoke, Message, ProtocolError, Reply, encode

if TYPE_CHECKING:
    from moorage.handler.pipeline import HandlerResponse

__all__ = ["ActorStreams", "LiveStream", "open_stream", "produce"]

log = logging.getLogger("moorage.worker")


class _Channel(Protocol):
    """What the producer needs of the worker's socket (worker/main.py's Channel)."""

    def receive(self) -> Message | StreamMessage | None: ...

    def ready(self) -> bool: ...

    def send_frames(self, parts: list[bytes]) -> None: ...


@dataclass
class LiveStream:
    """A request whose handler yielded its first part: `head` is its checked Reply, `parts` the rest."""

    head: Reply
    parts: PartIterator
    started: float  # perf_counter when the handler chain started
    max_part_bytes: int

    @property
    def request_id(self) -> int:
        return self.head.request_id

    def first_frame(self) -> StreamHead:
        head = self.head
        return StreamHead(
            head.request_id,
            head.status,
            head.body,
            head.content_type,
            head.reason,
            head.headers,
            head.model_us,
        )

    def step(self) -> StreamPart | StreamEnd:
        """Advance the handler by one part; StreamEnd (generator closed) when it finished or failed."""
        try:
            part = next(self.parts)
        except StopIteration:
            return self.end(EndHow.DONE)
        except Exception as exc:
            log.error(
                "request %d: the streaming handler failed after its first part:\n%s",
                self.request_id,
                "".join(traceback.format_exception(exc)),
            )
            return self.end(EndHow.FAILED, describe_failure(exc).message)
        if len(part) > self.max_part_bytes:
            message = (
                f"The handler yielded a part of {len(part)} bytes, over the {self.max_part_bytes}-byte limit."
            )
            log.error("request %d: %s", self.request_id, message)
            return self.end(EndHow.BROKEN, message)
        return StreamPart(self.request_id, part)

    def end(self, how: int, message: str = "") -> StreamEnd:
        """Close the handler's generator (its `finally` runs) and say how the stream ended."""
        try:
            self.parts.close()
        except Exception as exc:  # a finally that raises: the stream is over all the same
            log.error("request %d: closing the streaming handler raised: %r", self.request_id, exc)
        model_us = int((time.perf_counter() - self.started) * 1e6)
        return StreamEnd(self.request_id, how, message, model_us)


def open_stream(
    reply: Reply, response: HandlerResponse, started: float, max_part_bytes: int
) -> LiveStream | Reply:
    """The stream of a request whose handler yielded, once the worker has checked its first part and
    headers (`reply`); when the worker refused them, that refusal, and the generator is closed."""
    assert response.parts is not None
    if reply.flags or reply.body is not response.body:  # the worker answered an error in its place
        response.parts.close()
        return reply
    return LiveStream(reply, response.parts, started, max_part_bytes)


def produce(channel: _Channel, live: LiveStream, window: int) -> None:
    """Send the whole stream over `channel`; returns once StreamEnd is sent (or the server is gone)."""
    request_id = live.request_id
    channel.send_frames(encode_stream(live.first_frame()))
    credit = window - 1
    while True:
        while credit <= 0 or channel.ready():
            message = channel.receive()
            if message is None:  # the server closed the socket: nobody to send to
                live.end(EndHow.CANCELLED)
                return
            if isinstance(message, StreamCredit | StreamCancel) and message.request_id != request_id:
                continue  # late, for a stream that has ended before this one began
            if isinstance(message, StreamCredit):
                credit += message.parts
            elif isinstance(message, StreamCancel):
                log.info("request %d: the client went away; the streaming handler was stopped", request_id)
                channel.send_frames(encode_stream(live.end(EndHow.CANCELLED)))
                return
            else:
                live.end(EndHow.BROKEN)
                raise ProtocolError(f"a worker that is streaming cannot take message kind {message.kind}")
        step = live.step()
        channel.send_frames(encode_stream(step))
        if isinstance(step, StreamEnd):
            return
        credit -= 1


class ActorStreams:
    """A Ray actor's live streams, served one call at a time: each `pull` advances a generator by one
    part, `cancel` closes it (backends/ray.py's actor methods of the same names)."""

    def __init__(self) -> None:
        self._live: dict[int, LiveStream] = {}

    @staticmethod
    def opened(messages: list[Any]) -> list[Any]:
        """The messages of a `handle` call with a leading StreamOpen folded into its Invoke's `stream`."""
        if len(messages) == 2 and isinstance(messages[0], StreamOpen) and isinstance(messages[1], Invoke):
            return [dataclasses.replace(messages[1], stream=True)]
        return messages

    def answers(self, replies: list[Reply | LiveStream]) -> bytes:
        """The frames a `handle` call returns: Replies, or the StreamHead of a stream kept for `pull`."""
        out: list[bytes] = []
        for reply in replies:
            if isinstance(reply, LiveStream):
                self._live[reply.request_id] = reply
                out += encode_stream(reply.first_frame())
            else:
                out += encode(reply)
        return b"".join(out)

    def pull(self, request_id: int) -> bytes:
        live = self._live.get(request_id)
        step = live.step() if live is not None else StreamEnd(request_id, EndHow.BROKEN, "no such stream")
        if isinstance(step, StreamEnd):
            self._live.pop(request_id, None)
        return b"".join(encode_stream(step))

    def cancel(self, request_id: int) -> bytes:
        live = self._live.pop(request_id, None)
        if live is None:
            return b"".join(encode_stream(StreamEnd(request_id, EndHow.CANCELLED)))
        log.info("request %d: the client went away; the streaming handler was stopped", request_id)
        return b"".join(encode_stream(live.end(EndHow.CANCELLED)))
