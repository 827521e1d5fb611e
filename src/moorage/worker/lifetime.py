"""Tie a child process's life to its parent's, so that no worker outlives the server.

Linux delivers a chosen signal to a process when its parent dies (`PR_SET_PDEATHSIG`). The fork
server and every worker set it to SIGKILL, so `kill -9` of the server takes the fork server with it,
and that takes the workers. Elsewhere (macOS) the socket EOF still ends workers: they exit when the
server's end of their connection closes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int) -> None:
    """Ask for SIGKILL when the parent dies; exit now if it already has (the race after fork)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != expected_parent:
        os._exit(0)
