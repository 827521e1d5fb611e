"""Runs the async queue: each accepted request goes through the same router and worker pools as a
real-time call, and ends in exactly one published result object (its output or its failure).

Invariants:
- at most `MaxConcurrentInvocationsPerInstance` × the variant's ready instances run at once per
  endpoint (without it: one per ready worker); requests wait here, not in the pools;
- a request is run at least once: its row says `running` before the model sees it, and a restart
  runs `queued` and `running` rows again; one that had started before first checks whether its
  output or failure object was already published and, if so, is not run again, so each request gets
  exactly one result object;
- the result object is written to a staged file and published whole (s3io.py), then the row
  moves to `notify` and the SNS notification is sent; a publish that fails leaves the row queued to run
  again later (ResponseUploadFailures);
- a request that waited longer than its RequestTTLSeconds is not run: it is counted (ExpiredRequests)
  and gets a failure object saying so, so a client waiting on its two locations is not left hanging.

What is held in memory: the queue's metadata (no bodies), and for each running request its whole input
and its whole answer (the worker protocol moves bodies as bytes; streaming 1 GB inputs is left for
later: inputs above MOORAGE_ASYNC_MAX_INPUT_BYTES fail with a message saying so). Readiness of instances
has no event to wait on, so while requests wait for capacity the queue looks again every
`recheck_s`; otherwise it sleeps until a request arrives, one finishes or the next TTL runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from moorage.asyncinf.config import split_s3_url
from moorage.asyncinf.inputs import InputError, InputReader
from moorage.asyncinf.metrics import AsyncMetrics, Backlog
from moorage.asyncinf.notify import Notifier, message
from moorage.asyncinf.store import AsyncRequest, QueueStore
from moorage.errors import MoorageError
from moorage.runtime.outcomes import Answered, Died, Outcome, TimedOut
from moorage.runtime.pool import next_request_id
from moorage.runtime.router import RoutedVariant, Router
from moorage.s3io import Storage, StorageError
from moorage.worker.protocol import Invoke

__all__ = ["Dispatcher"]

log = logging.getLogger("moorage.asyncinf")
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Result:
    succeeded: bool
    body: bytes
    content_type: str | None
    reason: str | None = None  # on failure: what went wrong, for the failure object and the log


class Dispatcher:
    def __init__(
        self,
        *,
        store: QueueStore,
        executor: Executor,
        router: Router,
        instances: Callable[[str, str], int],
        storage: Storage,
        inputs: InputReader,
        notifier: Notifier,
        metrics: AsyncMetrics,
        region: str,
        max_input_bytes: int,
        recheck_s: float,
    ) -> None:
        self._store = store
        self._executor = executor
        self._router = router
        self._instances = instances  # (endpoint, variant) → ready instances
        self._storage = storage
        self._inputs = inputs
        self._notifier = notifier
        self._metrics = metrics
        self._region = region
        self._max_input = max_input_bytes
        self._recheck_s = recheck_s
        self._backlog: dict[str, deque[AsyncRequest]] = defaultdict(deque)
        self._running: dict[str, dict[str, AsyncRequest]] = defaultdict(dict)
        self._hold_until: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        metrics.backlogs = self.backlogs

    # Life cycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Take up every request a previous run left (queued, running, or owing a notification)."""
        for request in await self._db(self._store.unfinished):
            if request.state == "notify":
                self._spawn(self._renotify(request))
            else:
                self._backlog[request.endpoint].append(request)
        self._loop_task = asyncio.get_running_loop().create_task(self._dispatch_loop())

    async def close(self, grace_s: float) -> None:
        """Stop taking requests from the queue; let those running finish within `grace_s` (those cut
        short stay `running` in the store and run again after the next start)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def submit(self, request: AsyncRequest, body: bytes | None) -> AsyncRequest:
        """Commit the request (before the 202 goes out), then queue it."""
        stored = await self._db(self._store.add, request, body)
        self._backlog[stored.endpoint].append(stored)
        self._wake.set()
        return stored

    def backlogs(self) -> dict[str, Backlog]:
        now = time.time()
        found: dict[str, Backlog] = {}
        for endpoint in set(self._backlog) | set(self._running):
            waiting = list(self._backlog.get(endpoint, ())) + list(self._running.get(endpoint, {}).values())
            if not waiting and endpoint not in self._running:
                continue
            oldest = min((request.received for request in waiting), default=now)
            found[endpoint] = Backlog(len(waiting), max(0.0, now - oldest), self._ready_instances(endpoint))
        return found

    # Dispatching -----------------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while True:
            self._wake.clear()
            delay = self._pass()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _pass(self) -> float | None:
        """Start what capacity allows, expire what waited too long; how long until the next look."""
        now = time.time()
        delays: list[float] = []
        for endpoint, backlog in self._backlog.items():
            for request in [r for r in backlog if now >= r.received + r.ttl_s]:
                backlog.remove(request)
                self._spawn(self._expire(request))
            if not backlog:
                continue
            delays.append(min(r.received + r.ttl_s for r in backlog) - now)
            if self._hold_until.get(endpoint, 0.0) > now:
                delays.append(self._hold_until[endpoint] - now)
                continue
            capacity = self._capacity(endpoint, backlog[0])
            running = self._running[endpoint]
            while backlog and len(running) < capacity:
                request = backlog.popleft()
                running[request.id] = request
                self._spawn(self._run(request))
            if backlog and capacity == 0:
                delays.append(self._recheck_s)
        return max(0.0, min(delays)) if delays else None

    def _ready_instances(self, endpoint: str) -> int:
        route = self._router.route(endpoint)
        if route is None:
            return 0
        return sum(
            self._instances(endpoint, name)
            for name, variant in route.variants.items()
            if variant.pool.ready_count
        )

    def _capacity(self, endpoint: str, request: AsyncRequest) -> int:
        route = self._router.route(endpoint)
        if route is None:
            return 0
        per_instance = request.config.max_concurrency
        total = 0
        for name, variant in route.variants.items():
            workers = variant.pool.ready_count
            if workers:
                total += per_instance * max(1, self._instances(endpoint, name)) if per_instance else workers
        return total

    def _pick(self, endpoint: str) -> RoutedVariant | None:
        route = self._router.route(endpoint)
        if route is None:
            return None
        try:
            variant = route.pick(None, "")
        except MoorageError:
            return None
        if variant.pool.ready_count:
            return variant
        ready = [v for v in route.variants.values() if v.pool.ready_count]
        return ready[0] if ready else None

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report)

    async def _db(self, call: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    # One request -----------------------------------------------------------------------------------
    async def _run(self, request: AsyncRequest) -> None:
        endpoint = request.endpoint
        try:
            variant = self._pick(endpoint)
            if variant is None:
                self._put_back(request, hold=True)
                return
            started_before = await self._db(self._store.start, request.id)
            if started_before and await asyncio.to_thread(self._already_published, request):
                log.info(
                    "inference %s (endpoint %s): its result was published before a restart",
                    request.inference_id,
                    endpoint,
                )
                await self._db(self._store.finish, request.id)
                return
            started = time.time()
            self._metrics.observe(endpoint, "TimeInBacklog", started - request.received)
            result = await self._invoke(request, variant)
            if result is None:  # the pool could not take it now: it waits in the queue again
                await self._db(self._store.requeue, request.id)
                self._put_back(request, hold=True)
                return
            try:
                await asyncio.to_thread(self._publish, request, result)
            except StorageError as exc:
                log.error(
                    "inference %s (endpoint %s): %s; it will run again", request.inference_id, endpoint, exc
                )
                self._metrics.count(endpoint, "ResponseUploadFailures")
                await self._db(self._store.requeue, request.id)
                self._put_back(request, hold=True)
                return
            finished = time.time()
            self._metrics.observe(endpoint, "TotalProcessingTime", finished - request.received)
            self._metrics.count(
                endpoint, "InvocationsProcesssed" if result.succeeded else "InvocationFailures"
            )
            if not result.succeeded:
                log.warning(
                    "inference %s (endpoint %s) failed: %s", request.inference_id, endpoint, result.reason
                )
            await self._notify(request, result, finished)
        except Exception:  # a bug or the disk: keep the request, say why, and try again later
            log.exception(
                "inference %s (endpoint %s): unexpected error; it will be retried",
                request.inference_id,
                endpoint,
            )
            self._put_back(request, hold=True)
        finally:
            self._running[endpoint].pop(request.id, None)
            self._wake.set()

    def _put_back(self, request: AsyncRequest, *, hold: bool) -> None:
        self._backlog[request.endpoint].appendleft(request)
        if hold:
            self._hold_until[request.endpoint] = time.time() + self._recheck_s

    async def _invoke(self, request: AsyncRequest, variant: RoutedVariant) -> _Result | None:
        try:
            body, content_type = await self._input(request)
        except InputError as exc:
            self._metrics.count(request.endpoint, "RequestDownloadFailures")
            return _failure(str(exc))
        headers = [("X-Amzn-SageMaker-Inference-Id", request.inference_id)]
        if request.custom_attributes is not None:
            headers.append(("X-Amzn-SageMaker-Custom-Attributes", request.custom_attributes))
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        message_ = Invoke(
            request_id=next_request_id(),
            body=body,
            content_type=content_type,
            accept=request.accept,
            headers=tuple(headers),
        )
        # The request's own InvocationTimeoutSeconds (up to 3600 s) bounds its wait and its run.
        try:
            future = variant.pool.submit(message_, timeout_s=request.timeout_s)
        except MoorageError:
            return None
        return _result(await future)

    async def _input(self, request: AsyncRequest) -> tuple[bytes, str | None]:
        """The input and the Content-Type the model is given: the request's, else the input object's."""
        if request.input_location is None:
            return await self._db(self._store.body, request.id), request.content_type
        bucket, key = split_s3_url(request.input_location)
        body, content_type = await asyncio.to_thread(self._inputs.read, bucket, key, self._max_input)
        return body, request.content_type or content_type

    def _publish(self, request: AsyncRequest, result: _Result) -> None:
        location = request.output_location if result.succeeded else request.failure_location
        bucket, key = split_s3_url(location)
        output = self._storage.open_output(bucket, key, content_type=result.content_type, kms_key_id=None)
        try:
            output.write(result.body)
        except BaseException:
            output.abort()
            raise
        output.commit()

    def _already_published(self, request: AsyncRequest) -> bool:
        for location in (request.output_location, request.failure_location):
            chunks = iter(self._storage.read(*split_s3_url(location)))
            try:
                next(chunks, None)
                return True
            except StorageError:
                continue
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        return False

    async def _expire(self, request: AsyncRequest) -> None:
        self._metrics.count(request.endpoint, "ExpiredRequests")
        reason = (
            f"The request expired: it waited more than its RequestTTLSeconds ({request.ttl_s:g} s) in the "
            "queue and was not run."
        )
        log.warning("inference %s (endpoint %s): %s", request.inference_id, request.endpoint, reason)
        result = _failure(reason, code="ExpiredRequest")
        try:
            await asyncio.to_thread(self._publish, request, result)
        except StorageError as exc:
            log.error(
                "inference %s: could not write its expiry failure object: %s", request.inference_id, exc
            )
            self._metrics.count(request.endpoint, "ResponseUploadFailures")
            return  # the row stays; the next start expires it again
        await self._notify(request, result, time.time())

    # Notifications ---------------------------------------------------------------------------------
    async def _notify(self, request: AsyncRequest, result: _Result, finished: float) -> None:
        config = request.config
        topic = config.success_topic if result.succeeded else config.error_topic
        if topic is None:
            await self._db(self._store.finish, request.id)
            return
        wanted = "SUCCESS_NOTIFICATION_TOPIC" if result.succeeded else "ERROR_NOTIFICATION_TOPIC"
        body = message(
            region=self._region,
            endpoint=request.endpoint,
            inference_id=request.inference_id,
            received=request.received,
            finished=finished,
            input_location=request.input_location,
            request_content_type=request.content_type,
            succeeded=result.succeeded,
            location=request.output_location if result.succeeded else request.failure_location,
            response_content_type=result.content_type,
            failure_reason=result.reason,
            response=result.body if wanted in config.include_response_in else None,
        )
        outcome = {"topic": topic, "message": body}
        await self._db(self._store.published, request.id, outcome)
        await self._renotify(AsyncRequest(**{**request.__dict__, "state": "notify", "outcome": outcome}))

    async def _renotify(self, request: AsyncRequest) -> None:
        assert request.outcome is not None
        topic, body = request.outcome["topic"], request.outcome["message"]
        if not await asyncio.to_thread(self._notifier.publish, topic, body, request.inference_id):
            self._metrics.count(request.endpoint, "NotificationFailures")
        await self._db(self._store.finish, request.id)


def _report(task: asyncio.Task[None]) -> None:
    """An expiry or a notification that failed unexpectedly: its row stays and the next start retries."""
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "async queue task failed; its request stays queued until the next start",
            exc_info=task.exception(),
        )


def _failure(reason: str, code: str = "ModelError") -> _Result:
    """A failure object: JSON, so the SageMaker SDK's default deserializers can read it back into the
    AsyncInferenceModelError it raises."""
    body = json.dumps({"ErrorCode": code, "Message": reason}).encode()
    return _Result(False, body, "application/json", reason)


def _result(outcome: Outcome) -> _Result:
    if isinstance(outcome, Answered) and outcome.reply.status < 300 and not outcome.reply.too_large:
        return _Result(True, outcome.reply.body, outcome.reply.content_type)
    if isinstance(outcome, TimedOut):
        return _failure(
            f"The invocation timed out: the model did not answer within InvocationTimeoutSeconds "
            f"({outcome.timeout_s:g} s); the worker running it was replaced."
        )
    if isinstance(outcome, Died):
        return _failure(f"Received server error (500) from primary: the worker died ({outcome.detail}).")
    reply = outcome.reply
    if reply.too_large:
        return _failure("Received server error (500) from primary: the answer was too large to relay.")
    side = "client" if 400 <= reply.status < 500 else "server"
    text = reply.body.decode("utf-8", "replace")
    return _failure(f'Received {side} error ({reply.status}) from primary with message "{text}".')
