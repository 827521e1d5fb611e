"""Landlock through its three system calls (ctypes; no library needed): probe, then restrict self.

Landlock lets an unprivileged process give up file access for itself and its future children: a
ruleset names the access rights it handles, rules grant some of them beneath chosen paths, and
`landlock_restrict_self` makes every other handled access fail with EACCES, for good. ABI versions
add rights (2: rename across dirs, 3: truncate, 5: device ioctls) and scopes (6: signals and
abstract unix sockets), so the ruleset is built for the version the running kernel reports.
Network rights (ABI 4) are deliberately not handled: workers keep the network (docs/security.md).
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
from collections.abc import Iterable
from typing import Final

__all__ = ["LandlockError", "Ruleset", "abi_version", "restrict_self"]

# Syscall numbers are the same on x86_64 and aarch64 (they were added after the tables unified).
_SYS_CREATE_RULESET: Final = 444
_SYS_ADD_RULE: Final = 445
_SYS_RESTRICT_SELF: Final = 446
_CREATE_RULESET_VERSION: Final = 1 << 0
_RULE_PATH_BENEATH: Final = 1

EXECUTE: Final = 1 << 0
WRITE_FILE: Final = 1 << 1
READ_FILE: Final = 1 << 2
READ_DIR: Final = 1 << 3
_ABI1_ALL: Final = (1 << 13) - 1  # execute … make_sym
REFER: Final = 1 << 13  # ABI 2
TRUNCATE: Final = 1 << 14  # ABI 3
IOCTL_DEV: Final = 1 << 15  # ABI 5
# The only rights a rule on a non-directory may carry.
_FILE_RIGHTS: Final = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0  # ABI 6
SCOPE_SIGNAL: Final = 1 << 1  # ABI 6

READ: Final = EXECUTE | READ_FILE | READ_DIR

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class LandlockError(OSError):
    """The kernel refused a Landlock call; the worker must not run unconfined after asking for it."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in <linux/landlock.h>
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The Landlock ABI the kernel offers; 0 when it has none (old kernel, LSM off, not Linux)."""
    if platform.system() != "Linux":
        return 0
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(version))


def handled_rights(abi: int) -> int:
    """Every filesystem right this ABI knows: all of them are denied unless a rule grants them."""
    rights = _ABI1_ALL
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise LandlockError(errno, f"{what}: {os.strerror(errno)}")
    return result


def restrict_self(abi: int, rules: Iterable[tuple[str, int]]) -> list[str]:
    """Confine this thread (and every child it starts) to `rules`: (path, rights) pairs.

    Rights outside the ABI are dropped; missing paths are skipped and returned, so the caller can
    log them. no_new_privs (or CAP_SYS_ADMIN) must already be set.
    """
    ruleset = Ruleset(abi)
    try:
        ruleset.add(rules)
        ruleset.restrict_self()
    finally:
        ruleset.close()
    return ruleset.skipped


class Ruleset:
    """A Landlock ruleset being built: it restricts nothing until restrict_self().

    Built in two steps by a spare worker (worker/spare.py): the rules every worker has, while it waits
    for a model; then its model's own rules and restrict_self(), before the model's code runs. The
    result is the same single ruleset a worker forked with its spec builds in one go.
    """

    def __init__(self, abi: int) -> None:
        self.handled = handled_rights(abi)
        attr = _RulesetAttr(handled_access_fs=self.handled, handled_access_net=0, scoped=0)
        size = 8  # handled_access_fs only (ABI 1–3)
        if abi >= 4:
            size = 16
        if abi >= 6:
            attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            size = 24
        self.fd = _check(
            _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
            "landlock_create_ruleset",
        )
        self.skipped: list[str] = []  # paths that did not exist

    def add(self, rules: Iterable[tuple[str, int]]) -> None:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                self.skipped.append(path)
                continue
            try:
                allowed = rights & self.handled
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    allowed &= _FILE_RIGHTS
                beneath = _PathBeneathAttr(allowed_access=allowed, parent_fd=fd)
                _check(
                    _libc.syscall(
                        _SYS_ADD_RULE, self.fd, _RULE_PATH_BENEATH, ctypes.byref(beneath), ctypes.c_uint32(0)
                    ),
                    f"landlock_add_rule({path})",
                )
            finally:
                os.close(fd)

    def restrict_self(self) -> None:
        _check(_libc.syscall(_SYS_RESTRICT_SELF, self.fd, ctypes.c_uint32(0)), "landlock_restrict_self")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
