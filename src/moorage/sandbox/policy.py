"""What a confined process may touch, and `confine`, which makes the kernel enforce it.

`confine` runs in the child before any model code is imported (a forked worker, a fresh worker, a
Ray actor, pip): no_new_privs, every capability dropped when the process is uid 0, then Landlock.
Everything not granted here fails with EACCES: the data dir (state, credentials, the S3 store,
other models' trees, the pip and artifact caches), the server's /proc entries (Landlock's ptrace
rule and the server being non-dumpable), and signals or abstract sockets outside the sandbox.
"""

from __future__ import annotations

import functools
import glob
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from moorage.sandbox import _capabilities, _landlock

__all__ = ["Confinement", "SandboxPolicy", "SandboxStatus", "confine", "system_read_paths"]

# Read-only for every confined process: the system's programs and libraries, /proc and /sys (torch
# reads CPU topology; another process's environ or memory still needs ptrace access, which Landlock
# denies outside the sandbox). /etc is granted entry by entry (`_world_readable`), and /dev only
# device by device: a uid-0 worker must not read /etc/shadow, SSH host keys or a raw disk.
_SYSTEM_READ = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/proc", "/sys")
# Devices a process may open for writing: the usual character devices, shared memory (torch's
# DataLoader, multiprocessing), and GPUs (CUDA opens these read-write and issues ioctls).
_DEVICE_WRITE = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/shm")
_GPU_DEVICES = ("/dev/nvidia*", "/dev/dri")


@dataclass(frozen=True)
class SandboxPolicy:
    """Paths a confined process may read (and execute), and paths it may also write."""

    read_only: tuple[str, ...]
    read_write: tuple[str, ...] = ()
    # Read-write with device ioctls (GPUs); granted only where such devices exist.
    devices: tuple[str, ...] = field(default_factory=lambda: _device_paths())


@dataclass(frozen=True)
class SandboxStatus:
    """What `confine` achieved, for the worker's log and for a process that reports it."""

    landlock_abi: int
    capabilities_dropped: bool
    skipped_paths: tuple[str, ...] = ()

    @property
    def confined(self) -> bool:
        return self.landlock_abi > 0

    def describe(self) -> str:
        if not self.confined:
            return "NOT confined: the kernel offers no Landlock, so this process can read what its uid can"
        caps = ", every capability dropped" if self.capabilities_dropped else ""
        return f"confined by Landlock ABI {self.landlock_abi} (uid {os.getuid()}{caps})"


def _device_paths() -> tuple[str, ...]:
    found: list[str] = []
    for pattern in _GPU_DEVICES:
        found.extend(glob.glob(pattern))
    return tuple(found)


def _python_paths() -> list[str]:
    """Where this interpreter, its standard library and every importable package live."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    paths.update(entry for entry in sys.path if entry and os.path.exists(entry))
    return sorted(paths)


@functools.cache
def _world_readable(root: str) -> tuple[str, ...]:
    """The fewest paths covering what any user may read under `root` (TLS certs, resolv.conf, hosts).

    Landlock only grants, so a directory holding one private file (/etc/ssh and its host keys) is
    granted child by child. Cached: the fork server computes it once, before it forks workers.
    """
    try:
        mode = os.lstat(root).st_mode
    except OSError:
        return ()
    if stat.S_ISLNK(mode):
        return ()  # followed through its target, which is granted on its own merits
    if not stat.S_ISDIR(mode):
        return (root,) if mode & stat.S_IROTH else ()
    if mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
        return ()
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return ()
    children = [os.path.join(root, name) for name in names]
    granted = [path for child in children for path in _world_readable(child)]
    whole = all(path in granted or os.path.islink(path) for path in children)
    return (root,) if whole else tuple(granted)


def _resolved_etc_links() -> list[str]:
    """Targets of /etc links that point outside the read-only tree (resolv.conf → /run/...)."""
    targets = []
    for name in ("/etc/resolv.conf", "/etc/hosts", "/etc/localtime", "/etc/ssl/certs"):
        real = os.path.realpath(name)
        if real != name and os.path.exists(real):
            targets.append(real)
    return targets


def system_read_paths() -> tuple[str, ...]:
    """Read-only paths every confined process needs: the system, Python and its packages."""
    return tuple([*_SYSTEM_READ, *_world_readable("/etc"), *_python_paths(), *_resolved_etc_links()])


def _device_rules(abi: int) -> Iterable[tuple[str, int]]:
    everything = _landlock.handled_rights(abi)
    write_file = _landlock.READ | _landlock.WRITE_FILE | _landlock.TRUNCATE
    for path in _DEVICE_WRITE:
        yield path, everything & ~_landlock.IOCTL_DEV if path == "/dev/shm" else write_file


def _rules(policy: SandboxPolicy, abi: int) -> Iterable[tuple[str, int]]:
    everything = _landlock.handled_rights(abi)
    write_file = _landlock.READ | _landlock.WRITE_FILE | _landlock.TRUNCATE
    for path in policy.read_only:
        yield path, _landlock.READ
    yield from _device_rules(abi)
    for path in policy.devices:
        yield path, write_file | _landlock.IOCTL_DEV
    for path in policy.read_write:
        yield path, everything


class Confinement:
    """A Landlock ruleset built ahead of time with the rules every worker gets (the system's read-only
    paths, the usual devices); it restricts nothing until `confine` adds one process's own paths and
    applies it. A spare worker (worker/spare.py) builds it while it waits for a model, so that its
    model's load does not pay for ~170 rules; what it then enforces is the ruleset `confine` builds in
    one go for the same policy (a rule `confine` would add is skipped only when it is here already).
    """

    def __init__(self) -> None:
        self.abi = _landlock.abi_version()
        self.ruleset = _landlock.Ruleset(self.abi) if self.abi > 0 else None
        self.covered: set[tuple[str, int]] = set()
        if self.ruleset is not None:
            common = [*((path, _landlock.READ) for path in system_read_paths()), *_device_rules(self.abi)]
            self.ruleset.add(common)
            self.covered.update(common)

    def close(self) -> None:
        if self.ruleset is not None:
            self.ruleset.close()


def confine(policy: SandboxPolicy, ahead: Confinement | None = None) -> SandboxStatus:
    """Confine the calling thread and its future children to `policy`; irreversible.

    Call it before model code runs, in a process with a single thread (a forked child, a fresh
    interpreter): Landlock binds the calling thread and what it starts. Raises OSError when the
    kernel offers Landlock but refuses the ruleset (never run unconfined after asking). `ahead`: the
    common rules already built in this process (Confinement); it is used up.
    """
    _capabilities.no_new_privs()
    dropped = False
    if os.geteuid() == 0:
        _capabilities.drop_all()
        dropped = True
    abi = _landlock.abi_version()
    skipped: list[str] = []
    if abi > 0 and ahead is not None and ahead.ruleset is not None and ahead.abi == abi:
        try:
            ahead.ruleset.add(rule for rule in _rules(policy, abi) if rule not in ahead.covered)
            ahead.ruleset.restrict_self()
        finally:
            ahead.close()
        skipped = ahead.ruleset.skipped
    elif abi > 0:
        skipped = _landlock.restrict_self(abi, _rules(policy, abi))
    if ahead is not None:
        ahead.close()
    return SandboxStatus(landlock_abi=abi, capabilities_dropped=dropped, skipped_paths=tuple(skipped))
