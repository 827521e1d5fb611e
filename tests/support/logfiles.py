"""Synthetic endpoint log directories (`logs/<endpoint>/<variant>/<stem>.log`) for the log tests."""

from __future__ import annotations

import time
from pathlib import Path

from moorage.logs import LogsContext, LogsLayout
from moorage.logs.rotation import ReadWriteLock

BASE_MS = 1_700_000_000_000  # mid-November 2023: far from any daylight-saving switch
GROUP = "/aws/sagemaker/Endpoints/ep"


def stamp(ms: int) -> str:
    """A worker's `%(asctime)s`: local time with milliseconds after a comma."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms // 1000)) + f",{ms % 1000:03d}"


def logged(ms: int, text: str) -> str:
    return f"{stamp(ms)} [worker 0 pid 7] INFO handler: {text}\n"


def write_stream(logs_dir: Path, stream: str, text: str, endpoint: str = "ep") -> Path:
    variant, _, stem = stream.partition("/")
    path = logs_dir / endpoint / variant / f"{stem}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def context(logs_dir: Path, lock: ReadWriteLock | None = None) -> LogsContext:
    return LogsContext(LogsLayout(logs_dir), lock or ReadWriteLock(), "us-east-1", "000000000000")
