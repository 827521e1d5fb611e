"""Installing a model's code/requirements.txt next to it, never into moorage's own environment.

SageMaker's toolkit runs `pip install -r code/requirements.txt` into the container's Python once,
before the model server starts (spec §1.5). moorage serves many models from one environment, so it
asks pip what the file would change (`--dry-run --report`, resolved against what is installed, so an
"already satisfied" requirement costs nothing) and installs exactly that, without dependencies,
into a directory of its own that the worker puts on sys.path. The result is cached by the file's
content and the interpreter.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from moorage.artifacts.cache import ArtifactCache
from moorage.errors import RequirementsError
from moorage.sandbox import SandboxPolicy, confine
from moorage.sandbox import pip as pip_sandbox

__all__ = ["PlannedInstall", "install_requirements", "plan_from_report", "preload_warnings"]

_TAIL_LINES = 20
# Distributions that moorage's fork server imports before any model code runs
# (settings.WorkerSettings.preload): a worker forked from it keeps the version already imported.
_PRELOADED = ("torch", "torchvision", "numpy", "pillow", "requests")
# Lines of requirements.txt that say where packages come from; the install step needs them too.
_SOURCE_OPTIONS = (
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--trusted-host",
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
)
_LOCAL_REFERENCE = re.compile(r"(^|[\s@=])(\.{1,2}/|/|file:)", re.MULTILINE)


@dataclass(frozen=True)
class PlannedInstall:
    name: str
    version: str
    requirement: str  # what to hand to `pip install --no-deps`: "name==version" or "name @ url"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def plan_from_report(report: dict[str, Any]) -> list[PlannedInstall]:
    """What pip's installation report (`pip install --dry-run --report`) says must be installed."""
    planned: list[PlannedInstall] = []
    for item in report.get("install", []):
        name = str(item["metadata"]["name"])
        version = str(item["metadata"]["version"])
        info = item.get("download_info", {})
        if item.get("is_direct"):
            url = str(info["url"])
            if "vcs_info" in info:
                vcs = info["vcs_info"]
                url = f"{vcs['vcs']}+{url}@{vcs['commit_id']}"
            if info.get("subdirectory"):
                url = f"{url}#subdirectory={info['subdirectory']}"
            planned.append(PlannedInstall(name, version, f"{name} @ {url}"))
        else:
            planned.append(PlannedInstall(name, version, f"{name}=={version}"))
    return planned


def install_requirements(
    requirements: Path,
    *,
    cache: ArtifactCache,
    log: Callable[[str], None],
    timeout_s: float,
    trust: bool | None = None,
) -> Path:
    """Install `requirements` into a cached directory of its own and return that directory.

    `trust`: ArtifactPolicy.pip_trust_requirements; None reads MOORAGE_PIP_TRUST_REQUIREMENTS from
    this process's environment. Untrusted files may only name index packages (moorage.sandbox.pip).
    """
    try:
        return _install(
            requirements,
            cache=cache,
            log=log,
            timeout_s=timeout_s,
            trust=pip_sandbox.trusted(os.environ) if trust is None else trust,
        )
    except OSError as exc:
        raise RequirementsError(
            f"failed to install required packages from {requirements}: {exc.strerror or exc}"
        ) from exc


