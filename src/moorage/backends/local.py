"""The local backend: workers are processes on this machine, forked from a warm fork server.

Each worker gets one end of an anonymous socketpair (no TCP port, no socket file), a log file opened
by the server, and an environment stripped of the server's secrets. The server keeps every worker's
pid, learns of exits from the fork server (or from the process itself when spawned fresh), and
fails a dead worker's requests at once with how it died. The client of the fork server itself
(`ForkServer`) is in `forkserver_client.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from moorage.backends.base import PlacementProfile, ReadyInfo, WorkerLost, load_failure_text
from moorage.backends.bodies import link_or_copy, take_reply_file
from moorage.backends.forkserver_client import ForkServer
from moorage.errors import InstanceStartError
from moorage.runtime.cpu import ThreadBudget
from moorage.settings import Settings
from moorage.streaming.desk import StreamDesk, StreamLimits
from moorage.streaming.frames import StreamEnd, StreamHead, StreamMessage, StreamPart
from moorage.streaming.relay import PartStream
from moorage.worker.protocol import (
    Invoke,
    LoadFailed,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    Reply,
    WorkerSpec,
    decode,
    encode,
    split_frames,
)
from moorage.worker.spare import Spare

__all__ = ["ForkServer", "LocalBackend", "LocalWorker", "make_fork_server", "worker_environment"]

log = logging.getLogger("moorage.backends.local")

# Below this much CPU time per request, intra-op threads cost more than they save: OpenMP's fork/join
# added ~57 µs to a 140 µs request of the tiny model, while ResNet-50 (80 ms) runs ~1.9× faster on two.
_SMALL_WORK_US = 3000

# Server secrets never reach user code (issue: "worker processes get no server secrets").
_SECRET_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment workers start from: the server's, minus its credentials and MOORAGE_* settings."""
    env = {
        key: value
        for key, value in environ.items()
        if key not in _SECRET_VARIABLES and not key.startswith("MOORAGE_") and key != "AWS_PROFILE"
    }
    # Nor may boto3 inside a worker pick up the server's credentials files by default.
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_CONFIG_FILE"] = os.devnull
    env["PYTHONUNBUFFERED"] = "1"
    return env


def describe_exit(returncode: int | None, reason: str | None) -> str:
    if returncode is None:
        how = "exited"
    elif returncode < 0:
        try:
            how = f"was killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    return f"the worker process {how}" + (f" ({reason})" if reason else "")


