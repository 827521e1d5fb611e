"""Drive every InProgress transform job to its end; also how a restart resumes one.

For a job: list its inputs once (the list is stored, so a restart sees the same objects in the same
order), prepare the model and start `InstanceCount` instances of `InstanceType` exactly as an
endpoint's (runtime/variant.py, through the configured backend), then transform the objects not done
yet. Each object streams through split.py into request bodies; at most MaxConcurrentTransforms
requests per instance are in flight at once (the same worker pool path as InvokeEndpoint); answers
are written to a staged output in input order; the output is published only if every request of the
object succeeded, and only then is the object marked done in SQLite. An object that fails is logged
(object, record, byte offset, the handler's error) and the others go on; the job then ends Failed
with a reason naming it.

StopTransformJob cancels the job's work: objects already published stay, the others are dropped.
Shutting the server down cancels it the same way but leaves the job InProgress for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from moorage.artifacts import PreparedModel, prepare_model
from moorage.asyncinf.bodies import BodyFiles
from moorage.backends.base import Backend
from moorage.control.arns import name_key
from moorage.control.reconciler import model_source
from moorage.control.records import JsonObject
from moorage.errors import MoorageError
from moorage.logs.layout import TRANSFORM_DIR, TRANSFORM_VARIANT
from moorage.runtime.instance_types import plan_instance
from moorage.runtime.variant import VariantRuntime, VariantSetup
from moorage.s3io import Storage, StorageError
from moorage.settings import ContainerConfig, Settings
from moorage.transform.config import JobConfig, output_key, relative_name, split_s3_uri
from moorage.transform.dataproc import FilterError, split_answer
from moorage.transform.instances import BatchVariant, ObjectFailed, call, earlier_instances
from moorage.transform.joblog import JobLog
from moorage.transform.records import InputObject, ObjectState, TransformJob, TransformStatus
from moorage.transform.split import Payload, SplitError, decompressed, request_bodies
from moorage.transform.store import MAX_FAILURE_REASON, TransformStore

__all__ = ["TransformRunner"]

log = logging.getLogger("moorage.transform")

_T = TypeVar("_T")
_FLUSH_BYTES = 1024 * 1024
_PULL_RECORDS = 64  # request bodies read per trip to the reading thread
_MAX_OBJECTS_AT_ONCE = 8
_MAX_IN_FLIGHT = 256  # WorkerSettings.max_queue_per_variant's default: the pool never throttles a job


class _JobFailed(Exception):
    """The whole job cannot go on (no inputs, the model does not load); the message is its FailureReason."""


@dataclass
class _Live:
    """What DescribeTransformJob's MoorageProgress and /metrics show while the job runs."""

    name: str  # as created (SageMaker's name pattern: nothing to escape in a label)
    started: float = field(default_factory=time.monotonic)
    objects: int = 0  # the job's input objects, once listed
    done: int = 0  # ... of which published (this run and earlier ones)
    failed: int = 0
    records: int = 0  # records answered in this run
    bytes_done: int = 0  # input bytes of objects finished in this run
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False


