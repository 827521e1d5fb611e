"""The server's side of a stream: parts in order, credit given back as the edge takes them, the in-stream
failures, and the idle timeout that ends a stalled worker."""

from __future__ import annotations

import asyncio

import pytest

from moorage.streaming.frames import EndHow, StreamEnd
from moorage.streaming.relay import PartStream, StreamFailure
from moorage.worker.protocol import Reply


class Worker:
    """What a handle does for the stream: records the credit, cancels and kills it is asked for."""

    def __init__(self) -> None:
        self.granted: list[int] = []
        self.cancels = 0
        self.killed: list[str] = []

    def stream(self, *, window: int = 4, idle_timeout_s: float = 60.0) -> PartStream:
        return PartStream(
            Reply(1, 200, b"p0", "text/plain"),
            window=window,
            idle_timeout_s=idle_timeout_s,
            grant=self.granted.append,
            cancel=self.cancel,
            kill=self.killed.append,
        )

    def cancel(self) -> None:
        self.cancels += 1


async def take(stream: PartStream, count: int) -> list[bytes]:
    return [await anext(stream) for _ in range(count)]


def test_parts_come_in_order_and_credit_goes_back_in_half_windows() -> None:
    async def scenario() -> None:
        worker = Worker()
        stream = worker.stream(window=4)
        for index in range(1, 4):
            stream.feed(f"p{index}".encode())
        assert await take(stream, 1) == [b"p0"]
        assert worker.granted == []
        assert await take(stream, 1) == [b"p1"]
        assert worker.granted == [2]
        assert await take(stream, 2) == [b"p2", b"p3"]
        assert worker.granted == [2, 2]
        stream.end(StreamEnd(1, EndHow.DONE, "", 99))
        assert [part async for part in stream] == []
        assert stream.finished.done() and stream.model_us == 99
        stream.cancel()
        assert worker.cancels == 0  # the worker had already ended the stream

    asyncio.run(scenario())


def test_a_handler_failure_comes_after_the_parts_before_it() -> None:
    async def scenario() -> None:
        stream = Worker().stream()
        stream.feed(b"p1")
        stream.end(StreamEnd(1, EndHow.FAILED, "ran out of ideas"))
        assert await take(stream, 2) == [b"p0", b"p1"]
        with pytest.raises(StreamFailure) as raised:
            await anext(stream)
        assert (raised.value.kind, raised.value.message, raised.value.error_code) == (
            "ModelStreamError",
            "ran out of ideas",
            "StreamBroken",
        )

    asyncio.run(scenario())


def test_a_client_that_leaves_cancels_once_and_a_stalled_worker_is_killed() -> None:
    async def scenario() -> None:
        worker = Worker()
        stream = worker.stream(idle_timeout_s=0.01)
        await take(stream, 1)
        with pytest.raises(StreamFailure) as raised:
            await anext(stream)  # no part comes: the idle timeout ends the stream
        assert raised.value.timed_out
        assert worker.killed == ["it sent no part within the 0.01 s stream idle timeout"]
        stream.lost("the worker process was killed by signal SIGKILL")
        assert stream.finished.done() and stream.worker_lost
        stream.cancel()
        stream.cancel()
        assert worker.cancels == 0

        leaving = Worker()
        open_stream = leaving.stream()
        open_stream.cancel()
        open_stream.cancel()
        assert leaving.cancels == 1

    asyncio.run(scenario())
