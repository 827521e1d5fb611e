"""The workers of one production variant, and the bounded queue of requests waiting for them.

Every request submitted here ends in exactly one outcome, on every path (STYLE habit 13):
- it is answered by a worker (`Answered`, whatever status the handler chose);
- its worker dies under it (`Died`, with how the process ended);
- its deadline passes (`TimedOut`): the deadline runs from arrival, and a worker that runs one
  request longer than the timeout is killed (its replacement is the supervisor's job).

A worker takes one request at a time (or one batch when batching is on), so "least busy" means "idle"
and requests wait here, not behind a stuck worker. While workers are expected (the variant's instances
are starting, restarting after a server restart, or being replaced after a crash) a request waits here
for the first one to become ready, within its deadline and the queue bound; once none is expected any
more, waiting requests fail at once with 503 and the reason. When batching is on, a free worker takes up to
`batch_size` waiting requests, holding back at most `max_batch_delay_s` for a fuller batch.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections import deque
from dataclasses import dataclass

from moorage.backends.base import WorkerHandle, WorkerLost
from moorage.errors import ServiceUnavailable, ThrottlingException
from moorage.runtime.outcomes import Answered, Died, Outcome, TimedOut
from moorage.streaming.relay import PartStream
from moorage.worker.protocol import Invoke, Reply

__all__ = ["WorkerPool"]

_request_ids = itertools.count(1)
_NO_INSTANCE = "No instance of this variant is available to take the request."


def next_request_id() -> int:
    return next(_request_ids)


@dataclass(eq=False)
class _Slot:
    handle: WorkerHandle
    instance_id: str
    busy: bool = False
    lost: bool = False
    idle_since: float = 0.0


@dataclass(eq=False)
class _Waiting:
    message: Invoke
    future: asyncio.Future[Outcome]
    arrival: float
    deadline: float  # the client's: arrival + timeout
    timeout_s: float  # this request's invocation timeout (the pool's, or the caller's own)


@dataclass(eq=False)
class _Running:
    slot: _Slot
    batch: list[_Waiting]
    kill_at: float  # the worker's: dispatch + timeout
    timeout_s: float  # the longest timeout in the batch, which `kill_at` was counted from
    remaining: int
    timed_out: bool = False
    stream: PartStream | None = None  # a streamed answer: the worker stays busy until it is finished


class WorkerPool:
    def __init__(
        self,
        name: str,
        *,
        timeout_s: float,
        max_queue: int,
        batch_size: int = 1,
        max_batch_delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.max_queue = max_queue
        self.batch_size = max(1, batch_size)
        self.max_batch_delay_s = max_batch_delay_s
        self._loop = asyncio.get_running_loop()
        self._slots: list[_Slot] = []
        self._queue: deque[_Waiting] = deque()
        self._next = 0
        self._closed = False
        self._expecting = True  # workers are starting; requests may wait for them
        self._unavailable = _NO_INSTANCE  # the 503's message once none is expected any more
        self._batch_timer: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._idle_event = asyncio.Event()
        self._idle_event.set()
        self._retire_event: asyncio.Event | None = None
        self._running: set[_Running] = set()
        self._tick: asyncio.TimerHandle | None = None
        # Deadlines are enforced to within this; a twentieth of the timeout, at most 0.1 s.
        self._tick_interval = min(0.1, max(0.005, timeout_s / 20))

    # Membership (the supervisor calls these) ----------------------------------------------------
    def add(self, handle: WorkerHandle, instance_id: str) -> None:
        self._slots.append(_Slot(handle, instance_id, idle_since=self._loop.time()))
        self._pump()

    def remove(self, handle: WorkerHandle) -> None:
        """Forget a worker that is gone; whatever it was running has already failed through WorkerLost."""
        self._slots = [slot for slot in self._slots if slot.handle is not handle]
        self._fail_queue_if_hopeless()

    async def retire(self, handles: list[WorkerHandle], timeout: float) -> None:
        """Send no more requests to these workers; return once they are idle (or `timeout` passes)."""
        retiring = [slot for slot in self._slots if slot.handle in handles]
        for slot in retiring:
            slot.lost = True
        deadline = self._loop.time() + timeout
        while any(slot.busy for slot in retiring) and self._loop.time() < deadline:
            self._retire_event = asyncio.Event()
            try:
                await asyncio.wait_for(self._retire_event.wait(), deadline - self._loop.time())
            except TimeoutError:
                break
        for slot in retiring:
            self.remove(slot.handle)

    def expect_workers(self, expecting: bool, reason: str | None = None) -> None:
        """Whether workers may still appear; if not and none are left, waiting requests fail (503),
        with `reason` as the message when given (why the instances could not start)."""
        self._expecting = expecting
        if reason is not None:
            self._unavailable = reason
        self._fail_queue_if_hopeless()

    @property
    def ready_count(self) -> int:
        return sum(1 for slot in self._slots if not slot.lost)

    @property
    def handles(self) -> list[WorkerHandle]:
        return [slot.handle for slot in self._slots]

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # Traffic ------------------------------------------------------------------------------------
    def submit(self, message: Invoke, timeout_s: float | None = None) -> asyncio.Future[Outcome]:
        """Queue a request; its future always resolves. Raises at once when it cannot even wait.

        `timeout_s`: this request's own invocation timeout instead of the pool's (an async request's
        InvocationTimeoutSeconds, up to an hour).
        """
        if self._closed:
            raise ServiceUnavailable("The endpoint is shutting down this variant; retry the request.")
        if not self._slots and not self._expecting:
            raise ServiceUnavailable(self._unavailable)
        if len(self._queue) >= self.max_queue:
            raise ThrottlingException(
                f"Too many requests are waiting for this endpoint ({self.max_queue}); slow down and retry."
            )
        now = self._loop.time()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        waiting = _Waiting(message, self._loop.create_future(), now, now + timeout, timeout)
        self._queue.append(waiting)
        self._watch_deadlines()
        self._in_flight += 1
        self._idle_event.clear()
        waiting.future.add_done_callback(self._on_done)
        self._pump()
        return waiting.future

    def _on_done(self, future: asyncio.Future[Outcome]) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle_event.set()

    # Deadlines: one tick timer per pool while anything is in flight, instead of two timers a request.
    def _watch_deadlines(self) -> None:
        if self._tick is None:
            self._tick = self._loop.call_later(self._tick_interval, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self._tick = None
        now = self._loop.time()
        for waiting in self._queue:
            if now >= waiting.deadline and not waiting.future.done():
                waiting.future.set_result(TimedOut(waiting.timeout_s))
        for running in list(self._running):
            for waiting in running.batch:
                if now >= waiting.deadline and not waiting.future.done():
                    waiting.future.set_result(TimedOut(waiting.timeout_s))
            if now >= running.kill_at and not running.timed_out:
                self._kill_slow(running)
        if self._in_flight or self._running:  # a stream runs on after its future resolved
            self._watch_deadlines()

    def _idle_slot(self) -> _Slot | None:
        count = len(self._slots)
        for offset in range(count):
            slot = self._slots[(self._next + offset) % count]
            if not slot.busy and not slot.lost:
                self._next = (self._next + offset + 1) % count
                return slot
        return None

    def _pump(self) -> None:
        while self._queue:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # expired while waiting
            if not self._queue:
                return
            slot = self._idle_slot()
            if slot is None:
                return
            if self.batch_size > 1 and len(self._queue) < self.batch_size:
                due = self._queue[0].arrival + self.max_batch_delay_s
                if due > self._loop.time():
                    # Undo the round-robin step: the slot was not used.
                    self._next = (self._next - 1) % len(self._slots)
                    if self._batch_timer is None:
                        self._batch_timer = self._loop.call_at(due, self._batch_due)
                    return
            batch: list[_Waiting] = []
            while self._queue and len(batch) < self.batch_size:
                waiting = self._queue.popleft()
                if not waiting.future.done():
                    batch.append(waiting)
            if batch:
                self._dispatch(slot, batch)

    def _batch_due(self) -> None:
        self._batch_timer = None
        self._pump_now()

    def _pump_now(self) -> None:
        """Dispatch whatever waits, even a partial batch (the delay has run out)."""
        saved, self.max_batch_delay_s = self.max_batch_delay_s, 0.0
        try:
            self._pump()
        finally:
            self.max_batch_delay_s = saved

    def _dispatch(self, slot: _Slot, batch: list[_Waiting]) -> None:
        slot.busy = True
        timeout = max(waiting.timeout_s for waiting in batch)
        running = _Running(slot, batch, self._loop.time() + timeout, timeout, remaining=len(batch))
        self._running.add(running)
        futures = slot.handle.invoke([waiting.message for waiting in batch])
        for waiting, future in zip(batch, futures, strict=True):
            future.add_done_callback(functools.partial(self._on_reply, running, waiting))

    def _kill_slow(self, running: _Running) -> None:
        if running.stream is not None:  # the invocation timeout covers the whole stream
            running.stream.time_out(running.timeout_s)
        running.timed_out = True
        running.slot.lost = True
        running.slot.handle.kill(f"a request ran past the {running.timeout_s:g} s invocation timeout")

    def _on_reply(
        self, running: _Running, waiting: _Waiting, future: asyncio.Future[Reply | PartStream]
    ) -> None:
        outcome: Outcome
        exception = future.exception() if not future.cancelled() else WorkerLost("the request was cancelled")
        if exception is None:
            result = future.result()
            if isinstance(result, PartStream):
                running.stream = result
                outcome = Answered(result.head, result)
            else:
                outcome = Answered(result)
        elif running.timed_out:
            outcome = TimedOut(running.timeout_s)
        else:
            running.slot.lost = True
            detail = exception.detail if isinstance(exception, WorkerLost) else repr(exception)
            outcome = Died(detail)
        if not waiting.future.done():
            waiting.future.set_result(outcome)
        running.remaining -= 1
        if running.remaining == 0:
            if running.stream is not None and not running.stream.finished.done():
                running.stream.finished.add_done_callback(lambda _: self._stream_finished(running))
            else:
                self._free(running)

    def _stream_finished(self, running: _Running) -> None:
        if running.stream is not None and running.stream.worker_lost:
            running.slot.lost = True  # the supervisor replaces it
        self._free(running)

    def _free(self, running: _Running) -> None:
        """The worker answered everything it was given (a stream: up to its end): it takes the next."""
        self._running.discard(running)
        running.slot.busy = False
        running.slot.idle_since = self._loop.time()
        if self._retire_event is not None:
            self._retire_event.set()
        self._pump()

    def _fail_queue_if_hopeless(self) -> None:
        if self._slots or self._expecting:
            return
        error = ServiceUnavailable(self._unavailable)
        while self._queue:
            waiting = self._queue.popleft()
            if not waiting.future.done():
                waiting.future.set_exception(error)

    # Health pings (the supervisor uses these between requests) -----------------------------------
    def reserve_idle(self, idle_for: float) -> list[WorkerHandle]:
        """Mark workers idle for at least `idle_for` seconds as busy, so a ping is not overtaken."""
        now = self._loop.time()
        reserved = []
        for slot in self._slots:
            if not slot.busy and not slot.lost and now - slot.idle_since >= idle_for:
                slot.busy = True
                reserved.append(slot.handle)
        return reserved

    def release(self, handle: WorkerHandle) -> None:
        for slot in self._slots:
            if slot.handle is handle:
                slot.busy = False
                slot.idle_since = self._loop.time()
        self._pump()

    # Shutdown and hand-over ---------------------------------------------------------------------
    def stop_accepting(self) -> None:
        """Refuse new requests; those already accepted (running or queued) still get served."""
        self._closed = True

    def close(self) -> list[_Waiting]:
        """Take no new requests; return those still waiting so another pool can adopt them."""
        self._closed = True
        waiting = [w for w in self._queue if not w.future.done()]
        self._queue.clear()
        return waiting

    def abandon(self, message: str) -> None:
        """Take nothing more and expect no worker: what still waits for one fails with 503 `message`."""
        self._closed = True
        self._expecting = False
        self._unavailable = message
        error = ServiceUnavailable(message)
        while self._queue:
            waiting = self._queue.popleft()
            if not waiting.future.done():
                waiting.future.set_exception(error)

    def adopt(self, waiting: list[_Waiting]) -> None:
        """Take over requests queued on a pool that is being retired (blue/green hand-over)."""
        self._watch_deadlines()
        for item in waiting:
            self._queue.append(item)
            self._in_flight += 1
            self._idle_event.clear()
            item.future.add_done_callback(self._on_done)
        self._pump()

    async def drain(self, timeout: float) -> bool:
        """Until every request submitted here has its outcome (or `timeout`); True if all did."""
        try:
            await asyncio.wait_for(self._idle_event.wait(), timeout)
            return True
        except TimeoutError:
            return False
