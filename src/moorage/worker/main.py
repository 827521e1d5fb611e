"""One worker process: load the model once, then answer requests until the server hangs up.

This is an ordinary blocking loop (STYLE habit 8): read a frame, run the handler chain, write the
reply. It never dies of a handler error (the pipeline turns every exception into an error reply); it
exits when the server closes the socket, and is killed from outside when it hangs or the server dies.

Run by the fork server (`worker/forkserver.py`) after a fork, or as `python -m moorage.worker.main`
when workers are spawned fresh. The steps between the frames (`configure_process`, `load`,
`Responder`) are also what a Ray actor runs (`backends/ray.py`): one worker, two ways to carry its bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import re
import resource
import select
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from moorage.streaming.frames import StreamCancel, StreamCredit, StreamMessage, StreamOpen
from moorage.streaming.parts import joined
from moorage.streaming.producer import LiveStream, open_stream, produce
from moorage.worker.lifetime import die_with_parent
from moorage.worker.memory import apply_serverless_memory
from moorage.worker.protocol import (
    REPLY_IN_FILE,
    REPLY_TOO_LARGE,
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

if TYPE_CHECKING:
    from moorage.handler.pipeline import Handler
    from moorage.sandbox import Confinement, SandboxStatus

__all__ = ["Channel", "Responder", "configure_process", "enter_sandbox", "load", "run"]

log = logging.getLogger("moorage.worker")

# What RFC 9110 does not allow in a field value: CR, LF and every other control character but HTAB.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Channel:
    """The worker's end of the socket: blocking frame reads and writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._frames: deque[bytes] = deque()
        # One reusable receive buffer: `sock.recv(n)` would allocate n bytes per call, and a large n
        # means an mmap and page faults on every request.
        self._chunk = bytearray(256 * 1024)
        self._view = memoryview(self._chunk)

    def receive(self) -> Message | StreamMessage | None:
        """The next message, or None when the server has closed the connection."""
        while not self._frames:
            count = self.sock.recv_into(self._view)
            if not count:
                return None
            self._buffer += self._view[:count]
            self._frames.extend(split_frames(self._buffer))
        return decode(self._frames.popleft())

    def send(self, message: Message) -> None:
        self.sock.sendall(b"".join(encode(message)))

    def send_frames(self, parts: list[bytes]) -> None:
        self.sock.sendall(b"".join(parts))

    def ready(self) -> bool:
        """Whether a message can be received without waiting (a streaming worker's poll for Cancel)."""
        return bool(self._frames) or bool(select.select([self.sock], [], [], 0)[0])


def configure_process(spec: WorkerSpec, *, hosted: bool = False) -> None:
    """Give user code the environment SageMaker's container gives it (spec must-match 13 and 14).

    `hosted`: the process belongs to another runtime (a Ray actor's worker process), which owns its
    signals and has already chosen its GPU (CUDA_VISIBLE_DEVICES); everything else is the same.
    """
    os.environ.update(spec.environment)
    if spec.gpu_id is not None and not hosted:
        # Set before CUDA initialises, so `torch.device("cuda")` in user code means this worker's GPU
        # (SageMaker's default handlers put every worker on GPU 0; we spread them).
        os.environ["CUDA_VISIBLE_DEVICES"] = str(spec.gpu_id)
    if spec.memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (spec.memory_limit_bytes, spec.memory_limit_bytes))
    apply_serverless_memory(spec.environment)  # a serverless variant's MemorySizeInMB (worker/memory.py)
    if not hosted:
        # The server owns shutdown: Ctrl+C in its terminal must not kill workers mid-request.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(spec.model_dir)
    front = [path for path in (spec.code_dir, spec.model_dir, spec.deps_dir) if path]
    sys.path[:0] = [path for path in front if path not in sys.path]
    level = int(spec.environment.get("SAGEMAKER_CONTAINER_LOG_LEVEL", logging.INFO))
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s [worker {spec.worker_index} pid {os.getpid()}] %(levelname)s %(name)s: "
        "%(message)s",
        force=True,
    )
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def enter_sandbox(
    spec: WorkerSpec, *, extra_write: Sequence[str] = (), ahead: Confinement | None = None
) -> SandboxStatus | None:
    """Confine this process before model code runs: read-only model tree and Python, one scratch dir.

    The scratch dir becomes HOME and TMPDIR. `extra_write`: what the hosting runtime itself must
    keep writing (a Ray actor's session dir). None when the sandbox is off (MOORAGE_SANDBOX=off).
    `ahead`: the common rules a spare worker built while it waited (worker/spare.py).
    """
    if not spec.sandbox:
        if ahead is not None:
            ahead.close()
        log.warning("sandbox: off (MOORAGE_SANDBOX=off): this worker can read and write what its uid can")
        return None
    from moorage.sandbox import SandboxPolicy, confine, system_read_paths

    scratch = spec.scratch_dir or tempfile.mkdtemp(prefix="moorage-worker-")
    os.environ["HOME"] = os.environ["TMPDIR"] = scratch
    tempfile.tempdir = None  # forked from a process that may have cached /tmp already
    model_tree = [path for path in (spec.model_dir, spec.code_dir, spec.deps_dir) if path]
    writable = (scratch, *spec.sandbox_writable, *extra_write)
    policy = SandboxPolicy(read_only=(*model_tree, *system_read_paths()), read_write=writable)
    status = confine(policy, ahead)
    if status.confined:
        log.info("sandbox: %s; writable: %s", status.describe(), ", ".join(writable))
    else:
        log.warning("sandbox: %s", status.describe())
    return status