class LocalWorker:
    """A handle on one worker process; see backends.base.WorkerHandle for the contract."""

    def __init__(
        self,
        name: str,
        spec: WorkerSpec,
        budget: ThreadBudget,
        log_path: Path,
        stream_limits: StreamLimits | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.log_path = log_path
        self._budget = budget
        self._adaptive = spec.torch_threads == 0
        self._thread_cap = max(1, spec.max_threads)
        # CPU time (µs × threads) the last request took: work this small gains nothing from more threads.
        self._last_work_us = 0
        self._last_threads = 1
        self._pid: int | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._ready: asyncio.Future[Ready | LoadFailed] = loop.create_future()
        self._pending: dict[int, asyncio.Future[Reply | PartStream]] = {}
        self._pongs: dict[int, asyncio.Future[None]] = {}
        self._streams = StreamDesk(stream_limits or StreamLimits(), self._write, self.kill)
        self._exit_code: asyncio.Future[int] = loop.create_future()
        self._gone: asyncio.Future[str] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._kill_reason: str | None = None
        self._ping_token = 0
        # Large-body requests in flight: request id → (the answer's file in the scratch dir, the server's).
        self._reply_files: dict[int, tuple[str, str]] = {}

    # Wiring (backend side) ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._pid

    def attach(self, pid: int) -> None:
        self._pid = pid

    def exit_code_known(self, returncode: int) -> None:
        if not self._exit_code.done():
            self._exit_code.set_result(returncode)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            frames = split_frames(self._buffer)
            for frame in frames:
                self._dispatch(decode(frame))
        except ProtocolError as exc:
            log.error("%s sent a malformed message (%s); killing it", self.name, exc)
            self._streams.broken(str(exc))
            self.kill(f"protocol error: {exc}")

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._loop.create_task(self._finish())

    def pause_writing(self) -> None:  # bodies are bounded; the kernel buffer absorbs them
        pass

    def resume_writing(self) -> None:
        pass

    def _dispatch(self, message: Message | StreamMessage) -> None:
        if isinstance(message, Reply):
            files = self._reply_files.pop(message.request_id, None)
            if message.in_file:
                message = take_reply_file(message, files)
            if message.model_us:
                self._last_work_us = message.model_us * self._last_threads
            future = self._pending.pop(message.request_id, None)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, Pong):
            pong = self._pongs.pop(message.token, None)
            if pong is not None and not pong.done():
                pong.set_result(None)
        elif isinstance(message, Ready | LoadFailed):
            if not self._ready.done():
                self._ready.set_result(message)
        elif isinstance(message, StreamHead | StreamPart | StreamEnd):
            self._streams.receive(message, self._pending)
        else:
            raise ProtocolError(f"unexpected message kind {message.kind} from a worker")

    def _write(self, parts: list[bytes]) -> None:
        if self._transport is not None:
            self._transport.writelines(parts)

    async def _finish(self) -> None:
        """The socket closed: learn how the process ended, then fail everything that waited on it."""
        try:
            code: int | None = await asyncio.wait_for(asyncio.shield(self._exit_code), 0.5)
        except TimeoutError:
            code = None
        detail = describe_exit(code, self._kill_reason)
        lost = WorkerLost(detail)
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(lost)
        for pong in self._pongs.values():
            if not pong.done():
                pong.set_exception(lost)
        self._pending.clear()
        self._pongs.clear()
        self._streams.lost(detail)
        self._reply_files.clear()  # their files go with the scratch dir
        if not self._ready.done():
            self._ready.set_result(LoadFailed(error=detail, detail=""))
        if not self._gone.done():
            self._gone.set_result(detail)

    # WorkerHandle --------------------------------------------------------------------------------
    async def wait_ready(self, timeout: float) -> ReadyInfo:
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            self.kill(f"the model did not load within {timeout:g} s")
            raise InstanceStartError(
                f"The model did not finish loading within {timeout:g} s (model_fn is still running)."
            ) from None
        if isinstance(outcome, LoadFailed):
            raise InstanceStartError(load_failure_text(outcome, self.log_path))
        return ReadyInfo(pid=outcome.pid, load_seconds=outcome.load_seconds, device=outcome.device)

    def invoke(self, batch: Sequence[Invoke]) -> list[asyncio.Future[Reply | PartStream]]:
        futures = [self._loop.create_future() for _ in batch]
        if self._transport is None or self._gone.done():
            lost = WorkerLost(self._gone.result() if self._gone.done() else "the worker is not connected")
            for future in futures:
                future.set_exception(lost)
            return futures
        first = batch[0]
        threads = 0
        if self._adaptive:
            small = 0 < self._last_work_us < _SMALL_WORK_US
            threads = self._budget.acquire(1 if small else self._thread_cap)
            self._last_threads = threads
        if threads or first.batch_size != len(batch):
            first = dataclasses.replace(first, threads=threads, batch_size=len(batch))
        parts: list[bytes] = []
        if first.stream and len(batch) == 1:  # a single request that may stream (moorage.streaming)
            parts = self._streams.open_frames(first.request_id)
        for message, future in zip((first, *batch[1:]), futures, strict=True):
            self._pending[message.request_id] = future
            if message.body_file is not None or message.reply_file is not None:
                message = self._through_scratch(message)
            parts.extend(encode(message))
        if self._adaptive:
            remaining = [len(futures)]

            def release(_: asyncio.Future[Reply | PartStream]) -> None:
                remaining[0] -= 1
                if remaining[0] == 0:
                    self._budget.release()

            for future in futures:
                future.add_done_callback(release)
        self._transport.writelines(parts)
        return futures

    def _through_scratch(self, message: Invoke) -> Invoke:
        """A large-body request with its files moved where the sandboxed worker may use them: the input
        hard-linked into its scratch dir (no copy), the answer written there; see `take_reply_file`."""
        scratch = self.spec.scratch_dir
        if scratch is None:  # unconfined: the worker reads and writes the server's own files
            return message
        stem = os.path.join(scratch, f"{message.request_id}-{secrets.token_hex(4)}")
        body_file = None
        if message.body_file is not None:
            body_file = stem + ".in"
            link_or_copy(message.body_file, body_file)
        reply_file = None
        if message.reply_file is not None:
            reply_file = stem + ".out"
            self._reply_files[message.request_id] = (reply_file, message.reply_file)
        return dataclasses.replace(message, body_file=body_file, reply_file=reply_file)

    async def ping(self, timeout: float) -> None:
        if self._transport is None:
            raise WorkerLost(self._gone.result() if self._gone.done() else "the worker is not connected")
        self._ping_token += 1
        token = self._ping_token
        pong: asyncio.Future[None] = self._loop.create_future()
        self._pongs[token] = pong
        self._transport.writelines(encode(Ping(token)))
        try:
            await asyncio.wait_for(pong, timeout)
        finally:
            self._pongs.pop(token, None)

    def kill(self, reason: str) -> None:
        if self._kill_reason is None:
            self._kill_reason = reason
        if self._pid is not None and not self._exit_code.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        if self._transport is not None:
            self._transport.abort()

    async def stop(self, grace_s: float) -> None:
        """Close the socket (the worker exits at EOF once idle); kill it if it lingers."""
        if self._transport is not None:
            self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._gone), grace_s)
        except TimeoutError:
            self.kill(f"it did not exit within {grace_s:g} s of being asked to stop")
            await asyncio.shield(self._gone)

    async def wait_gone(self) -> str:
        return await asyncio.shield(self._gone)


