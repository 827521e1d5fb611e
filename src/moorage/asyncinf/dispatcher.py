"""Runs the async queue: each accepted request goes through the same router and worker pools as a
real-time call, and ends in exactly one published result object (its output or its failure).

Invariants:
- at most `MaxConcurrentInvocationsPerInstance` × the variant's ready instances run at once per
  endpoint (without it: one per ready worker); requests wait here, not in the pools. A request whose
  invocation returned frees its slot while its result object is written (a disk sync in the embedded
  store), so the next one runs meanwhile; at most MOORAGE_ASYNC_MAX_PUBLISHING per endpoint wait to be
  published (each holds its answer, at most MOORAGE_LARGE_BODY_BYTES, in memory), written by as many
  threads of the queue's own;
- a request is run at least once: its row is on disk before its 202, and a restart runs `queued` and
  `running` rows again; every request taken up after a restart (or started before in this run) first
  checks whether its output or failure object was already published and, if so, is not run again (nor
  expired), so each request gets exactly one result object. That check is why the `running` mark, the
  deletion of a finished row and a requeue need not be on disk before the next step: they ride along
  with the next group commit (store.py), and only the insert (before the 202) and the owed
  notification (before the result object is published) are waited on;
- a notification is sent at least once: when the result has a topic, the notification it owes (with
  the response IncludeInferenceResponseIn asks for, and the object's location) is committed on the row
  before the result object is published, so a restart that finds the object at that location sends it
  (again, if the crash came after the send but before the row's deletion), and one that does not runs
  the request again;
- the result object is written to a staged file and published whole (s3io.py), then the row
  moves to `notify` (riding along) and the SNS notification is sent; a publish that fails leaves the
  row queued to run again later (ResponseUploadFailures);
- a request that waited longer than its RequestTTLSeconds is not run: it is counted (ExpiredRequests)
  and gets a failure object saying so, so a client waiting on its two locations is not left hanging.

What is held in memory: the queue's metadata (no bodies), and for each running request an input or an
answer only up to MOORAGE_LARGE_BODY_BYTES; larger ones (up to MOORAGE_ASYNC_MAX_INPUT_BYTES, 1 GiB)
pass between S3 and the worker as files (bodies.py), read and written in chunks. Readiness of instances
has no event to wait on, so while requests wait for capacity the queue looks again every
`recheck_s`; otherwise it sleeps until a request arrives, one finishes or the next TTL runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from moorage.asyncinf.bodies import BodyFiles, ReplyFileError
from moorage.asyncinf.commits import log_failure
from moorage.asyncinf.config import split_s3_url
from moorage.asyncinf.inputs import InputError, InputReader
from moorage.asyncinf.metrics import AsyncMetrics, Backlog
from moorage.asyncinf.notify import INCLUDE_LIMIT, Notifier, message
from moorage.asyncinf.store import AsyncRequest, QueueStore
from moorage.errors import MoorageError
from moorage.runtime.outcomes import Answered, Died, Outcome, TimedOut
from moorage.runtime.pool import next_request_id
from moorage.runtime.router import RoutedVariant, Router
from moorage.s3io import Storage, StorageError
from moorage.worker.protocol import Invoke, Reply

__all__ = ["Dispatcher"]

log = logging.getLogger("moorage.asyncinf")
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Result:
    succeeded: bool
    body: bytes
    content_type: str | None
    reason: str | None = None  # on failure: what went wrong, for the failure object and the log
    body_file: Path | None = None  # a large answer: in this file (bodies.py), not in `body`


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
        bodies: BodyFiles,
        large_body_bytes: int,
        max_publishing: int,
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
        self._bodies = bodies
        self._large = large_body_bytes  # bodies longer than this cross to and from the worker as files
        self._max_publishing = max_publishing
        # Threads of their own: writing results (disk syncs) never holds up the default executor's other
        # users (the S3 API among them).
        self._publisher = ThreadPoolExecutor(max_publishing, thread_name_prefix="async-publish")
        self._backlog: dict[str, deque[AsyncRequest]] = defaultdict(deque)
        self._running: dict[str, dict[str, AsyncRequest]] = defaultdict(dict)  # invoking or publishing
        self._invoking: dict[str, int] = defaultdict(int)  # of those, how many before their answer
        self._hold_until: dict[str, float] = {}
        self._started: set[str] = set()  # may have a published result: taken up after a restart, or run
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
            elif request.outcome is not None:  # died around its publish: notify now if it was published
                self._spawn(self._owed(request))
            else:
                self._started.add(request.id)  # its `running` mark may not have reached the disk
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
        self._publisher.shutdown(wait=False, cancel_futures=True)

    async def submit(self, request: AsyncRequest, body: bytes | None) -> AsyncRequest:
        """Commit the request (before the 202 goes out), then queue it: a committed row is queued even
        if the caller went away meanwhile (one cancelled before its commit began is not written)."""
        loop = asyncio.get_running_loop()
        committing = self._store.add(request, body)
        committing.add_done_callback(lambda done: loop.call_soon_threadsafe(self._committed, done))
        return await asyncio.wrap_future(committing)

    def _committed(self, done: Future[AsyncRequest]) -> None:
        if not done.cancelled() and done.exception() is None:
            stored = done.result()
            self._backlog[stored.endpoint].append(stored)
            self._wake.set()

    def backlogs(self) -> dict[str, Backlog]:
        now = time.time()
        found: dict[str, Backlog] = {}
        for endpoint in set(self._backlog) | set(self._running):
            waiting = list(self._backlog.get(endpoint, ())) + list(self._running.get(endpoint, {}).values())
            if not waiting and endpoint not in self._running:
                continue
            oldest = min((request.received for request in waiting), default=now)
            found[endpoint] = Backlog(
                len(waiting),
                max(0.0, now - oldest),
                self._ready_instances(endpoint),
                len(self._running.get(endpoint, {})),
            )
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
            limit = capacity + self._max_publishing
            while backlog and self._invoking[endpoint] < capacity and len(running) < limit:
                request = backlog.popleft()
                running[request.id] = request
                self._invoking[endpoint] += 1
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
        invoking = True
        try:
            variant = self._pick(endpoint)
            if variant is None:
                self._put_back(request, hold=True)
                return
            self._store.start(request.id).add_done_callback(log_failure("a running mark"))
            if await self._published_before(request):
                return
            started = time.time()
            self._metrics.observe(endpoint, "TimeInBacklog", started - request.received)
            result = await self._invoke(request, variant)
            invoking = False
            self._invoked(endpoint)
            if result is None:  # the pool could not take it now: it waits in the queue again
                self._store.requeue(request.id).add_done_callback(log_failure("a requeue"))
                self._put_back(request, hold=True)
                return
            request = await self._owe(request, result)
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._publisher, self._publish, request, result
                )
            except StorageError as exc:
                log.error(
                    "inference %s (endpoint %s): %s; it will run again", request.inference_id, endpoint, exc
                )
                self._metrics.count(endpoint, "ResponseUploadFailures")
                self._store.requeue(request.id).add_done_callback(log_failure("a requeue"))
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
            await self._notify(request)
        except Exception:  # a bug or the disk: keep the request, say why, and try again later
            log.exception(
                "inference %s (endpoint %s): unexpected error; it will be retried",
                request.inference_id,
                endpoint,
            )
            self._put_back(request, hold=True)
        finally:
            if invoking:
                self._invoked(endpoint)
            self._bodies.discard(request.id)
            self._running[endpoint].pop(request.id, None)
            self._wake.set()

    def _invoked(self, endpoint: str) -> None:
        """The invocation slot is free (the answer, if any, is being published): start the next one."""
        self._invoking[endpoint] -= 1
        self._wake.set()

    def _put_back(self, request: AsyncRequest, *, hold: bool) -> None:
        self._backlog[request.endpoint].appendleft(request)
        if hold:
            self._hold_until[request.endpoint] = time.time() + self._recheck_s

    async def _invoke(self, request: AsyncRequest, variant: RoutedVariant) -> _Result | None:
        staged = self._bodies.input_path(request.id)
        try:
            body, content_type = await self._input(request, staged)
        except InputError as exc:
            self._metrics.count(request.endpoint, "RequestDownloadFailures")
            return _failure(str(exc))
        headers = [("X-Amzn-SageMaker-Inference-Id", request.inference_id)]
        if request.custom_attributes is not None:
            headers.append(("X-Amzn-SageMaker-Custom-Attributes", request.custom_attributes))
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        reply_file = self._bodies.reply_path(request.id)
        message_ = Invoke(
            request_id=next_request_id(),
            body=b"" if body is None else body,
            content_type=content_type,
            accept=request.accept,
            headers=tuple(headers),
            body_file=str(staged) if body is None else None,
            reply_file=str(reply_file),
            reply_over=self._large,
        )
        # The request's own InvocationTimeoutSeconds (up to 3600 s) bounds its wait and its run.
        try:
            future = variant.pool.submit(message_, timeout_s=request.timeout_s)
        except MoorageError:
            return None
        outcome = await future
        if isinstance(outcome, Answered) and outcome.reply.in_file:
            return await asyncio.to_thread(self._from_file, outcome.reply, reply_file)
        return _result(outcome)

    async def _input(self, request: AsyncRequest, staged: Path) -> tuple[bytes | None, str | None]:
        """The input (None: it is in `staged`) and the Content-Type the model is given: the request's,
        else the input object's."""
        if request.input_location is None:
            return await self._db(self._store.body, request.id), request.content_type
        bucket, key = split_s3_url(request.input_location)
        body, content_type = await asyncio.to_thread(
            self._inputs.fetch, bucket, key, self._max_input, self._large, staged
        )
        return body, request.content_type or content_type

    def _from_file(self, reply: Reply, path: Path) -> _Result:
        """The result of an answer the worker wrote to a file: checked now, published in chunks later."""
        try:
            if reply.status < 300:
                self._bodies.head(path, 0)  # a plain file of its own, or ReplyFileError
                return _Result(True, b"", reply.content_type, body_file=path)
            text = self._bodies.head(path, 64 * 1024)  # an error answer: its start is the message
        except ReplyFileError as exc:
            return _failure(f"Received server error (500) from primary: {exc}.")
        return _result(Answered(dataclasses.replace(reply, body=text, flags=0)))

    def _publish(self, request: AsyncRequest, result: _Result) -> None:
        location = request.output_location if result.succeeded else request.failure_location
        bucket, key = split_s3_url(location)
        output = self._storage.open_output(bucket, key, content_type=result.content_type, kms_key_id=None)
        try:
            if result.body_file is None:
                output.write(result.body)
            else:
                for chunk in self._bodies.chunks(result.body_file):
                    output.write(chunk)
        except BaseException:
            output.abort()
            raise
        output.commit()

    def _published_at(self, request: AsyncRequest) -> str | None:
        """Where this request's result object was published (its output or failure location), if it was."""
        for location in (request.output_location, request.failure_location):
            chunks = iter(self._storage.read(*split_s3_url(location)))
            try:
                next(chunks, None)
                return location
            except StorageError:
                continue
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        return None

    async def _published_before(self, request: AsyncRequest) -> bool:
        """Whether a run before a restart (or before a retry) already published this request's result
        object: then it is finished without running (or expiring) again."""
        if request.id not in self._started:
            self._started.add(request.id)
            return False
        location = await asyncio.to_thread(self._published_at, request)
        if location is None:
            return False
        log.info(
            "inference %s (endpoint %s): its result was published before",
            request.inference_id,
            request.endpoint,
        )
        await self._notify(request, location)
        return True

    async def _owed(self, request: AsyncRequest) -> None:
        """A row left with an owed notification (`outcome`) but not yet `notify`: the server died around
        its publish. Its notification is sent now if the object is there (the endpoint need not be back);
        otherwise it waits in the queue to run again."""
        self._started.add(request.id)
        try:
            if await self._published_before(request):
                return
        except Exception:  # S3 could not be read: the queue looks again before it runs the request
            log.exception(
                "inference %s (endpoint %s): could not look for its result object; it waits in the queue",
                request.inference_id,
                request.endpoint,
            )
        self._put_back(request, hold=False)
        self._wake.set()

    def _finish(self, request: AsyncRequest) -> None:
        """Delete the row with the next commit: if that is lost, a restart finds the published object."""
        self._started.discard(request.id)
        self._store.finish(request.id).add_done_callback(log_failure("a finished request's deletion"))

    async def _expire(self, request: AsyncRequest) -> None:
        if request.id in self._started and await self._published_before(request):
            return
        self._metrics.count(request.endpoint, "ExpiredRequests")
        reason = (
            f"The request expired: it waited more than its RequestTTLSeconds ({request.ttl_s:g} s) in the "
            "queue and was not run."
        )
        log.warning("inference %s (endpoint %s): %s", request.inference_id, request.endpoint, reason)
        result = _failure(reason, code="ExpiredRequest")
        request = await self._owe(request, result)
        try:
            await asyncio.get_running_loop().run_in_executor(self._publisher, self._publish, request, result)
        except StorageError as exc:
            log.error(
                "inference %s: could not write its expiry failure object: %s", request.inference_id, exc
            )
            self._metrics.count(request.endpoint, "ResponseUploadFailures")
            return  # the row stays; the next start expires it again
        await self._notify(request)

    # Notifications ---------------------------------------------------------------------------------
    async def _owe(self, request: AsyncRequest, result: _Result) -> AsyncRequest:
        """Commit the notification this result will owe before its object is published (so a restart
        that finds the object sends it); the request as it now is. Without a topic nothing is owed, and
        an `outcome` left by an earlier run names another location, which `_notify` does not match."""
        config = request.config
        topic = config.success_topic if result.succeeded else config.error_topic
        if topic is None:
            return dataclasses.replace(request, outcome=None)
        wanted = "SUCCESS_NOTIFICATION_TOPIC" if result.succeeded else "ERROR_NOTIFICATION_TOPIC"
        location = request.output_location if result.succeeded else request.failure_location
        body = message(
            region=self._region,
            endpoint=request.endpoint,
            inference_id=request.inference_id,
            received=request.received,
            finished=time.time(),
            input_location=request.input_location,
            request_content_type=request.content_type,
            succeeded=result.succeeded,
            location=location,
            response_content_type=result.content_type,
            failure_reason=result.reason,
            response=await self._response(result) if wanted in config.include_response_in else None,
        )
        outcome = {"topic": topic, "message": body, "location": location}
        await asyncio.wrap_future(self._store.owes(request.id, outcome))
        return dataclasses.replace(request, outcome=outcome)

    async def _notify(self, request: AsyncRequest, location: str | None = None) -> None:
        """Its result object is published (at `location`, else where its `outcome` says): send the
        notification owed for that object, if any, then delete the row."""
        outcome = request.outcome
        if outcome is None or (location is not None and outcome.get("location") != location):
            self._finish(request)
            return
        self._store.published(request.id).add_done_callback(log_failure("a published mark"))
        await self._renotify(request)

    async def _response(self, result: _Result) -> bytes:
        """The answer for IncludeInferenceResponseIn; of a large one, only enough to see it is too large."""
        if result.body_file is None:
            return result.body
        return await asyncio.to_thread(self._bodies.head, result.body_file, INCLUDE_LIMIT + 1)

    async def _renotify(self, request: AsyncRequest) -> None:
        assert request.outcome is not None
        topic, body = request.outcome["topic"], request.outcome["message"]
        if not await asyncio.to_thread(self._notifier.publish, topic, body, request.inference_id):
            self._metrics.count(request.endpoint, "NotificationFailures")
        self._finish(request)


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
