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
) -> Path:
    """Install `requirements` into a cached directory of its own and return that directory."""
    try:
        return _install(requirements, cache=cache, log=log, timeout_s=timeout_s)
    except OSError as exc:
        raise RequirementsError(
            f"failed to install required packages from {requirements}: {exc.strerror or exc}"
        ) from exc


def _install(
    requirements: Path, *, cache: ArtifactCache, log: Callable[[str], None], timeout_s: float
) -> Path:
    content = requirements.read_bytes()
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
            report_path = work / "report.json"
            log(f"requirements.txt: resolving {requirements}")
            _run_pip(
                ["install", "--dry-run", "--quiet", "--report", str(report_path), "-r", str(requirements)],
                cwd=requirements.parent,
                work=work,
                cache=cache,
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
                    cwd=requirements.parent,
                    work=work,
                    cache=cache,
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


def _run_pip(
    args: list[str],
    *,
    cwd: Path,
    work: Path,
    cache: ArtifactCache,
    log: Callable[[str], None],
    timeout_s: float,
) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        *args,
        "--no-input",
        "--disable-pip-version-check",
        "--cache-dir",
        str(cache.pip_cache),
    ]
    # pip's build directories go into our workspace, so a killed pip leaves nothing outside the cache.
    env = {**os.environ, "TMPDIR": str(work)}
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
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
            f"failed to install required packages from {cwd.name}/requirements.txt ({why}). "
            f"Last lines of pip's output:\n{output}"
        )