class TransformRunner:
    def __init__(
        self,
        *,
        store: TransformStore,
        store_executor: Executor,
        backend: Backend,
        settings: Settings,
        storage: Storage,
        s3_local_root: Path | None,
    ) -> None:
        self.store = store
        self.store_executor = store_executor
        self.backend = backend
        self.settings = settings
        self.storage = storage
        self.s3_local_root = s3_local_root
        self.logs_dir = settings.logs_dir / TRANSFORM_DIR  # the log group /aws/sagemaker/TransformJobs
        self._job_logs: dict[str, JobLog] = {}
        self._live: dict[str, _Live] = {}
        # Built on the event loop; jobs may be created before `recover` runs.
        self._loop = asyncio.get_running_loop()
        self._checks: set[asyncio.Task[None]] = set()
        # Request bodies and answers too large for a worker frame (instances.py), emptied at each start.
        self._files = BodyFiles(settings.data_dir / "transform" / "bodies")
        self._io = ThreadPoolExecutor(max_workers=2 * _MAX_OBJECTS_AT_ONCE, thread_name_prefix="transform-io")
        self._closing = False

    # Hooks for the control plane (called on the store's thread) ------------------------------------
    def notify(self, name: str) -> None:
        if not self._closing:
            self._loop.call_soon_threadsafe(self._changed, name)

    def progress(self, name: str) -> JsonObject | None:
        objects, done, failed, records, done_bytes, total_bytes = self.store.counts(name)
        live = self._live.get(name_key(name))
        result: JsonObject = {
            "ObjectsTotal": objects,
            "ObjectsDone": done,
            "ObjectsFailed": failed,
            "RecordsDone": records,
            "BytesTotal": total_bytes,
            "BytesDone": done_bytes,
        }
        if live is not None:
            elapsed = max(time.monotonic() - live.started, 1e-6)
            result["RecordsDone"] = max(records, live.records)
            result["RecordsPerSecond"] = round(live.records / elapsed, 1)
            if live.bytes_done > 0:
                result["EstimatedSecondsLeft"] = round(
                    elapsed * (total_bytes - done_bytes) / live.bytes_done, 1
                )
        return result

    def render_metrics(self) -> list[str]:
        """Prometheus gauges of the running jobs (read on the event loop, from memory only)."""
        running = [self._live[key] for key in sorted(self._live) if self._live[key].objects]
        lines = [
            "# HELP moorage_transform_objects Input objects of a running transform job, by state.",
            "# TYPE moorage_transform_objects gauge",
        ]
        for live in running:
            for state, value in (("total", live.objects), ("done", live.done), ("failed", live.failed)):
                lines.append(
                    f'moorage_transform_objects{{TransformJobName="{live.name}",state="{state}"}} {value}'
                )
        lines += [
            "# HELP moorage_transform_records Records a running transform job answered since it (re)started.",
            "# TYPE moorage_transform_records gauge",
        ]
        lines += [
            f'moorage_transform_records{{TransformJobName="{live.name}"}} {live.records}' for live in running
        ]
        return lines

    # Lifecycle ----------------------------------------------------------------------------------------
    async def recover(self) -> None:
        """At start-up: resume every InProgress job, finish every Stopping one."""
        staging = self.settings.data_dir / "transform" / "staging"
        await self._loop.run_in_executor(
            self._io, functools.partial(shutil.rmtree, staging, ignore_errors=True)
        )
        for job in await self._db(self.store.list_jobs):
            if job.status in (TransformStatus.IN_PROGRESS, TransformStatus.STOPPING):
                self._changed(job.name)

    async def close(self) -> None:
        """Stop every job's work; InProgress jobs resume at the next start."""
        self._closing = True
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._io.shutdown(wait=False, cancel_futures=True)

    def _changed(self, name: str) -> None:
        if self._closing:
            return
        live = self._live.get(name_key(name))
        if live is not None and live.task is not None:
            check = asyncio.get_running_loop().create_task(self._stop_if_asked(name, live))
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)
            return
        live = _Live(name)
        self._live[name_key(name)] = live
        live.task = asyncio.get_running_loop().create_task(self._run(name, live))

    async def _stop_if_asked(self, name: str, live: _Live) -> None:
        """A running job changes only by StopTransformJob: cancel its work if it is Stopping now."""
        job = await self._db(self.store.get_job, name)
        if job is not None and job.status is TransformStatus.STOPPING and live.task is not None:
            live.stop_requested = True
            live.task.cancel()

    async def _db(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.store_executor, functools.partial(method, *args, **kwargs))

    async def _off_loop(self, call: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._io, functools.partial(call, *args))

    # One job ------------------------------------------------------------------------------------------
    async def _run(self, name: str, live: _Live) -> None:
        try:
            job = await self._db(self.store.get_job, name)
            if job is None:
                return
            live.name = job.name
            if job.status is TransformStatus.STOPPING:
                await self._end(job.name, TransformStatus.STOPPED, None)
                return
            if job.status is not TransformStatus.IN_PROGRESS:
                return
            try:
                reason = await self._transform(job, live)
            except _JobFailed as exc:
                reason = str(exc)
            except MoorageError as exc:
                reason = exc.message
            if reason is not None:
                self._data_log(job.name, f"the job failed: {reason}")
            await self._end(job.name, TransformStatus.FAILED if reason else TransformStatus.COMPLETED, reason)
        except asyncio.CancelledError:
            if live.stop_requested and not self._closing:
                await self._end(name, TransformStatus.STOPPED, None)
            raise
        except Exception:
            log.exception("transform job %s failed unexpectedly", name)
            await self._end(
                name, TransformStatus.FAILED, "moorage failed while running the job; see the server log."
            )
        finally:
            self._live.pop(name_key(name), None)
            job_log = self._job_logs.pop(name_key(name), None)
            if job_log is not None:
                job_log.close()

    async def _end(self, name: str, status: TransformStatus, reason: str | None) -> None:
        allowed = (
            (TransformStatus.STOPPING, TransformStatus.IN_PROGRESS)
            if status is TransformStatus.STOPPED
            else (TransformStatus.IN_PROGRESS,)
        )
        job = await self._db(self.store.set_status, name, status, allowed_from=allowed, reason=reason)
        if job is not None and job.status is TransformStatus.STOPPING:
            # Stopped while its last object finished: what was published stays, as for any stop.
            stopped = (TransformStatus.STOPPING,)
            job = await self._db(self.store.set_status, name, TransformStatus.STOPPED, allowed_from=stopped)
        if job is not None:
            log.info("transform job %s is %s", name, job.status.value)

    async def _transform(self, job: TransformJob, live: _Live) -> str | None:
        """Run the job; its FailureReason, or None when every object succeeded."""
        config = JobConfig.from_request(job.request)
        await self._db(self.store.mark_started, job.name)
        if not job.listed:
            listed = await self._off_loop(self._list_inputs, config)
            await self._db(self.store.record_inputs, job.name, listed)
        inputs = await self._db(self.store.inputs, job.name)
        pending = [obj for obj in inputs if obj.state is ObjectState.PENDING]
        live.objects = len(inputs)
        live.done = sum(obj.state is ObjectState.DONE for obj in inputs)
        live.failed = sum(obj.state is ObjectState.FAILED for obj in inputs)
        self._data_log(
            job.name,
            f"MaxConcurrentTransforms={config.concurrency or 'one per worker'}, "
            f"MaxPayloadInMB={config.max_payload_mb}, "
            f"BatchStrategy={'MULTI_RECORD' if config.multi_record else 'SINGLE_RECORD'}; "
            f"{len(inputs)} input objects, {len(pending)} to do",
        )
        if pending:
            runtime = await self._start_instances(job, config)
            try:
                await self._transform_objects(job, config, pending, runtime, live)
            finally:
                await runtime.stop(0.0, f"the transform job {job.name} has ended")
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(runtime.setup.prepared.release)
        failed = [
            obj for obj in await self._db(self.store.inputs, job.name) if obj.state is ObjectState.FAILED
        ]
        if not failed:
            return None
        first = failed[0]
        reason = (
            f"{len(failed)} of {len(inputs)} input objects failed; no output was written for them. "
            f"s3://{first.bucket}/{first.key}: {first.reason}"
        )
        return reason[:MAX_FAILURE_REASON]

    def _list_inputs(self, config: JobConfig) -> list[InputObject]:
        """The input objects, in input order: a prefix's keys sorted, or a manifest's entries."""
        bucket, key = split_s3_uri(config.input_uri)
        limit = self.settings.transform_max_objects
        try:
            if config.input_type == "ManifestFile":
                found = self._manifest(bucket, key, limit)
            else:
                found = [
                    (bucket, item.key, relative_name(key, item.key), item.size)
                    for item in self.storage.list_prefix(bucket, key, limit)
                    if not item.key.endswith("/")
                ]
        except StorageError as exc:
            raise _JobFailed(str(exc)) from None
        if not found:
            raise _JobFailed(
                f"No S3 objects found under S3 URL {config.input_uri} (in {self.storage.where})."
            )
        return [InputObject(seq, b, k, n, size) for seq, (b, k, n, size) in enumerate(found)]

    def _manifest(self, bucket: str, key: str, limit: int) -> list[tuple[str, str, str, int]]:
        """`[{"prefix": "s3://b/p/"}, "rel/1", ...]`: every entry is an object under the prefix."""
        text = b"".join(self.storage.read(bucket, key))
        try:
            entries = json.loads(text)
            prefix = entries[0]["prefix"]
            names = entries[1:]
            if not isinstance(prefix, str) or not prefix.startswith("s3://"):
                raise ValueError("prefix")
            if not all(isinstance(name, str) for name in names):
                raise ValueError("entries")
        except (ValueError, LookupError, TypeError):
            raise _JobFailed(
                f"s3://{bucket}/{key} is not a manifest: it must be a JSON array "
                '[{"prefix": "s3://bucket/prefix/"}, "relative/key", ...]'
            ) from None
        if len(names) > limit:
            raise _JobFailed(f"the manifest lists more than {limit} objects (MOORAGE_TRANSFORM_MAX_OBJECTS)")
        base_bucket, base_key = split_s3_uri(prefix)
        found = []
        for name in names:
            sizes = {
                item.key: item.size for item in self.storage.list_prefix(base_bucket, base_key + name, 1)
            }
            if base_key + name not in sizes:
                raise _JobFailed(
                    f"the manifest lists s3://{base_bucket}/{base_key}{name}, which does not exist"
                )
            found.append((base_bucket, base_key + name, name, sizes[base_key + name]))
        return found

    async def _start_instances(self, job: TransformJob, config: JobConfig) -> VariantRuntime:
        write = functools.partial(self._data_log, job.name)
        source = model_source(job.container)
        write(f"preparing model {job.request['ModelName']} from {source.url}")
        prepared: PreparedModel = await self._off_loop(
            functools.partial(
                prepare_model,
                source,
                submit_directory=job.container.environment.get("SAGEMAKER_SUBMIT_DIRECTORY"),
                cache_dir=self.settings.cache_dir,
                policy=self.settings.artifacts,
                s3_local_root=self.s3_local_root,
                log=write,
            )
        )
        await self.backend.start()
        setup = VariantSetup(
            endpoint=job.name,
            variant=TRANSFORM_VARIANT,
            prepared=prepared,
            environment={},
            instance_type=config.instance_type,
            instance_count=config.instance_count,
            logs_dir=self.logs_dir,
            startup_timeout_s=self.settings.workers.startup_timeout_s,
        )
        # Workers per instance come from the instance type; the environment then names the concurrency.
        plan = plan_instance(
            config.instance_type,
            ContainerConfig.from_environment(job.container.environment | config.environment),
            self.backend.capacity(),
            memory_limit_override=self.settings.workers.memory_limit_bytes,
        )
        concurrency = config.concurrency or plan.workers
        environment = config.worker_environment(job.container.environment, concurrency)
        streams = self.logs_dir / job.name / TRANSFORM_VARIANT
        earlier = await self._off_loop(earlier_instances, streams, config.instance_count)
        runtime = BatchVariant(
            replace(setup, environment=environment), self.backend, self.settings.workers, reuse=earlier
        )
        try:
            await runtime.start()
        except MoorageError as exc:
            await asyncio.to_thread(prepared.release)
            raise _JobFailed(f"The model's instances could not start: {exc.message}") from None
        self._job_log(job.name).attach(runtime.groups[0].log_path)
        return runtime

    async def _transform_objects(
        self,
        job: TransformJob,
        config: JobConfig,
        pending: list[InputObject],
        runtime: VariantRuntime,
        live: _Live,
    ) -> None:
        per_instance = config.concurrency or runtime.plan.workers
        window = asyncio.Semaphore(min(_MAX_IN_FLIGHT, per_instance * config.instance_count))
        queue: deque[InputObject] = deque(pending)

        async def lane() -> None:
            while queue:
                obj = queue.popleft()
                await self._transform_object(job, config, obj, runtime, window, live)

        lanes = min(len(pending), _MAX_OBJECTS_AT_ONCE, per_instance * config.instance_count)
        tasks = [asyncio.get_running_loop().create_task(lane()) for _ in range(lanes)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _transform_object(
        self,
        job: TransformJob,
        config: JobConfig,
        obj: InputObject,
        runtime: VariantRuntime,
        window: asyncio.Semaphore,
        live: _Live,
    ) -> None:
        url = f"s3://{obj.bucket}/{obj.key}"
        target = output_key(config.output_prefix, obj.name)
        output = await self._off_loop(
            functools.partial(
                self.storage.open_output,
                config.output_bucket,
                target,
                content_type=config.accept,
                kms_key_id=config.kms_key_id,
            )
        )
        bodies = self._bodies(obj, config)
        in_flight: deque[tuple[Payload, asyncio.Task[bytes]]] = deque()
        written: list[bytes] = []
        count = 0

        async def settle(everything: bool) -> None:
            nonlocal count
            while in_flight and (everything or in_flight[0][1].done()):
                payload, task = in_flight.popleft()
                window.release()  # released when settled, so answers held out of order stay bounded
                answer = await task
                written.append(self._assemble(payload, answer, config, url))
                count += payload.count
                live.records += payload.count
                if sum(map(len, written)) >= _FLUSH_BYTES:
                    data = b"".join(written)
                    written.clear()
                    await self._off_loop(output.write, data)

        try:
            while batch := await self._off_loop(_take, bodies, _PULL_RECORDS, config.max_payload_bytes):
                for payload in batch:
                    while window.locked() and in_flight:
                        # Slots come back as answers are settled: wait for this object's oldest one.
                        await asyncio.wait({in_flight[0][1]})
                        await settle(False)
                    await window.acquire()
                    request = call(runtime, config, payload, self._files)
                    task = asyncio.get_running_loop().create_task(request)
                    in_flight.append((payload, task))
                    await settle(False)
            await settle(True)
            if written:
                await self._off_loop(output.write, b"".join(written))
            await self._off_loop(output.commit)
        except (ObjectFailed, SplitError, FilterError, StorageError) as exc:
            await self._drop(in_flight, output, window)
            reason = str(exc)
            self._data_log(job.name, f"{url}: {reason}")
            await self._db(self.store.finish_object, job.name, obj.seq, ObjectState.FAILED, count, reason)
            live.failed += 1
            return
        except BaseException:
            await self._drop(in_flight, output, window)
            raise
        await self._db(self.store.finish_object, job.name, obj.seq, ObjectState.DONE, count, None)
        live.bytes_done += obj.size
        live.done += 1
        self._data_log(job.name, f"{url}: {count} records → s3://{config.output_bucket}/{target}")

    def _bodies(self, obj: InputObject, config: JobConfig) -> Iterator[Payload]:
        """The object's request bodies, produced on a reading thread as they are pulled."""
        chunks = decompressed(self.storage.read(obj.bucket, obj.key), config.compression)
        return request_bodies(
            chunks,
            config.split,
            multi=config.multi_record,
            limit=config.max_payload_bytes,
            processing=config.processing,
        )

    async def _drop(
        self, in_flight: deque[tuple[Payload, asyncio.Task[bytes]]], output: Any, window: asyncio.Semaphore
    ) -> None:
        tasks = [task for _, task in in_flight]
        in_flight.clear()
        for task in tasks:
            task.cancel()
            window.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._off_loop(output.abort))

    @staticmethod
    def _assemble(payload: Payload, answer: bytes, config: JobConfig, url: str) -> bytes:
        processing = config.processing
        if processing.per_record_output:
            pieces = split_answer(answer, payload.count)
            lines = [
                processing.output(original, piece)
                for original, piece in zip(payload.originals, pieces, strict=True)
            ]
            return b"".join(line + b"\n" for line in lines) if config.assemble_line else b"".join(lines)
        if config.assemble_line and not answer.endswith(b"\n"):
            return answer + b"\n"
        return answer

    def _job_log(self, job: str) -> JobLog:
        key = name_key(job)
        if key not in self._job_logs:
            self._job_logs[key] = JobLog(job, self.logs_dir / job / TRANSFORM_VARIANT)
        return self._job_logs[key]

    def _data_log(self, job: str, line: str) -> None:
        """SageMaker's `[sagemaker logs]` lines: in the server log and in the job's log streams."""
        self._job_log(job).write(line)


def _take(bodies: Iterator[Payload], count: int, budget: int) -> list[Payload]:
    """Up to `count` bodies, stopping once they add up to `budget` bytes (memory stays bounded)."""
    taken: list[Payload] = []
    size = 0
    for payload in bodies:
        taken.append(payload)
        size += len(payload.body)
        if len(taken) >= count or size >= budget:
            break
    return taken
