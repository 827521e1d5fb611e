"""Repacking: the user's entry_point / source_dir into code/ of a new model.tar.gz (spec §1.2).

SageMaker's SDK does this before CreateModel for PyTorch ≥ 1.2, and moorage's SDK does the same so
that the model directory a worker sees is the one SageMaker's container would see:

- `source_dir` given: any code/ already in the archive is dropped, and source_dir's whole tree becomes
  code/ (entry_point then names a file inside source_dir);
- `entry_point` alone: the file is added to code/ (made if missing), replacing a file of that name and
  keeping whatever else code/ held;
- every other member is copied through unchanged, its name normalised ("./model.pt" → "model.pt").

Pure file work: no network, no server. Members are streamed from one archive to the other, never
extracted, so an archive with hostile names cannot write outside a temp dir here (the server checks
members again before it extracts anything).
"""

from __future__ import annotations

import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from moorage.sdk.errors import InvalidArgument, PackagingError

__all__ = ["CodeSpec", "code_spec", "repack"]

CODE_DIR = "code"
# Weights barely compress, so the fastest gzip level costs little size and saves a lot of time.
_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class CodeSpec:
    """What goes into code/: `entry_point` is the handler file, `source_dir` (if any) the whole tree."""

    entry_point: Path | None
    source_dir: Path | None

    @property
    def program(self) -> str | None:
        """SAGEMAKER_PROGRAM: the handler's file name, as the SDK sets it (spec §1.3)."""
        return self.entry_point.name if self.entry_point is not None else None


def code_spec(entry_point: str | Path | None, source_dir: str | Path | None) -> CodeSpec:
    """Check the user's paths before anything is sent; a relative entry_point is inside source_dir."""
    if source_dir is not None:
        directory = Path(source_dir).expanduser()
        if str(source_dir).lower().startswith("s3://"):
            raise InvalidArgument(f"source_dir must be a local directory; {source_dir} is on S3.")
        if not directory.is_dir():
            raise InvalidArgument(f"source_dir {source_dir} is not a directory.")
        handler = None
        if entry_point is not None:
            handler = directory / entry_point
            if not handler.is_file():
                raise InvalidArgument(f'No file named "{entry_point}" was found in directory "{source_dir}".')
        return CodeSpec(entry_point=handler, source_dir=directory)
    if entry_point is None:
        return CodeSpec(entry_point=None, source_dir=None)
    handler = Path(entry_point).expanduser()
    if not handler.is_file():
        raise InvalidArgument(f"entry_point {entry_point} is not a file.")
    return CodeSpec(entry_point=handler, source_dir=None)


def repack(model_tar: Path, out: Path, code: CodeSpec) -> None:
    """Write `out`: `model_tar`'s members with `code` placed into code/ by the rules above."""
    replaced = f"{CODE_DIR}/{code.entry_point.name}" if code.entry_point and not code.source_dir else None
    try:
        with (
            tarfile.open(model_tar, "r:*") as source,
            tarfile.open(out, "w:gz", compresslevel=_COMPRESS_LEVEL, dereference=True) as target,
        ):
            has_code_dir = False
            for member in source:
                name = _normalised(member.name)
                if not name or (code.source_dir and _in_code(name)) or name == replaced:
                    continue
                has_code_dir = has_code_dir or name == CODE_DIR
                _copy(source, target, member, name)
            if code.source_dir is not None:
                target.add(code.source_dir, arcname=CODE_DIR, recursive=True)
            elif code.entry_point is not None:
                if not has_code_dir:
                    target.addfile(_directory(CODE_DIR))
                target.add(code.entry_point, arcname=f"{CODE_DIR}/{code.entry_point.name}")
    except (tarfile.TarError, zlib.error, EOFError) as exc:
        raise PackagingError(f"{model_tar} is not a readable tar.gz archive: {exc}") from None


def _normalised(name: str) -> str:
    """The member's path without "./" or a leading "/"; refuses ".." (it could escape /opt/ml/model)."""
    parts = [part for part in PurePosixPath(name.lstrip("/")).parts if part != "."]
    if ".." in parts:
        raise PackagingError(f"model.tar.gz member {name!r} points outside the archive.")
    return "/".join(parts)


def _in_code(name: str) -> bool:
    return name == CODE_DIR or name.startswith(CODE_DIR + "/")


def _copy(source: tarfile.TarFile, target: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
    member.name = name
    member.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in ("path", "linkpath")}
    if member.islnk():
        member.linkname = _normalised(member.linkname)
    if member.isfile():
        target.addfile(member, source.extractfile(member))
    else:
        target.addfile(member)


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    return info
