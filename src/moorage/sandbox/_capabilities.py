"""no_new_privs and dropping every capability, through prctl/capset (ctypes).

A worker of a root server stays uid 0 (docs/security.md says why), so what root may do beyond
file ownership must go: the bounding set (no execve regains anything), the ambient set, and the
effective, permitted and inheritable sets. Without CAP_SYS_PTRACE, CAP_DAC_OVERRIDE or CAP_KILL, uid
0 reads and signals like any other user, and Landlock decides the files.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

__all__ = ["drop_all", "no_new_privs", "set_dumpable"]

_PR_SET_DUMPABLE: Final = 4
_PR_CAPBSET_DROP: Final = 24
_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_CAP_AMBIENT: Final = 47
_PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
_CAPABILITY_VERSION_3: Final = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _prctl(option: int, arg: int, what: str) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def set_dumpable(dumpable: bool) -> None:
    """PR_SET_DUMPABLE: 0 makes /proc/<pid>/environ, mem and ptrace need CAP_SYS_PTRACE, even for uid 0."""
    _prctl(_PR_SET_DUMPABLE, int(dumpable), "prctl(PR_SET_DUMPABLE)")


def no_new_privs() -> None:
    """No execve may grant privileges (setuid bits, file capabilities); Landlock requires it."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 40  # CAP_CHECKPOINT_RESTORE, the last one as of Linux 5.9


def drop_all() -> None:
    """Drop every capability from every set of this thread (and so of its children)."""
    for cap in range(_last_cap() + 1):
        try:
            _prctl(_PR_CAPBSET_DROP, cap, "prctl(PR_CAPBSET_DROP)")
        except OSError as exc:
            if exc.errno != 22:  # EINVAL: a capability this kernel does not know
                raise
    try:
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, "prctl(PR_CAP_AMBIENT)")
    except OSError as exc:
        if exc.errno != 22:  # kernels before 4.3 have no ambient set
            raise
    header = _CapHeader(version=_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"capset: {os.strerror(errno)}")
