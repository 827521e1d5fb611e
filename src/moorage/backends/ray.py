"""The Ray backend: each worker is a Ray actor on some node of a cluster, running the same worker code.

An actor hosts exactly what a local worker process runs (`worker/main.py`: `configure_process`, `load`,
`Responder`); only the carrier differs. Where a local worker reads frames from its socketpair, the actor
takes the same encoded frames as the argument of one method call and returns the encoded replies, so
nothing of ours is pickled: Ray moves bytes. moorage's HTTP front calls the actors directly (no Ray
Serve proxy, which cost ~9.5 ms a request in shared/peers/README.md).

Placement: the instance type's profile becomes the actor's `num_cpus`, `num_gpus` and `memory`, and
workers are spread over the nodes (SageMaker spreads instances over availability zones). A request no
node could ever hold fails at once with a clear reason; one that waits for room fails after
`MOORAGE_RAY_PLACEMENT_TIMEOUT`. torch runs as many threads as the actor has CPUs (Ray sets
OMP_NUM_THREADS to the same number). A multi-model endpoint's model asks for a share of a CPU and no
memory instead (`cpu_share`; docs/multi-model.md, "On Ray").

Failure: a call on an actor that died (its process was killed, its node was lost) fails with a Ray
error; the handle turns it into WorkerLost for every request on it and reports itself gone, and the
supervisor starts a replacement, which Ray may place on another node. Idle actors are checked by the
runtime's health pings, like local workers.

Security (shared/spec/reliability.md, "ShadowRay"): without --ray-address, moorage starts a private
single-node cluster on loopback only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), with no dashboard and no
job API, token authentication on with a token under the data dir (not ~/.ray), Ray's temp dir under
the data dir, and shuts it down on exit; it never runs `ray stop`. With --ray-address it joins that
cluster as a driver, with whatever authentication the cluster requires (docs/ray.md).

Logs: an actor whose node sees the server's log directory (this machine, or a shared filesystem)
writes its stdout and stderr to the same per-instance file as a local worker; elsewhere they stay in
Ray's worker logs on that node.

The actor class itself (what runs on the node) is in `ray_actor.py`; this module is the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from moorage.backends.base import PlacementProfile, ReadyInfo, WorkerLost, load_failure_text
from moorage.backends.bodies import carried
from moorage.backends.ray_actor import MoorageWorker, frame_messages
from moorage.errors import ConfigError, InstanceStartError
from moorage.settings import Settings
from moorage.streaming.desk import PulledStreams, StreamLimits
from moorage.streaming.relay import PartStream
from moorage.worker.protocol import (
    Invoke,
    LoadFailed,
    Ping,
    Pong,
    ProtocolError,
    Ready,
    Reply,
    WorkerSpec,
    encode,
)

__all__ = ["MoorageWorker", "RayBackend", "RayWorker"]

log = logging.getLogger("moorage.backends.ray")

_T = TypeVar("_T")
_GIB = 1024**3
_NAMESPACE = "moorage"
# Ray puts Unix sockets at <temp dir>/session_<date>_<pid>/sockets/plasma_store, and a socket path may
# not exceed 107 bytes: the temp dir gets 43 of them.
_MAX_TEMP_DIR = 43
_SESSIONS_KEPT = 3


def _frames(*messages: Invoke | Ping) -> bytes:
    return b"".join(part for message in messages for part in encode(message))


# The handle: lives in the server ---------------------------------------------------------------------
def _describe(error: BaseException) -> str:
    """A Ray error, in the words the client reads after "Worker died." (one line, no actor ids)."""
    import ray.exceptions

    if isinstance(error, ray.exceptions.ActorUnavailableError):
        return "its Ray actor became unreachable (its process or its node went away)"
    if isinstance(error, ray.exceptions.ActorDiedError):
        text = str(error)
        if "ray.kill" in text:
            return "its Ray actor was killed"
        node = re.search(r"^\s*ip: (\S+)", text, re.MULTILINE)
        cause = re.search(r"^\s*(The actor[^.]*)\.", text, re.MULTILINE)
        exit_type = re.search(r"Worker exit type: (\w+)", text)
        where = f" on {node[1]}" if node else ""
        why = cause[1][:1].lower() + cause[1][1:] if cause else "no reason given"
        return f"its Ray actor{where} died: {why}" + (f" (exit type {exit_type[1]})" if exit_type else "")
    if isinstance(error, ray.exceptions.RayTaskError):
        return f"its Ray actor failed a call: {str(error).strip().splitlines()[-1][:300]}"
    return f"its Ray actor failed: {type(error).__name__}"


class RayWorker:
    """A handle on one actor; see backends.base.WorkerHandle for the contract."""

    def __init__(
        self, name: str, actor: Any, backend: RayBackend, profile: PlacementProfile, log_path: Path
    ) -> None:
        self.name = name
        self.node: str | None = None
        self._actor = actor
        self._backend = backend
        self._profile = profile
        self._log_path = log_path
        self._loop = asyncio.get_running_loop()
        self._pid: int | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._calls: set[asyncio.Future[Any]] = set()
        self._gone: asyncio.Future[str] = self._loop.create_future()
        self._ping_token = 0
        self._streaming = PulledStreams(StreamLimits.of(backend.settings.workers), self._call, self.kill)

    @property
    def pid(self) -> int | None:
        return self._pid

    def _call(self, method: str, *args: object) -> asyncio.Future[Any]:
        """Call an actor method; the future fails with WorkerLost when the actor is (or becomes) gone."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._gone.done():
            future.set_exception(WorkerLost(self._gone.result()))
            return future
        ref = getattr(self._actor, method).remote(*args)
        self._calls.add(future)
        future.add_done_callback(_retrieve)  # a call nobody awaits any more (a cancelled wait) fails quietly

        def settle(result: ConcurrentFuture[Any]) -> None:
            self._calls.discard(future)
            if future.done():
                return
            error = result.exception()
            if error is None:
                future.set_result(result.result())
                return
            detail = _describe(error)
            self.lost(detail)
            if not future.done():
                future.set_exception(WorkerLost(detail))

        def completed(result: ConcurrentFuture[Any]) -> None:  # on one of Ray's threads
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for this any more
                self._loop.call_soon_threadsafe(settle, result)

        ref.future().add_done_callback(completed)
        return future

    async def wait_ready(self, timeout: float) -> ReadyInfo:
        deadline = self._loop.time() + timeout
        placement_s = min(timeout, self._backend.settings.ray.placement_timeout_s)
        try:
            where = json.loads(await asyncio.wait_for(asyncio.shield(self._call("where")), placement_s))
        except TimeoutError:
            free = await self._backend.describe_free()
            self.kill("it could not be placed")
            raise InstanceStartError(
                f"No node of the Ray cluster had room for a worker within {placement_s:g} s: it needs "
                f"{_resources(self._profile)}; free now: {free}."
            ) from None
        except WorkerLost as exc:
            raise InstanceStartError(f"The worker's Ray actor could not start: {exc.detail}.") from None
        self._pid, self.node = int(where["pid"]), str(where["node"])
        remaining = max(0.0, deadline - self._loop.time())
        try:
            frame = await asyncio.wait_for(asyncio.shield(self._call("start")), remaining)
        except TimeoutError:
            self.kill(f"the model did not load within {timeout:g} s")
            raise InstanceStartError(
                f"The model did not finish loading within {timeout:g} s (model_fn is still running)."
            ) from None
        except WorkerLost as exc:
            raise InstanceStartError(
                f"The model could not be loaded: the worker died ({exc.detail})."
            ) from None
        (outcome,) = frame_messages(frame)
        if isinstance(outcome, LoadFailed):
            self.kill("it failed to load the model")
            raise InstanceStartError(load_failure_text(outcome, self._log_path))
        if not isinstance(outcome, Ready):
            self.kill("it answered start with something else than Ready")
            raise InstanceStartError("The worker's Ray actor answered with an unexpected message.")
        return ReadyInfo(
            pid=outcome.pid, load_seconds=outcome.load_seconds, device=outcome.device, node=self.node
        )

    def invoke(self, batch: Sequence[Invoke]) -> list[asyncio.Future[Reply | PartStream]]:
        if len(batch) == 1 and batch[0].stream and not self._gone.done():
            return [self._streaming.start(batch[0])]  # a handler that yields is pulled part by part
        return cast("list[asyncio.Future[Reply | PartStream]]", self._invoke(batch))

    def _invoke(self, batch: Sequence[Invoke]) -> list[asyncio.Future[Reply]]:
        futures = [self._loop.create_future() for _ in batch]
        if self._gone.done():
            for future in futures:
                future.set_exception(WorkerLost(self._gone.result()))
            return futures
        first = batch[0]
        if first.batch_size != len(batch):
            first = dataclasses.replace(first, batch_size=len(batch))
        messages = (first, *batch[1:])
        pairs = carried(messages, futures)
        if not pairs:
            return futures
        messages = tuple(message for message, _ in pairs)
        for message, future in pairs:
            self._pending[message.request_id] = future
        call = self._call("handle", _frames(*messages))
        call.add_done_callback(lambda done: self._deliver(done, [m.request_id for m in messages]))
        return futures

    def _deliver(self, call: asyncio.Future[Any], request_ids: list[int]) -> None:
        if call.exception() is not None:
            return  # lost(): every pending request has already failed
        try:
            replies = {
                reply.request_id: reply for reply in frame_messages(call.result()) if isinstance(reply, Reply)
            }
        except ProtocolError as exc:
            self.kill(f"protocol error: {exc}")
            return
        for request_id in request_ids:
            future = self._pending.pop(request_id, None)
            reply = replies.get(request_id)
            if future is None or future.done():
                continue
            if reply is None:
                future.set_exception(WorkerLost("the worker answered without a reply to the request"))
            else:
                future.set_result(reply)

    async def private_bytes(self) -> int:
        """The memory the actor's process holds alone, as the actor measures it on its node (0 when it
        cannot answer: a lost actor is reported through wait_gone)."""
        try:
            size = await self._call("private_bytes")
        except WorkerLost:
            return 0
        return int(size)

    async def ping(self, timeout: float) -> None:
        self._ping_token += 1
        token = self._ping_token
        answer = await asyncio.wait_for(self._call("handle", _frames(Ping(token))), timeout)
        (pong,) = frame_messages(answer)
        if not isinstance(pong, Pong) or pong.token != token:
            self.kill("it answered a ping with something else than its Pong")
            raise WorkerLost("the worker answered a ping with something else than its Pong")

    def lost(self, detail: str) -> None:
        """The actor is gone (or must be treated so): fail everything that waits on it, once."""
        if self._gone.done():
            return
        self._gone.set_result(detail)
        error = WorkerLost(detail)
        for future in (*self._pending.values(), *self._calls):
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._calls.clear()
        self._streaming.lost(detail)
        self._backend.forget(self)
        self._backend.kill_actor(self._actor)  # a Ray error can mean "unreachable for now": make sure

    def kill(self, reason: str) -> None:
        self.lost(f"its Ray actor was killed ({reason})")

    async def stop(self, grace_s: float) -> None:
        """Let the request it runs (if any) finish within `grace_s`, then end the actor."""
        running = [future for future in self._pending.values() if not future.done()]
        if running:
            await asyncio.wait(running, timeout=grace_s)
        self.lost("its Ray actor was stopped")

    async def wait_gone(self) -> str:
        return await asyncio.shield(self._gone)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _resources(profile: PlacementProfile) -> str:
    memory = f", {profile.memory_bytes / _GIB:.1f} GiB of memory" if profile.memory_bytes else ""
    return f"{profile.cpus} CPU, {profile.gpus} GPU{memory}"