class _WorkerProtocol(asyncio.Protocol):
    """Adapts asyncio's protocol callbacks to a LocalWorker (kept separate so the handle stays small)."""

    def __init__(self, worker: LocalWorker) -> None:
        self.worker = worker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.worker.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.worker.data_received(data)

    def eof_received(self) -> bool:
        return self.worker.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.connection_lost(exc)


def make_fork_server(settings: Settings, environ: Mapping[str, str]) -> ForkServer | None:
    """The workers' fork server for these settings, not started; None when workers start fresh."""
    if settings.workers.start_method != "fork":
        return None
    log_path = settings.logs_dir / "forkserver.log"
    return ForkServer(settings.workers.preload, worker_environment(environ), log_path)


class LocalBackend:
    name = "local"

    def __init__(
        self, settings: Settings, environ: Mapping[str, str], forkserver: ForkServer | None = None
    ) -> None:
        """`forkserver`: one already launched by the caller (see ForkServer.launch); else one is made."""
        self.settings = settings
        self.env = worker_environment(environ)
        self.budget = ThreadBudget(settings.cpu_count)
        self.forkserver = forkserver if forkserver is not None else make_fork_server(settings, environ)
        self._spawned: set[asyncio.subprocess.Process] = set()
        self._cleanups: set[asyncio.Task[None]] = set()  # scratch dirs removed once their worker is gone

    async def start(self) -> None:
        """Start the fork server now, so its imports overlap with everything else at start-up."""
        if self.forkserver is not None:
            await self.forkserver.ensure_started()

    def capacity(self) -> PlacementProfile:
        return PlacementProfile(
            cpus=self.settings.cpu_count, memory_bytes=psutil.virtual_memory().total, gpus=_count_gpus()
        )

    def _sandboxed(self, spec: WorkerSpec) -> WorkerSpec:
        """The spec with the sandbox setting and a private scratch dir (the worker's HOME and TMPDIR)."""
        if self.settings.workers.sandbox == "off":
            return dataclasses.replace(spec, sandbox=False)
        root = self.settings.data_dir / "scratch"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=f"{spec.endpoint}-{spec.worker_index}-", dir=root)
        writable = list(self.settings.workers.sandbox_writable)
        return dataclasses.replace(spec, sandbox=True, scratch_dir=scratch, sandbox_writable=writable)

    async def _remove_scratch(self, worker: LocalWorker | None, scratch: str) -> None:
        if worker is not None:
            await worker.wait_gone()
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, scratch, True)

    async def spawn_spare(self, log_path: Path) -> Spare | None:
        """A worker forked before its model is known (multi-model loads); None without a fork server."""
        if self.forkserver is None:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        spare = Spare(ours)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            spare.pid = await self.forkserver.spawn(None, theirs, log_fd, spare.exited)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(log_fd)
        return spare

    async def spawn_worker(
        self, spec: WorkerSpec, profile: PlacementProfile, log_path: Path, spare: Spare | None = None
    ) -> LocalWorker:
        """`spare`: give that pre-forked worker this spec instead of forking one (worker/spare.py)."""
        loop = asyncio.get_running_loop()
        spec = self._sandboxed(spec)
        worker = LocalWorker(
            f"{spec.endpoint}/{spec.variant}/{spec.instance_id}/{spec.worker_index}",
            spec,
            self.budget,
            log_path,
            StreamLimits.of(self.settings.workers),
        )
        if spare is not None:
            try:
                ours = spare.claim(spec.to_json(), worker.exit_code_known)
                await loop.create_unix_connection(lambda: _WorkerProtocol(worker), sock=ours)
            except BaseException:
                worker.kill("it could not be started")
                if spec.scratch_dir:
                    await self._remove_scratch(None, spec.scratch_dir)
                raise
            return self._started(worker, spare.pid)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            await loop.create_unix_connection(lambda: _WorkerProtocol(worker), sock=ours)
            if self.forkserver is not None:
                pid = await self.forkserver.spawn(spec, theirs, log_fd, worker.exit_code_known)
            else:
                pid = await self._spawn_fresh(spec, theirs, log_fd, worker)
        except BaseException:
            worker.kill("it could not be started")
            if spec.scratch_dir:
                await self._remove_scratch(None, spec.scratch_dir)
            raise
        finally:
            theirs.close()
            os.close(log_fd)
        return self._started(worker, pid)

    def _started(self, worker: LocalWorker, pid: int) -> LocalWorker:
        worker.attach(pid)
        scratch = worker.spec.scratch_dir
        if scratch:
            cleanup = asyncio.get_running_loop().create_task(self._remove_scratch(worker, scratch))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
        return worker

    async def _spawn_fresh(
        self, spec: WorkerSpec, theirs: socket.socket, log_fd: int, worker: LocalWorker
    ) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "moorage.worker.main",
            "--fd",
            str(theirs.fileno()),
            "--spec",
            spec.to_json(),
            "--parent-pid",
            str(os.getpid()),
            pass_fds=[theirs.fileno()],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env=self.env,
        )
        self._spawned.add(process)

        async def reap() -> None:
            worker.exit_code_known(await process.wait())
            self._spawned.discard(process)

        asyncio.get_running_loop().create_task(reap())
        return process.pid

    async def close(self) -> None:
        if self.forkserver is not None:
            await self.forkserver.close()
        for process in list(self._spawned):
            if process.returncode is None:
                process.kill()


def _count_gpus() -> int:
    """NVIDIA GPUs the driver exposes, found without importing torch (the server never does)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0
