"""Where an endpoint's log streams live on disk, and the names CloudWatch Logs gives them.

SageMaker sends an endpoint's container output to the log group `/aws/sagemaker/Endpoints/<endpoint>`,
one stream per instance named `<variant>/<instance-id>`. Ours are files under the data dir:

    logs/<endpoint>/<variant>/<stem>.log          the stream `<variant>/<stem>` (an instance, or
                                                  `deployment`: artifact preparation)
    logs/<endpoint>/<variant>/<stem>.log.<base>   its one rotated generation (see rotation.py)

Batch transform jobs share one group, `/aws/sagemaker/TransformJobs`, with a stream `<job>/<instance-id>`
per instance of each job (the SDK's `logs=True` tails the streams prefixed `<job>/`). Their files are

    logs/_transform-jobs/<job>/transform/<instance-id>.log

(a job's instances run as an endpoint named after the job with one variant, `transform`), rotated like
the others; `_transform-jobs` is no endpoint's name (no underscores there), and the layout serves the
group under the key `TRANSFORM_KEY`, which no endpoint name can equal either (it has a slash).

Names come from requests, so every path is built only from parts that match SageMaker's own name
pattern (letters, digits, inner hyphens: no dots, no slashes) and symbolic links are never followed:
nothing outside the logs directory can be named or reached.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from moorage.logs.errors import InvalidParameterException, ResourceNotFoundException

__all__ = [
    "GROUP_PREFIX",
    "TRANSFORM_DIR",
    "TRANSFORM_GROUP",
    "TRANSFORM_KEY",
    "TRANSFORM_VARIANT",
    "LogsLayout",
    "Segment",
    "StreamFiles",
    "endpoint_of_group",
    "group_name",
    "resolve_group",
    "rotated_base",
]

GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
TRANSFORM_GROUP = "/aws/sagemaker/TransformJobs"
TRANSFORM_DIR = "_transform-jobs"  # under the logs directory
TRANSFORM_KEY = "/transform"  # the layout's key of TRANSFORM_GROUP; an endpoint name never has a slash
TRANSFORM_VARIANT = "transform"  # the one variant a transform job's instances run as

# SageMaker's EndpointName / VariantName pattern (botocore's sagemaker model); instance ids and
# `deployment` match it too.
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_ROTATED = re.compile(r"(?P<stem>.+)\.log\.(?P<base>\d{1,20})")

_NO_GROUP = "The specified log group does not exist."
_NO_STREAM = "The specified log stream does not exist."


def _valid(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def group_name(endpoint: str) -> str:
    return TRANSFORM_GROUP if endpoint == TRANSFORM_KEY else GROUP_PREFIX + endpoint


def endpoint_of_group(name: str) -> str:
    """The layout key (an endpoint, or TRANSFORM_KEY) of a log group; ResourceNotFoundException otherwise."""
    if name == TRANSFORM_GROUP:
        return TRANSFORM_KEY
    endpoint = name[len(GROUP_PREFIX) :] if name.startswith(GROUP_PREFIX) else ""
    if not _valid(endpoint):
        raise ResourceNotFoundException(_NO_GROUP)
    return endpoint


def resolve_group(log_group_name: object, log_group_identifier: object) -> str:
    """The group a request names, by `logGroupName` or `logGroupIdentifier` (a name or an ARN)."""
    if log_group_name is not None and log_group_identifier is not None:
        raise InvalidParameterException("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    given = log_group_name if log_group_name is not None else log_group_identifier
    if not isinstance(given, str) or not given:
        raise InvalidParameterException("Either logGroupName or logGroupIdentifier must be given.")
    if given.startswith("arn:"):
        # arn:aws:logs:<region>:<account>:log-group:<name>[:*]
        parts = given.split(":", 6)
        if len(parts) != 7 or parts[2] != "logs" or parts[5] != "log-group":
            raise InvalidParameterException(f"{given!r} is not a log group ARN.")
        given = parts[6].removesuffix(":*")
    return given


def rotated_base(name: str) -> tuple[str, int] | None:
    """(stem, base) for a rotated file name `<stem>.log.<base>`, else None."""
    match = _ROTATED.fullmatch(name)
    return (match["stem"], int(match["base"])) if match else None


@dataclass(frozen=True)
class Segment:
    """One file of a stream; `base` is the stream position of its first byte."""

    path: Path
    base: int
    size: int
    mtime_ms: int

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class StreamFiles:
    """A consistent view of one stream's files: the rotated generation (if any), then the live file.

    Positions are stream positions: bytes since the stream began, stable across rotations, which is
    what pagination tokens carry.
    """

    name: str
    segments: tuple[Segment, ...]

    @property
    def start(self) -> int:
        return self.segments[0].base if self.segments else 0

    @property
    def end(self) -> int:
        return self.segments[-1].end if self.segments else 0

    @property
    def stored_bytes(self) -> int:
        return sum(segment.size for segment in self.segments)

    @property
    def mtime_ms(self) -> int:
        return max((segment.mtime_ms for segment in self.segments), default=0)


def _regular(path: Path) -> os.stat_result | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


class LogsLayout:
    """Lists groups and streams under one logs directory and snapshots a stream's files."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self.transform_dir = logs_dir / TRANSFORM_DIR

    def groups(self) -> list[str]:
        """The keys of every group there is, sorted by group name: the endpoints, then TransformJobs."""
        return self.endpoints() + ([TRANSFORM_KEY] if _directory(self.transform_dir) else [])

    def endpoints(self) -> list[str]:
        """Every endpoint that has a log directory, deleted endpoints included, sorted."""
        try:
            entries = list(os.scandir(self.logs_dir))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if _valid(e.name) and e.is_dir(follow_symlinks=False))

    def group_dir(self, endpoint: str) -> Path:
        if endpoint == TRANSFORM_KEY:
            if not _directory(self.transform_dir):
                raise ResourceNotFoundException(_NO_GROUP)
            return self.transform_dir
        if not _valid(endpoint):
            raise ResourceNotFoundException(_NO_GROUP)
        path = self.logs_dir / endpoint
        if not _directory(path):
            raise ResourceNotFoundException(_NO_GROUP)
        return path

    def group_info(self, endpoint: str) -> tuple[int, int]:
        """(creation time in ms, stored bytes): the directory's oldest time stamp, and its files' size."""
        path = self.group_dir(endpoint)
        info = os.lstat(path)
        created = min(info.st_mtime_ns, info.st_ctime_ns) // 1_000_000
        stored = sum(self.snapshot(endpoint, name).stored_bytes for name in self.streams(endpoint))
        return created, stored

    def _stream_dir(self, endpoint: str, first: str) -> Path:
        """The directory of the streams `<first>/...`: a variant's, or a transform job's instances'."""
        path = self.group_dir(endpoint) / first
        if endpoint != TRANSFORM_KEY:
            return path
        if not _directory(path):  # the job's directory itself, never through a symbolic link
            raise ResourceNotFoundException(_NO_STREAM)
        return path / TRANSFORM_VARIANT

    def streams(self, endpoint: str) -> list[str]:
        """The names of a group's streams (`<variant>/<stem>`, or `<job>/<stem>`), sorted."""
        found: set[str] = set()
        for variant in os.scandir(self.group_dir(endpoint)):
            if not (_valid(variant.name) and variant.is_dir(follow_symlinks=False)):
                continue
            directory = self._stream_dir(endpoint, variant.name)
            if not _directory(directory):
                continue
            for entry in os.scandir(directory):
                if not entry.is_file(follow_symlinks=False):
                    continue
                rotated = rotated_base(entry.name)
                stem = rotated[0] if rotated else entry.name.removesuffix(".log")
                if (rotated or entry.name.endswith(".log")) and _valid(stem):
                    found.add(f"{variant.name}/{stem}")
        return sorted(found)

    def snapshot(self, endpoint: str, stream: str) -> StreamFiles:
        """The stream's files as they are now; ResourceNotFoundException when it has none."""
        variant, slash, stem = stream.partition("/")
        if not (slash and _valid(variant) and _valid(stem)):
            raise ResourceNotFoundException(_NO_STREAM)
        directory = self._stream_dir(endpoint, variant)
        if not _directory(directory):
            raise ResourceNotFoundException(_NO_STREAM)
        segments: list[Segment] = []
        rotated = self._newest_rotated(directory, stem)
        if rotated is not None:
            segments.append(rotated)
        current = directory / f"{stem}.log"
        info = _regular(current)
        if info is not None:
            base = rotated.end if rotated is not None else 0
            segments.append(Segment(current, base, info.st_size, info.st_mtime_ns // 1_000_000))
        if not segments:
            raise ResourceNotFoundException(_NO_STREAM)
        return StreamFiles(stream, tuple(segments))

    @staticmethod
    def _newest_rotated(directory: Path, stem: str) -> Segment | None:
        """The rotated generation with the highest base (an interrupted rotation may leave two)."""
        best: Segment | None = None
        for entry in os.scandir(directory):
            rotated = rotated_base(entry.name)
            if rotated is None or rotated[0] != stem or not entry.is_file(follow_symlinks=False):
                continue
            if best is not None and best.base >= rotated[1]:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            best = Segment(Path(entry.path), rotated[1], info.st_size, info.st_mtime_ns // 1_000_000)
        return best