def run(sock: socket.socket, spec: WorkerSpec, ahead: Confinement | None = None) -> int:
    """Load the model, report Ready (or LoadFailed), then serve; returns the process exit code."""
    configure_process(spec)
    channel = Channel(sock)
    try:
        enter_sandbox(spec, ahead=ahead)
    except OSError as exc:
        error = f"The worker sandbox could not be applied ({exc}); set MOORAGE_SANDBOX=off to run unconfined."
        log.error("%s", error)
        channel.send(LoadFailed(error=error, detail=traceback.format_exc()))
        return 1
    handler, outcome = load(spec)
    channel.send(outcome)
    if handler is None:
        return 1
    _serve(channel, Responder(handler, spec))
    return 0


def load(spec: WorkerSpec) -> tuple[Handler | None, Ready | LoadFailed]:
    """Import the handler and run model_fn; the loaded handler and Ready, or None and LoadFailed."""
    started = time.monotonic()
    try:
        import torch

        from moorage.handler.pipeline import Handler, HandlerOptions

        handler = Handler.load(
            model_dir=spec.model_dir_path,
            program=spec.program,
            options=HandlerOptions(
                default_accept=spec.default_accept,
                npy_allow_pickle=spec.npy_allow_pickle,
                tracebacks_in_errors=spec.tracebacks_in_errors,
                gpu_id=spec.gpu_id,
                batch_size=spec.batch_size,
            ),
        )
        torch.set_num_threads(max(1, spec.torch_threads or spec.max_threads))
    except BaseException as exc:  # model_fn may raise anything, SystemExit included
        detail = traceback.format_exc()
        log.error("model loading failed for %s/%s:\n%s", spec.endpoint, spec.variant, detail)
        return None, LoadFailed(error=f"{type(exc).__name__}: {exc}", detail=detail)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    load_seconds = time.monotonic() - started
    # The model and everything imported so far live as long as the worker: keep the cyclic garbage
    # collector from walking them again and again (full passes cost tens of ms of p99 latency).
    gc.collect()
    gc.freeze()
    log.info("model loaded in %.2f s for endpoint %s, variant %s", load_seconds, spec.endpoint, spec.variant)
    return handler, Ready(pid=os.getpid(), load_seconds=load_seconds, device=device)


def _serve(channel: Channel, responder: Responder) -> None:
    window = 0  # from a StreamOpen: the next Invoke may stream, `window` parts ahead (moorage.streaming)
    while True:
        message = channel.receive()
        if message is None:
            return
        if isinstance(message, Ping):
            channel.send(Pong(message.token))
            continue
        if isinstance(message, StreamOpen):
            window = message.window
            continue
        if isinstance(message, StreamCredit | StreamCancel):
            continue  # sent before the server read this worker's StreamEnd: the stream is over
        if not isinstance(message, Invoke):
            raise ProtocolError(f"worker cannot handle message kind {message.kind}")
        if window:
            message = dataclasses.replace(message, stream=True)
        batch = [message]
        while len(batch) < message.batch_size:
            more = channel.receive()
            if not isinstance(more, Invoke):
                raise ProtocolError("a batch was cut short")
            batch.append(more)
        for reply in responder.answer(batch):
            if isinstance(reply, LiveStream):
                produce(channel, reply, window)
            else:
                channel.send(reply)
        window = 0