@dataclass(frozen=True)
class _Node:
    address: str
    cpus: float
    gpus: float
    memory: float

    def holds(self, profile: PlacementProfile) -> bool:
        return (
            self.cpus >= profile.cpus
            and self.gpus >= profile.gpus
            and (not profile.memory_bytes or self.memory >= profile.memory_bytes)
        )

    def __str__(self) -> str:
        return f"{self.address} ({self.cpus:g} CPU, {self.gpus:g} GPU, {self.memory / _GIB:.1f} GiB)"


class RayBackend:
    name = "ray"

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                "--backend ray needs Ray, which is not installed: pip install 'moorage[ray]' "
                "(the ray extra), or use --backend local."
            )
        self.settings = settings
        self.address = settings.ray_address
        self._environ = dict(environ)
        self._lock = asyncio.Lock()
        self._connected = False
        self._nodes: list[_Node] = []
        self._workers: set[RayWorker] = set()
        self._actor_class: Any = None
        self._scratch: Path | None = None  # a short temp dir of ours, when the data dir's path is too long
        # Ray's driver calls block (ray.init takes seconds): they run here, one at a time, off the loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ray")

    async def _blocking(self, function: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def start(self) -> None:
        async with self._lock:
            if self._connected:
                return
            where = f"join the Ray cluster at {self.address}" if self.address else "start a local Ray cluster"
            try:
                await self._blocking(self._connect)
                self._nodes = await self._blocking(_alive_nodes)
            except Exception as exc:
                raise InstanceStartError(f"The Ray backend could not {where}: {exc}") from exc
            self._connected = True
            log.info("Ray backend ready: %s", "; ".join(str(node) for node in self._nodes))

    def _connect(self) -> None:
        """In the executor thread: ray.init, either a private single-node cluster or a join."""
        if self.address is None:
            kwargs = self._private_cluster()
        else:
            if _is_loopback(self.address):
                # A cluster on this machine's loopback: without this Ray rewrites 127.0.0.1 to the
                # external interface and cannot reach it.
                os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            kwargs = {"address": self.address}
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray's C++ core would install its own SIGTERM handler in this process (and print a stack on
        # every stop); the server's loop owns its signals. Read by Ray at import, not passed on.
        inherited = os.environ.get("RAY_DISABLE_FAILURE_SIGNAL_HANDLER")
        os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"
        import ray

        if inherited is None:
            del os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"]
        else:
            os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = inherited

        # ray.init from this thread, not the main one: Ray then leaves SIGTERM to the server's handler.
        ray.init(namespace=_NAMESPACE, log_to_driver=False, **kwargs)
        self._actor_class = ray.remote(MoorageWorker)

    def _private_cluster(self) -> dict[str, Any]:
        # Every Ray process of a single-node cluster talks over loopback only; read by Ray at import.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        data_dir = self.settings.data_dir
        if "RAY_AUTH_MODE" not in os.environ:
            # Token authentication, with the token under the data dir instead of Ray's ~/.ray/auth_token.
            token_path = data_dir / "ray_auth_token"
            fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
        elif os.environ["RAY_AUTH_MODE"] != "token":
            log.warning(
                "RAY_AUTH_MODE=%s: the local Ray cluster runs without token authentication",
                os.environ["RAY_AUTH_MODE"],
            )
        temp_dir = data_dir / "ray"
        if len(str(temp_dir)) > _MAX_TEMP_DIR:
            self._scratch = Path(tempfile.mkdtemp(prefix="moorage-ray-"))
            temp_dir = self._scratch / "ray"
            log.info("the data dir's path is too long for Ray's sockets; Ray's temp dir is %s", temp_dir)
        temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _prune_sessions(temp_dir)
        os.environ["RAY_TMPDIR"] = str(temp_dir.parent)
        kwargs: dict[str, Any] = {
            "address": "local",  # never whatever RAY_ADDRESS points at
            "include_dashboard": False,
            "_temp_dir": str(temp_dir),
            "_node_ip_address": "127.0.0.1",
            "num_cpus": self.settings.ray.cpus or self.settings.cpu_count,
        }
        if self.settings.ray.memory_bytes:
            kwargs["_memory"] = self.settings.ray.memory_bytes
        return kwargs

    def capacity(self) -> PlacementProfile:
        """The largest node's CPUs, GPUs and memory (an instance's workers never span nodes' sizes)."""
        if not self._nodes:
            return PlacementProfile(cpus=self.settings.cpu_count, memory_bytes=None, gpus=0)
        return PlacementProfile(
            cpus=max(1, int(max(node.cpus for node in self._nodes))),
            memory_bytes=int(max(node.memory for node in self._nodes)) or None,
            gpus=int(max(node.gpus for node in self._nodes)),
        )

    async def spawn_worker(
        self, spec: WorkerSpec, profile: PlacementProfile, log_path: Path, *, cpu_share: float | None = None
    ) -> RayWorker:
        """An actor for `spec`. `cpu_share` (a multi-model endpoint's model) asks Ray for that fraction
        of a CPU and no memory instead of the whole profile: the models of one instance share its CPUs,
        and their memory is counted against its budget by the multi-model host."""
        await self.start()
        self._nodes = await self._blocking(_alive_nodes)
        if not any(node.holds(profile) for node in self._nodes):
            raise InstanceStartError(
                f"No node of the Ray cluster can hold a worker of this instance type: it needs "
                f"{_resources(profile)}, and the nodes are "
                + ("; ".join(str(node) for node in self._nodes) or "none")
                + "."
            )
        # Ray gives the actor its own GPU (CUDA_VISIBLE_DEVICES) and `profile.cpus` CPUs, and sets
        # OMP_NUM_THREADS to that number; torch's threads follow unless the model fixed them.
        spec = dataclasses.replace(
            spec,
            torch_threads=spec.torch_threads or profile.cpus,
            max_threads=profile.cpus,
            gpu_id=0 if profile.gpus else None,
            sandbox=self.settings.workers.sandbox != "off",
            sandbox_writable=list(self.settings.workers.sandbox_writable),
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "num_cpus": profile.cpus if cpu_share is None else cpu_share,
            "num_gpus": profile.gpus,
            "scheduling_strategy": "SPREAD",
            "max_restarts": 0,  # a replacement is the supervisor's decision, made like for local workers
            "max_task_retries": 0,
        }
        if profile.memory_bytes and cpu_share is None:
            options["memory"] = profile.memory_bytes
        actor = await self._blocking(
            lambda: self._actor_class.options(**options).remote(spec.to_json(), str(log_path))
        )
        worker = RayWorker(
            f"{spec.endpoint}/{spec.variant}/{spec.instance_id}/{spec.worker_index}",
            actor,
            self,
            profile,
            log_path,
        )
        self._workers.add(worker)
        return worker

    def forget(self, worker: RayWorker) -> None:
        self._workers.discard(worker)

    def kill_actor(self, actor: Any) -> None:
        import ray

        try:
            ray.kill(actor, no_restart=True)
        except Exception as exc:  # already dead, or the cluster is gone: either way it is not running
            log.debug("ray.kill: %s", exc)

    async def describe_free(self) -> str:
        import ray

        try:
            free: dict[str, float] = await self._blocking(ray.available_resources)
        except Exception as exc:
            return f"unknown ({exc})"
        memory = free.get("memory", 0.0) / _GIB
        return (
            f"{free.get('CPU', 0.0):g} CPU, {free.get('GPU', 0.0):g} GPU, {memory:.1f} GiB over the cluster"
        )

    async def close(self) -> None:
        for worker in list(self._workers):
            worker.kill("the server is stopping")
        # Queued behind a ray.init still running (a cancelled start): it ends whatever that started.
        await self._blocking(_shutdown)
        self._executor.shutdown(wait=True)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _alive_nodes() -> list[_Node]:
    import ray

    nodes = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        nodes.append(
            _Node(
                address=str(node.get("NodeManagerAddress", "?")),
                cpus=float(resources.get("CPU", 0.0)),
                gpus=float(resources.get("GPU", 0.0)),
                memory=float(resources.get("memory", 0.0)),
            )
        )
    return nodes


def _shutdown() -> None:
    if "ray" not in sys.modules:
        return  # never started: nothing to end, and no reason to import Ray now
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _prune_sessions(temp_dir: Path) -> None:
    """Keep the logs of the last few runs of the private cluster; Ray starts a new session dir each time."""
    sessions = sorted(
        (path for path in temp_dir.glob("session_2*") if path.is_dir() and not path.is_symlink()),
        key=lambda path: path.name,
    )
    for old in sessions[:-_SESSIONS_KEPT]:
        shutil.rmtree(old, ignore_errors=True)
