"""The fork server: a clean process that imports torch once and forks a worker on request.

Importing torch and torchvision costs about 4 s here (torchvision pulls in torch._dynamo). Paying it
once, in a process that has done nothing else, lets every new worker start with those modules
already loaded and share their memory pages with its siblings (copy-on-write), so N instances do not
pay N times for imports (issue: "fast start").

It must stay fork-safe: single-threaded, no torch operation that starts OpenMP's thread pool, no
CUDA initialisation. It talks to the server over a SOCK_SEQPACKET socket: one JSON object per
message, with the worker's socket and log file passed as file descriptors (SCM_RIGHTS).

    server → fork server   {"op": "spawn", "token": n, "spec": <WorkerSpec JSON>}  + fds [ipc, log]
                           {"op": "spare", "token": n}  + fds [ipc, log]   (the spec comes later over
                           ipc, from the server itself: worker/spare.py)
    fork server → server   {"op": "ready", "pid": p, "preload_seconds": s}
                           {"op": "spawned", "token": n, "pid": p}
                           {"op": "exited", "pid": p, "returncode": rc}   (rc < 0: killed by signal -rc)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Any

from moorage.sandbox import Confinement, harden_server, system_read_paths
from moorage.worker.lifetime import die_with_parent
from moorage.worker.pageout import page_out_libraries
from moorage.worker.protocol import WorkerSpec
from moorage.worker.spare import receive_spec

__all__ = ["main"]


def _send(ctl: socket.socket, message: dict[str, Any]) -> None:
    ctl.send(json.dumps(message).encode())


def _preload(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional module that is not installed is not an error
            print(f"fork server: could not preload {name}: {exc}", file=sys.stderr, flush=True)


def _run_child(
    spec_json: str | None, worker_fd: int, log_fd: int, ctl: socket.socket, wake_fds: tuple[int, int]
) -> None:
    """In the forked child: become a worker (a spare, with no spec: wait for one first). Never returns."""
    code = 1
    try:
        ctl.close()
        for fd in wake_fds:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        die_with_parent(os.getppid())
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        _reseed()
        from moorage.worker.main import run

        sock = socket.socket(fileno=worker_fd)
        ahead = None
        if spec_json is None:  # a spare: build the rules every worker gets while no model is known
            ahead = _confinement_ahead()
            spec_json = receive_spec(sock)
            if spec_json is None:  # discarded before it was given a model
                code = 0
                return
        code = run(sock, WorkerSpec.from_json(spec_json), ahead)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _confinement_ahead() -> Confinement | None:
    """The sandbox's common rules, built ahead (sandbox.Confinement); None where that fails, and the
    worker then builds its whole ruleset when it is given its model (and fails there if it must)."""
    try:
        return Confinement()
    except OSError as exc:
        print(f"spare worker: could not build the sandbox's rules ahead: {exc}", file=sys.stderr, flush=True)
        return None


def _reseed() -> None:
    """Give each worker its own random state; forked children would otherwise share the parent's."""
    if "numpy" in sys.modules:
        import numpy

        numpy.random.seed()
    if "torch" in sys.modules:
        import torch

        torch.seed()


def _reap(ctl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctl, {"op": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})


def serve(ctl: socket.socket, preload: list[str]) -> None:
    started = time.monotonic()
    _preload(preload)
    # Every child runs the worker loop: import it once here (about 25 ms), not after each fork.
    importlib.import_module("moorage.worker.main")
    # Workers confine themselves after the fork (worker/main.enter_sandbox); the paths every one of
    # them may read are listed once here, before forking, so they do not each walk /etc again.
    system_read_paths()
    gc.collect()
    gc.freeze()  # keep the collector from touching (and so copying) the preloaded objects in children
    page_out_libraries()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    sys.stdout.flush()
    sys.stderr.flush()
    _send(ctl, {"op": "ready", "pid": os.getpid(), "preload_seconds": time.monotonic() - started})
    while True:
        try:
            readable, _, _ = select.select([ctl.fileno(), wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(ctl)
        if ctl.fileno() not in readable:
            continue
        data, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 4)
        if not data:
            return  # the server is gone; the workers follow through their own death signal
        request = json.loads(data)
        if request.get("op") not in ("spawn", "spare") or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        worker_fd, log_fd = fds
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request.get("spec"), worker_fd, log_fd, ctl, (wake_read, wake_write))
        os.close(worker_fd)
        os.close(log_fd)
        _send(ctl, {"op": "spawned", "token": request["token"], "pid": pid})


def main() -> int:
    parser = argparse.ArgumentParser(description="moorage's worker fork server (started by the server)")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--preload", default="")
    args = parser.parse_args()
    die_with_parent(args.parent_pid)
    harden_server()  # workers (its children, confined) must not read or ptrace it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server owns shutdown
    ctl = socket.socket(fileno=args.fd)
    serve(ctl, [name for name in args.preload.split(",") if name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