class Responder:
    """Turns one request (or one batch) into its replies with the loaded handler; no I/O of its own."""

    def __init__(self, handler: Handler, spec: WorkerSpec) -> None:
        import torch

        self.handler = handler
        self.spec = spec
        self.threads = torch.get_num_threads()
        self.batching = spec.batch_size > 1

    def answer(self, batch: Sequence[Invoke]) -> list[Reply | LiveStream]:
        """One Reply per request; a LiveStream for a single request that may stream and whose handler
        yielded (its parts are joined into one body otherwise)."""
        import torch

        from moorage.handler.pipeline import HandlerRequest

        first = batch[0]
        if first.threads and first.threads != self.threads:
            torch.set_num_threads(first.threads)
            self.threads = first.threads
        requests = [
            HandlerRequest(
                body=item.body if item.body_file is None else _take_body_file(item.body_file),
                content_type=item.content_type,
                accept=item.accept,
                headers=item.headers,
                request_id=str(item.request_id),
            )
            for item in batch
        ]
        started = time.perf_counter()
        if self.batching:
            responses = self.handler.transform_batch(requests)
        else:
            responses = [self.handler.transform(requests[0])]
        model_us = int((time.perf_counter() - started) * 1e6)
        replies: list[Reply | LiveStream] = []
        for item, response in zip(batch, responses, strict=True):
            streams = response.parts is not None and item.stream and len(batch) == 1
            if response.parts is not None and not streams:
                response = joined(response, self.spec.max_response_bytes)
            if response.log:
                log.error(
                    "request %d failed with status %d:\n%s", item.request_id, response.status, response.log
                )
            over = min(item.reply_over, self.spec.max_response_bytes)  # a file answer has no cap
            to_file = item.reply_file if len(response.body) > over else None
            reply = _reply(item.request_id, response, self.spec, to_file)
            reply = dataclasses.replace(reply, model_us=model_us)
            if streams:
                replies.append(open_stream(reply, response, started, self.spec.max_response_bytes))
            else:
                replies.append(reply)
        return replies


def _take_body_file(path: str) -> bytes:
    """A large input the server left in a file (input_fn takes bytes, so it is read whole here, in the
    worker, never in the server); the file is removed once read."""
    with open(path, "rb") as handle:
        body = handle.read()
    os.unlink(path)
    return body


def _reply(request_id: int, response: object, spec: WorkerSpec, reply_file: str | None = None) -> Reply:
    """`reply_file`: write the body there instead (an async answer, which has no response cap)."""
    from moorage.handler.pipeline import HandlerResponse

    assert isinstance(response, HandlerResponse)
    if reply_file is None and len(response.body) > spec.max_response_bytes:
        log.error(
            "request %d: the handler returned %d bytes, over the %d-byte response limit",
            request_id,
            len(response.body),
            spec.max_response_bytes,
        )
        return Reply(request_id, 500, b"", None, "Response too large", (), REPLY_TOO_LARGE)
    unsafe = [
        value
        for value in (response.content_type, *(v for _, v in response.headers))
        if value and _CONTROL.search(value)
    ]
    if unsafe:
        message = (
            f"The handler returned a header value with CR, LF or another control character, which HTTP "
            f"forbids: {unsafe[0]!r}"
        )
        log.error("request %d: %s", request_id, message)
        return Reply(request_id, 500, message.encode(), None, message)
    if reply_file is not None:
        try:
            with open(reply_file, "wb") as handle:
                handle.write(response.body)
        except OSError as exc:
            message = (
                f"The answer ({len(response.body)} bytes) could not be written to the worker's scratch "
                f"dir: {exc}"
            )
            log.error("request %d: %s", request_id, message)
            return Reply(request_id, 500, message.encode(), None, message)
        return Reply(
            request_id,
            response.status,
            b"",
            response.content_type,
            response.reason,
            response.headers,
            REPLY_IN_FILE,
        )
    return Reply(
        request_id, response.status, response.body, response.content_type, response.reason, response.headers
    )


def main() -> int:
    """Entry point when spawned fresh: `python -m moorage.worker.main --fd N --spec JSON`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args()
    die_with_parent(args.parent_pid)
    sock = socket.socket(fileno=args.fd)
    return run(sock, WorkerSpec.from_json(args.spec))


if __name__ == "__main__":
    sys.exit(main())
