"""What the kernel offers for confining workers, said once at start: in the log, the banner and
/_moorage/info. Never claims isolation that is not there (issue 11, item 1)."""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any, Final

from moorage.errors import ConfigError
from moorage.sandbox import _capabilities, _landlock

__all__ = ["at_start", "banner_line", "harden_server", "probe"]

_PR_GET_DUMPABLE: Final = 3


def harden_server() -> None:
    """Make this process (the server, the fork server) non-dumpable.

    A non-dumpable process's /proc/<pid>/environ, mem and maps, and ptrace, need CAP_SYS_PTRACE,
    which confined workers do not have even as uid 0; Landlock's ptrace rule refuses them too.
    """
    _capabilities.set_dumpable(False)


def _dumpable() -> bool:
    return bool(ctypes.CDLL(None).prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def probe(mode: str, backend: str = "local", writable: tuple[str, ...] = ()) -> dict[str, Any]:
    """The sandbox as deployed models get it, as JSON-able data (`"sandbox"` in /_moorage/info).

    `mode`: MOORAGE_SANDBOX (auto, require, off); `backend`: where workers run (local, ray);
    `writable`: MOORAGE_SANDBOX_WRITABLE.
    """
    abi = _landlock.abi_version()
    root = os.geteuid() == 0
    confined = mode != "off" and abi > 0
    exposed: list[str] = ["network: workers may open any connection, loopback included"]
    if mode == "off":
        exposed.insert(0, "files: MOORAGE_SANDBOX=off, workers can read and write what the server's uid can")
    elif abi == 0:
        exposed.insert(
            0, "files: the kernel offers no Landlock, workers can read and write what the server's uid can"
        )
    elif abi < 6:
        exposed.append(
            f"signals: Landlock ABI {abi} has no signal scoping, workers may signal the server's uid"
        )
    if confined and writable:
        exposed.append(f"writable by every worker (MOORAGE_SANDBOX_WRITABLE): {', '.join(writable)}")
    if confined and backend == "ray":
        exposed.append(
            "ray: Landlock binds the actor's handler thread only; Ray's own threads in the actor process "
            "stay unconfined, and its session dir stays writable"
        )
    if confined and root:
        exposed.append(
            "uid: workers stay uid 0 with every capability dropped (they may chmod files they own)"
        )
    return {
        "mode": mode,
        "workers": "confined" if confined else "unconfined",
        "landlock_abi": abi,
        "scoped": ["signal", "abstract_unix_socket"] if confined and abi >= 6 else [],
        "uid": os.geteuid(),
        "capabilities_dropped": confined and root,
        "server_dumpable": _dumpable(),
        "pip": "confined" if confined else "unconfined",
        "exposed": exposed,
    }


def banner_line(info: dict[str, Any]) -> str:
    """One line for `moorage serve` / `serve-model` start: what a deployed model's code can reach."""
    if info["workers"] == "confined":
        head = (
            f"sandbox: workers and pip confined by Landlock ABI {info['landlock_abi']}"
            f"{' with capabilities dropped' if info['capabilities_dropped'] else ''}"
            "; no access to the data dir"
        )
    else:
        head = "sandbox: NONE, workers are NOT isolated from the data dir or the server"
    return f"{head} (exposed: {'; '.join(info['exposed'])})"


def at_start(
    mode: str, log: logging.Logger, backend: str = "local", writable: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Probe, refuse to start when MOORAGE_SANDBOX=require cannot be met, and log the banner line."""
    info = probe(mode, backend, writable)
    if mode == "require" and info["workers"] != "confined":
        raise ConfigError(
            "MOORAGE_SANDBOX=require, but this kernel offers no Landlock (Linux 5.13+ with the landlock "
            "LSM enabled): workers could not be confined. Use MOORAGE_SANDBOX=auto to run without it."
        )
    line = banner_line(info)
    if info["workers"] == "confined":
        log.info("%s", line)
    else:
        log.warning("%s", line)
    return info
