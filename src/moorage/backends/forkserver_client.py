"""The server's side of the workers' fork server (worker/forkserver.py).

Split out of `backends/local.py`, which keeps the workers themselves: this module only starts the
fork server, asks it over a SOCK_SEQPACKET socketpair for workers (passing each worker's socket and
log file descriptors along), and hears about their exits. The fork server pre-imports torch once, so
a worker starts in milliseconds instead of seconds; when it dies, its workers die with it and a new
one starts on the next spawn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from moorage.worker.protocol import WorkerSpec

__all__ = ["ForkServer"]

# The local backend's logger: fork-server lines belong with the workers' own.
log = logging.getLogger("moorage.backends.local")


class ForkServer:
    """The server's side of worker/forkserver.py: start it, ask it for workers, hear about exits."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.preload = list(preload)
        self.env = dict(env)
        self.log_path = log_path
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._spawns: dict[int, asyncio.Future[int]] = {}
        self._exits: dict[int, Callable[[int], None]] = {}
        self._token = 0
        self._lock = asyncio.Lock()

    def launch(self) -> None:
        """Start the fork server's process now; callable before any event loop runs.

        `moorage serve` and `serve-model` call it first thing, so that importing torch (seconds) overlaps
        with their own imports and start-up instead of following them. A no-op once started.
        """
        if self._sock is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moorage.worker.forkserver",
                    "--fd",
                    str(theirs.fileno()),
                    "--parent-pid",
                    str(os.getpid()),
                    "--preload",
                    ",".join(self.preload),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=self.env,
            )
        theirs.close()
        ours.setblocking(False)
        self._sock = ours
        log.info("fork server started (pid %d), preloading %s", self._process.pid, ", ".join(self.preload))

    async def ensure_started(self) -> None:
        async with self._lock:
            if self._ready is None:
                self.launch()
                assert self._sock is not None
                loop = asyncio.get_running_loop()
                self._ready = loop.create_future()
                loop.add_reader(self._sock.fileno(), self._on_readable)  # a "ready" already sent is kept
        assert self._ready is not None
        await asyncio.shield(self._ready)

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._sock, 1 << 16, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                os.close(fd)
            if not data:
                self._on_lost()
                return
            self._on_message(json.loads(data))

    def _on_message(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready" and self._ready is not None and not self._ready.done():
            log.info("fork server ready after %.2f s of preloading", message["preload_seconds"])
            self._ready.set_result(None)
        elif op == "spawned":
            future = self._spawns.pop(message["token"], None)
            if future is not None and not future.done():
                future.set_result(int(message["pid"]))
        elif op == "exited":
            listener = self._exits.pop(int(message["pid"]), None)
            if listener is not None:
                listener(int(message["returncode"]))

    def _on_lost(self) -> None:
        """The fork server died; its workers die with it. A new one starts on the next spawn."""
        sock, self._sock = self._sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        error = RuntimeError("the worker fork server exited")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        for future in self._spawns.values():
            if not future.done():
                future.set_exception(error)
        self._spawns.clear()
        self._exits.clear()
        self._ready = None
        if self._process is not None:  # reap it (it is exiting) without blocking the loop
            asyncio.get_running_loop().run_in_executor(None, self._process.wait)
        log.warning("the worker fork server exited; it will be restarted on the next worker start")

    async def spawn(
        self, spec: WorkerSpec | None, worker_sock: socket.socket, log_fd: int, on_exit: Callable[[int], None]
    ) -> int:
        """Fork a worker for `spec`; with None, a spare that waits for its spec (worker/spare.py)."""
        await self.ensure_started()
        assert self._sock is not None
        self._token += 1
        token = self._token
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._spawns[token] = future
        order = {"op": "spare"} if spec is None else {"op": "spawn", "spec": spec.to_json()}
        request = json.dumps({**order, "token": token}).encode()
        socket.send_fds(self._sock, [request], [worker_sock.fileno(), log_fd])
        pid = await asyncio.wait_for(future, 30)
        self._exits[pid] = on_exit
        return pid

    async def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()  # EOF: the fork server returns; its workers die with it
        if self._process is not None:
            await asyncio.get_running_loop().run_in_executor(None, _wait_or_kill, self._process, 5.0)
        self._ready = None


def _wait_or_kill(process: subprocess.Popen[bytes], grace_s: float) -> None:
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