def _install(
    requirements: Path, *, cache: ArtifactCache, log: Callable[[str], None], timeout_s: float, trust: bool
) -> Path:
    content = requirements.read_bytes()
    text = content.decode("utf-8", "replace")
    if not trust:
        pip_sandbox.check_lines(text, f"{requirements.parent.name}/requirements.txt")
    key_material = hashlib.sha256()
    key_material.update(content)
    key_material.update(f"\0{sys.executable}\0{sys.version}".encode())
    if _LOCAL_REFERENCE.search(content.decode("utf-8", "replace")):
        # Relative or absolute paths point at files whose content the text does not pin.
        key_material.update(f"\0{requirements.parent.resolve()}".encode())
    final = cache.deps_path(key_material.hexdigest())
    with cache.lock(f"deps:{final.name}"):
        if final.is_dir():
            log(f"requirements.txt: already installed in {final}")
            return final
        with cache.workspace() as work:
            target = work / "deps"
            target.mkdir()
            home = work / "home"
            home.mkdir()
            report_path = work / "report.json"
            # Untrusted: pip runs from an empty dir, so a bare name cannot resolve to a file of the model.
            run = _PipRun(
                cwd=requirements.parent if trust else home,
                work=work,
                policy=pip_sandbox.pip_policy(
                    os.environ,
                    read_only=[str(requirements.parent)],
                    read_write=[
                        str(work),
                        *(pip_sandbox.local_paths(text, requirements.parent) if trust else []),
                    ],
                ),
            )
            log(f"requirements.txt: resolving {requirements}")
            _run_pip(
                ["install", "--dry-run", "--quiet", "--report", str(report_path), "-r", str(requirements)],
                run=run,
                log=log,
                timeout_s=timeout_s,
            )
            plan = plan_from_report(json.loads(report_path.read_text(encoding="utf-8")))
            for warning in preload_warnings(plan):
                log(warning)
            if plan:
                pinned = work / "pinned.txt"
                pinned.write_text(_source_options(content) + "".join(f"{p.requirement}\n" for p in plan))
                log(f"requirements.txt: installing {', '.join(f'{p.name}=={p.version}' for p in plan)}")
                _run_pip(
                    ["install", "--no-deps", "--target", str(target), "-r", str(pinned)],
                    run=run,
                    log=log,
                    timeout_s=timeout_s,
                )
            else:
                log("requirements.txt: every requirement is already satisfied, nothing to install")
            cache.publish(target, final)
    return final


def _source_options(content: bytes) -> str:
    lines = []
    for line in content.decode("utf-8", "replace").splitlines():
        stripped = line.strip()
        option = stripped.split("=", 1)[0].split(None, 1)[0] if stripped else ""
        if option in _SOURCE_OPTIONS:
            lines.append(f"{stripped}\n")
    return "".join(lines)


def _confine_child(policy: SandboxPolicy) -> None:
    """In pip's child process, before exec: the same kernel sandbox as a worker's."""
    confine(policy)


def preload_warnings(plan: list[PlannedInstall]) -> list[str]:
    """A line for each planned package that moorage's workers import before the model loads."""
    warnings = []
    for item in plan:
        if _canonical(item.name) not in _PRELOADED:
            continue
        try:
            current = metadata.version(item.name)
        except metadata.PackageNotFoundError:
            current = "not installed"
        warnings.append(
            f"requirements.txt: {item.name}=={item.version} is requested, but moorage's workers import "
            f"{item.name} before loading the model, and a worker forked from that process keeps the "
            f"version already imported ({current}); require {item.name}=={current} to use it knowingly"
        )
    return warnings


@dataclass(frozen=True)
class _PipRun:
    """Where and how pip runs for one requirements file: its cwd, workspace and sandbox."""

    cwd: Path
    work: Path  # the only writable place: target, report, HOME, TMPDIR and pip's cache
    policy: SandboxPolicy | None  # None: MOORAGE_SANDBOX=off


def _run_pip(args: list[str], *, run: _PipRun, log: Callable[[str], None], timeout_s: float) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        *args,
        "--no-input",
        "--disable-pip-version-check",
        # A cache of this run only: a build backend may write to it, so one model's pip must not
        # leave wheels behind for another's (the sandbox grants nothing else outside the workspace).
        "--cache-dir",
        str(run.work / "pip-cache"),
    ]
    # No server secrets, a scratch HOME; build directories go into the workspace, so a killed pip
    # leaves nothing outside the cache.
    env = pip_sandbox.pip_environment(os.environ, home=run.work / "home", tmp=run.work)
    policy = run.policy
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    try:
        process = subprocess.Popen(
            command,
            cwd=run.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=None if policy is None else lambda: _confine_child(policy),
        )
    except subprocess.SubprocessError as exc:
        raise RequirementsError(
            f"pip could not be started in its sandbox ({exc}); set MOORAGE_SANDBOX=off to run it unconfined"
        ) from exc
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout_s, stop)
    timer.start()
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if line:
                tail.append(line)
                log(f"pip: {line}")
        status = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    if status != 0:
        why = (
            f"pip did not finish within {timeout_s:g} s"
            if timed_out.is_set()
            else f"pip exited with {status}"
        )
        output = "\n".join(tail) or "(pip printed nothing)"
        raise RequirementsError(
            f"failed to install required packages from code/requirements.txt ({why}). "
            f"Last lines of pip's output:\n{output}"
        )
