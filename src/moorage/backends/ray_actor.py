"""The Ray actor class: one moorage worker hosted in a Ray worker process, on whichever node Ray chose.

Split out of `backends/ray.py`, which keeps the server's side (the handle and the backend). This
module is what runs on the node: it loads the model exactly as a local worker does (`worker/main.py`),
with the same environment hygiene and sandbox, and answers the socket protocol's frames one method call
at a time, so that Ray moves bytes and nothing of ours is pickled.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from moorage.multimodel.memory import private_bytes
from moorage.streaming.producer import ActorStreams
from moorage.worker.protocol import (
    Invoke,
    LoadFailed,
    Ping,
    Pong,
    ProtocolError,
    WorkerSpec,
    decode,
    encode,
    split_frames,
)

__all__ = ["MoorageWorker", "frame_messages"]


def frame_messages(data: bytes) -> list[Any]:
    buffer = bytearray(data)
    messages = [decode(frame) for frame in split_frames(buffer)]
    if buffer:
        raise ProtocolError("the reply ends inside a frame")
    return messages


class MoorageWorker:
    """One worker, hosted in a Ray actor; the methods are the socket protocol, one call per exchange."""

    def __init__(self, spec_json: str, log_path: str) -> None:
        self._spec = WorkerSpec.from_json(spec_json)
        self._log_path = log_path
        self._responder: Any = None
        self._sandboxed_thread: int | None = None
        self._streams = ActorStreams()

    def where(self) -> str:
        """Answered as soon as Ray has placed the actor: which node and process it runs in."""
        import ray

        node: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return json.dumps(
            {"pid": os.getpid(), "node": node, "node_id": ray.get_runtime_context().get_node_id()}
        )

    def private_bytes(self) -> int:
        """The memory only this actor's process holds, read here on its own node (a multi-model host
        counts it against the instance's budget; the server cannot read another machine's /proc)."""
        return private_bytes(os.getpid())

    def start(self) -> bytes:
        """Load the model exactly as a local worker does; returns a Ready or LoadFailed frame."""
        from moorage.backends.local import worker_environment
        from moorage.worker.main import Responder, configure_process, enter_sandbox, load

        self._attach_log()
        if not os.path.isdir(self._spec.model_dir):
            import ray

            node = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            missing = LoadFailed(
                error=f"The model directory {self._spec.model_dir} is not on Ray node {node}: every node "
                "must see moorage's data dir at the same path (a shared filesystem; docs/ray.md).",
                detail="",
            )
            return b"".join(encode(missing))
        # The same hygiene as a local worker: no server secrets or MOORAGE_* settings reach user code.
        clean = worker_environment(os.environ)
        os.environ.clear()
        os.environ.update(clean)
        configure_process(self._spec, hosted=True)
        try:
            # Ray's session dir (its sockets, logs and spilled objects) stays writable to the actor.
            status = enter_sandbox(self._spec, extra_write=_ray_session_dirs())
        except OSError as exc:
            failed = LoadFailed(error=f"The worker sandbox could not be applied ({exc}).", detail="")
            return b"".join(encode(failed))
        if status is not None and status.confined:
            # Landlock (ABI < 8) binds the calling thread only: model code must never run on another.
            self._sandboxed_thread = threading.get_ident()
        handler, outcome = load(self._spec)
        if handler is not None:
            self._responder = Responder(handler, self._spec)
        return b"".join(encode(outcome))

    def handle(self, frames: bytes) -> bytes:
        """A Ping, or one request (or batch) as Invoke frames; returns the Pong or the Reply frames
        (a StreamHead when a request opened with StreamOpen streams: `pull` gets its parts)."""
        messages = self._streams.opened(frame_messages(frames))
        if len(messages) == 1 and isinstance(messages[0], Ping):
            return b"".join(encode(Pong(messages[0].token)))
        if self._responder is None or not all(isinstance(message, Invoke) for message in messages):
            raise ProtocolError("the worker takes Ping or Invoke frames, once its model has loaded")
        self._check_thread()
        return self._streams.answers(self._responder.answer(messages))

    def pull(self, request_id: int) -> bytes:
        """The next StreamPart (or the StreamEnd) of a streaming request: runs the handler's generator."""
        self._check_thread()
        return self._streams.pull(request_id)

    def cancel(self, request_id: int) -> bytes:
        """Close a streaming request's generator (the client left); returns its StreamEnd."""
        self._check_thread()
        return self._streams.cancel(request_id)

    def _check_thread(self) -> None:
        if self._sandboxed_thread not in (None, threading.get_ident()):
            raise ProtocolError("Ray ran a request outside the actor's sandboxed thread; refusing it")

    def _attach_log(self) -> None:
        """Send stdout and stderr to the instance's log file when this node can see it."""
        if not os.path.isdir(os.path.dirname(self._log_path)):
            return  # another machine without the server's filesystem: Ray's worker logs keep the output
        fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def _ray_session_dirs() -> tuple[str, ...]:
    """This Ray worker's session dir (under RAY_TMPDIR), which Ray itself writes to from the actor."""
    import ray

    try:
        node: Any = ray._private.worker.global_worker.node
    except AttributeError:  # a Ray whose private layout moved: the actor keeps its scratch dir only
        return ()
    return (str(node.get_session_dir_path()),) if node is not None else ()
