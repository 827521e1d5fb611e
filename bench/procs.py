"""The processes the benchmark starts: launch them tagged, find every descendant, measure, stop.

Every server is started in its own session with BENCH_RUN_TAG=<unique tag> in its environment. All
of its descendants inherit it (moorage's fork server and workers, TorchServe's JVM, Ray's daemons,
LitServe's workers), even those re-parented to init, so idle memory is the sum over exactly the
processes one launch created, and nothing the benchmark started can outlive it: `Launched.stop`
signals the main process, then any tagged leftover, one pid at a time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["TAG_VARIABLE", "Launched", "Memory", "Registry", "memory", "tagged", "wait_gone"]

TAG_VARIABLE = "BENCH_RUN_TAG"  # not MOORAGE_*: moorage does not hand those to its workers


@dataclass(frozen=True)
class Memory:
    processes: int
    pss_mb: float
    rss_mb: float


def tagged(tag: str, variable: str = TAG_VARIABLE) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment carries the tag, this process excluded."""
    found = []
    me = os.getpid()
    for process in psutil.process_iter(["pid"]):
        if process.pid == me:
            continue
        try:
            if process.environ().get(variable) == tag and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def memory(tag: str, variable: str = TAG_VARIABLE) -> Memory:
    """PSS and RSS summed over every tagged process (PSS splits shared pages fairly between them)."""
    pss = rss = 0
    count = 0
    for process in tagged(tag, variable):
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        pss += getattr(info, "pss", 0)
        rss += info.rss
        count += 1
    return Memory(processes=count, pss_mb=round(pss / 2**20, 1), rss_mb=round(rss / 2**20, 1))


def wait_gone(tag: str, timeout: float, variable: str = TAG_VARIABLE) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = tagged(tag, variable)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = tagged(tag, variable)
    return left


def _signal_each(processes: Sequence[psutil.Process], signum: int) -> None:
    for process in processes:
        try:
            process.send_signal(signum)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


@dataclass
class Launched:
    """One started server: its main process (if we exec'd it ourselves), its tag, how to stop it."""

    name: str
    tag: str
    started_at: float  # time.time() just before the launch
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # the main process of a server someone else's script started
    variable: str = TAG_VARIABLE
    stop_signal: int = signal.SIGTERM
    grace_s: float = 20.0
    # A peer is stopped by its own script first; the tag sweep below still runs after it.
    stop_hook: Callable[[], None] | None = None
    stopped: bool = False
    leftovers: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        if self.pid is not None:
            try:
                return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False
        return bool(tagged(self.tag, self.variable))

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Graceful stop of the main process, then SIGTERM and SIGKILL for any tagged leftover, by pid."""
        if self.stopped:
            return
        if self.stop_hook is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.stop_hook()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.grace_s)
        left = wait_gone(self.tag, 5.0 if self.process is not None else self.grace_s, self.variable)
        if left:
            self.leftovers = [p.pid for p in left]
            _signal_each(left, signal.SIGTERM)
            left = wait_gone(self.tag, 5.0, self.variable)
            _signal_each(left, signal.SIGKILL)
            wait_gone(self.tag, 5.0, self.variable)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(10)
        self.stopped = True  # only now: a stop cut short by Ctrl+C is done again by `stop_all`


class Registry:
    """Every server this run started, so that one `stop_all` (from a finally block) ends them all."""

    def __init__(self) -> None:
        self._launched: list[Launched] = []

    def launch(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
        grace_s: float = 20.0,
    ) -> Launched:
        tag = f"bench-{name}-{uuid.uuid4().hex[:12]}"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**env, TAG_VARIABLE: tag}
        started = time.time()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(argv),
                env=full_env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C reaches us, and we stop it in order
            )
        launched = Launched(
            name, tag, started, log_path, process=process, stop_signal=stop_signal, grace_s=grace_s
        )
        self._launched.append(launched)
        return launched

    def adopt(self, launched: Launched) -> Launched:
        """Track a server started by someone else's script (a peer), found by its own tag."""
        self._launched.append(launched)
        return launched

    def stop(self, launched: Launched) -> None:
        launched.stop()
        if launched in self._launched:
            self._launched.remove(launched)

    def stop_all(self) -> None:
        """Stop everything still running; a second Ctrl+C (or SIGTERM) cannot cut this short."""
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self._launched:
                self.stop(self._launched[-1])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
