"""Every request submitted to a pool ends in exactly one outcome, on every path."""

from __future__ import annotations

import asyncio
import time

import pytest

from moorage.errors import ServiceUnavailable, ThrottlingException
from moorage.runtime.outcomes import Answered, Died, TimedOut
from moorage.runtime.pool import WorkerPool, next_request_id
from moorage.worker.protocol import Invoke
from support.inprocess import InProcessWorker


def message(body: bytes) -> Invoke:
    return Invoke(request_id=next_request_id(), body=body)


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_an_answered_request_carries_the_reply() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10)
        pool.add(InProcessWorker("w0"), "i-1")
        outcome = await pool.submit(message(b"echo"))
        assert isinstance(outcome, Answered)
        assert outcome.reply.status == 200 and outcome.reply.body == b"echo"

    run(scenario())


def test_requests_wait_for_a_free_worker_and_all_get_answers() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10)
        worker = InProcessWorker("w0")
        pool.add(worker, "i-1")
        outcomes = await asyncio.gather(*(pool.submit(message(b"sleep:0.01")) for _ in range(5)))
        assert all(isinstance(o, Answered) for o in outcomes)
        assert [len(batch) for batch in worker.batches] == [1, 1, 1, 1, 1]  # one at a time

    run(scenario())


def test_a_full_queue_refuses_at_once_with_throttling() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=2)
        pool.add(InProcessWorker("w0"), "i-1")
        running = [pool.submit(message(b"sleep:0.2")) for _ in range(3)]  # one runs, two wait
        with pytest.raises(ThrottlingException):
            pool.submit(message(b"echo"))
        await asyncio.gather(*running)

    run(scenario())


def test_a_request_past_the_timeout_times_out_and_its_worker_is_killed() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=0.1, max_queue=10)
        worker = InProcessWorker("w0")
        pool.add(worker, "i-1")
        started = time.monotonic()
        outcome = await pool.submit(message(b"sleep:5"))
        assert isinstance(outcome, TimedOut) and outcome.timeout_s == 0.1
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.05)
        assert worker.killed is not None and "invocation timeout" in worker.killed

    run(scenario())


def test_a_request_can_bring_its_own_timeout_and_the_pools_stays() -> None:
    """An async request's InvocationTimeoutSeconds is its own; other requests keep the pool's timeout."""

    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10)
        worker = InProcessWorker("w0")
        pool.add(worker, "i-1")
        outcome = await pool.submit(message(b"sleep:5"), timeout_s=0.1)
        assert isinstance(outcome, TimedOut) and outcome.timeout_s == 0.1
        await asyncio.sleep(0.05)
        assert worker.killed is not None and "the 0.1 s invocation timeout" in worker.killed
        assert pool.timeout_s == 5
        pool.remove(worker)
        pool.add(InProcessWorker("w1"), "i-1")
        assert isinstance(await pool.submit(message(b"echo")), Answered)

    run(scenario())


def test_a_dying_worker_fails_its_request_with_how_it_died_and_others_carry_on() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10)
        first, second = InProcessWorker("w0"), InProcessWorker("w1")
        pool.add(first, "i-1")
        pool.add(second, "i-1")
        dying = pool.submit(message(b"die"))
        outcome = await dying
        assert isinstance(outcome, Died) and "SIGKILL" in outcome.detail
        pool.remove(first)
        follow_up = await pool.submit(message(b"echo"))
        assert isinstance(follow_up, Answered)

    run(scenario())


def test_no_workers_and_none_coming_is_service_unavailable() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10)
        waiting = pool.submit(message(b"echo"))  # workers are still expected: it waits
        pool.expect_workers(False)
        with pytest.raises(ServiceUnavailable):
            await waiting
        with pytest.raises(ServiceUnavailable):
            pool.submit(message(b"echo"))

    run(scenario())


def test_batches_fill_up_or_leave_when_the_delay_runs_out() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10, batch_size=4, max_batch_delay_s=0.05)
        worker = InProcessWorker("w0")
        pool.add(worker, "i-1")
        started = time.monotonic()
        partial = await asyncio.gather(*(pool.submit(message(b"echo")) for _ in range(3)))
        waited = time.monotonic() - started
        assert all(isinstance(o, Answered) for o in partial)
        assert [len(batch) for batch in worker.batches] == [3]
        assert 0.04 <= waited < 0.5  # held for the delay, not much longer
        full = await asyncio.gather(*(pool.submit(message(b"echo")) for _ in range(4)))
        assert all(isinstance(o, Answered) for o in full)
        assert [len(batch) for batch in worker.batches] == [3, 4]

    run(scenario())


def test_drain_waits_for_requests_in_flight() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10)
        pool.add(InProcessWorker("w0"), "i-1")
        in_flight = pool.submit(message(b"sleep:0.1"))
        assert not await pool.drain(0.01)
        assert await pool.drain(2.0)
        assert in_flight.done() and isinstance(in_flight.result(), Answered)

    run(scenario())


def test_retiring_a_busy_worker_waits_for_its_request() -> None:
    async def scenario() -> None:
        pool = WorkerPool("t", timeout_s=5, max_queue=10)
        worker = InProcessWorker("w0")
        pool.add(worker, "i-1")
        in_flight = pool.submit(message(b"sleep:0.1"))
        await asyncio.sleep(0)
        await pool.retire([worker], timeout=2.0)
        assert in_flight.done() and isinstance(in_flight.result(), Answered)
        assert pool.ready_count == 0

    run(scenario())


def test_queued_requests_move_to_a_new_pool_on_hand_over() -> None:
    async def scenario() -> None:
        old = WorkerPool("old", timeout_s=5, max_queue=10)
        old.add(InProcessWorker("w0"), "i-1")
        running = old.submit(message(b"sleep:0.1"))
        queued = old.submit(message(b"echo"))
        new = WorkerPool("new", timeout_s=5, max_queue=10)
        new_worker = InProcessWorker("w1")
        new.add(new_worker, "i-2")
        new.adopt(old.close())
        assert isinstance(await queued, Answered)
        assert isinstance(await running, Answered)
        assert len(new_worker.batches) == 1

    run(scenario())
