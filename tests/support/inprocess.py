"""A real in-process implementation of backends.base.WorkerHandle, for testing the runtime alone.

Requests are answered by a coroutine chosen by the body: `echo` echoes, `sleep:<s>` answers after
<s> seconds, `die` makes the "worker" die with everything it holds. Like httpx's MockTransport, it
implements the interface honestly instead of patching the code under test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from moorage.backends.base import ReadyInfo, WorkerLost
from moorage.streaming.relay import PartStream
from moorage.worker.protocol import Invoke, Reply


class InProcessWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[list[int]] = []  # request ids of each invoke() call, in order
        self.killed: str | None = None
        self.answer_pings = True
        self._gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[asyncio.Future[Reply | PartStream]] = []

    @property
    def pid(self) -> int | None:
        return None

    async def wait_ready(self, timeout: float) -> ReadyInfo:
        return ReadyInfo(pid=None, load_seconds=0.0, device="cpu")

    def invoke(self, batch: Sequence[Invoke]) -> list[asyncio.Future[Reply | PartStream]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Reply | PartStream]] = [loop.create_future() for _ in batch]
        self.batches.append([message.request_id for message in batch])
        for message, future in zip(batch, futures, strict=True):
            self._pending.append(future)
            task = loop.create_task(self._answer(message, future))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return futures

    async def _answer(self, message: Invoke, future: asyncio.Future[Reply | PartStream]) -> None:
        body = message.body
        if body.startswith(b"sleep:"):
            await asyncio.sleep(float(body.split(b":", 1)[1]))
        if body == b"die":
            self.die("the worker process was killed by signal SIGKILL")
            return
        if not future.done():
            future.set_result(Reply(message.request_id, 200, body, "application/octet-stream"))

    def die(self, detail: str) -> None:
        for future in self._pending:
            if not future.done():
                future.set_exception(WorkerLost(detail))
        if not self._gone.done():
            self._gone.set_result(detail)

    async def ping(self, timeout: float) -> None:
        if not self.answer_pings:
            await asyncio.sleep(timeout)
            raise TimeoutError

    def kill(self, reason: str) -> None:
        self.killed = reason
        self.die(f"the worker process was killed by signal SIGKILL ({reason})")

    async def stop(self, grace_s: float) -> None:
        self.die("the worker process exited with status 0")

    async def wait_gone(self) -> str:
        return await asyncio.shield(self._gone)
