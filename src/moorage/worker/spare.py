"""A spare worker: forked from the fork server before anyone knows which model it will serve.

A multi-model instance keeps one or more spares ready (multimodel/host.py), so that a model's first call
does not wait for a fork and a worker's start-up. A spare has run only moorage's own start-up code
(the same a worker runs before its spec is read: the fork server's preloaded modules, the death signal,
its log); it has been given no model, no model directory and no environment. It blocks on its socket
until the server sends one WorkerSpec, exactly once, and then goes on as any worker does
(`worker.main.run`: environment, sandbox, then the model's code), so it is confined to that model's tree
before a line of the model runs, as a worker forked with its spec is. While it waits it builds the
sandbox's common rules (sandbox.Confinement: the system's read-only paths and the usual devices, the
same for every worker) into a ruleset that restricts nothing yet; its model's own paths are added and
the ruleset applied when the spec arrives, so the load does not pay for building it. A spare whose
socket closes before a spec arrives exits without doing anything.

    server → spare   4-byte big-endian length, then the WorkerSpec's JSON; then the worker protocol
"""

from __future__ import annotations

import socket
from collections.abc import Callable

__all__ = ["Spare", "receive_spec", "send_spec"]

_MAX_SPEC_BYTES = 16 << 20


def send_spec(sock: socket.socket, spec_json: str) -> None:
    data = spec_json.encode()
    sock.sendall(len(data).to_bytes(4, "big") + data)


def receive_spec(sock: socket.socket) -> str | None:
    """The spec the server assigned to this spare; None when the server closed it unassigned."""
    header = _receive_exactly(sock, 4)
    if header is None:
        return None
    size = int.from_bytes(header, "big")
    if size > _MAX_SPEC_BYTES:
        return None
    data = _receive_exactly(sock, size)
    return None if data is None else data.decode()


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


class Spare:
    """The server's handle on a spare: its socket end, its pid, and how it ended if it did."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pid = 0
        self.exit_code: int | None = None
        self._listener: Callable[[int], None] | None = None

    @property
    def alive(self) -> bool:
        return self.pid > 0 and self.exit_code is None and self.sock.fileno() >= 0

    def exited(self, code: int) -> None:
        """The fork server's exit report for this pid, passed on to the worker it became, if any."""
        self.exit_code = code
        if self._listener is not None:
            self._listener(code)

    def claim(self, spec_json: str, on_exit: Callable[[int], None]) -> socket.socket:
        """Give the spare its model: send the spec; from now on its exit is the worker's exit."""
        self._listener = on_exit
        if self.exit_code is not None:
            on_exit(self.exit_code)
        send_spec(self.sock, spec_json)
        return self.sock

    def discard(self) -> None:
        """Close an unassigned spare's socket: it reads EOF and exits."""
        self.sock.close()
