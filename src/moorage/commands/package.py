"""`moorage package`: weights + handler (+ requirements.txt) → a model.tar.gz in SageMaker's layout.

The layout is the one SageMaker's PyTorch container expects (spec §1.2): the weights at the top of
the archive, the handler and its modules under code/, code/requirements.txt installed at start.
The archive is written next to its destination and renamed into place, so a failed run never leaves
half an archive under the name a later `moorage deploy` would pick up.
"""

from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from moorage.commands._output import HelpFormatter, add_output_option, human_size, print_json
from moorage.errors import ConfigError, MoorageError

__all__ = ["PackageSpec", "build_archive", "register"]

EXIT_OK = 0
CODE_DIR = "code"
REQUIREMENTS = "requirements.txt"
DEFAULT_HANDLER = "inference.py"  # SAGEMAKER_PROGRAM's default (spec §1.3)
_SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".ipynb_checkpoints"})
_COMPRESS_LEVEL = 1  # weights barely compress: the fastest level costs little size and saves minutes

EPILOG = """\
examples:
  # the seed's layout: weights at the top, the handler in code/
  moorage package --model-file model_0.pth --entry-point inference.py -o model.tar.gz

  # a handler with helper modules and dependencies
  moorage package --model-file model.pt --source-dir src/ --entry-point serve.py \\
      --requirements requirements.txt -o model.tar.gz

then: moorage upload model.tar.gz   or   moorage deploy model.tar.gz --name my-endpoint
"""


@dataclass(frozen=True)
class PackageSpec:
    """What goes into the archive. `entry_point` is a file, or a path inside `source_dir`."""

    model_files: tuple[Path, ...]
    entry_point: Path | None
    source_dir: Path | None
    requirements: Path | None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "package",
        help="build a model.tar.gz from weights, inference.py and requirements.txt",
        description=(
            "Build a model.tar.gz in the layout SageMaker's PyTorch container expects: the model files "
            "at the top level, the handler (--entry-point, or all of --source-dir) under code/, and "
            "--requirements as code/requirements.txt, which the server pip-installs when an instance "
            "starts. __pycache__ and .git directories are left out."
        ),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model-file",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a weights file (or directory) to put at the top of the archive; repeat for several",
    )
    parser.add_argument(
        "--entry-point",
        type=Path,
        metavar="FILE",
        help="the handler (model_fn, input_fn, predict_fn, output_fn); with --source-dir, a path inside it",
    )
    parser.add_argument("--source-dir", type=Path, metavar="DIR", help="a directory to copy whole into code/")
    parser.add_argument(
        "--requirements",
        type=Path,
        metavar="FILE",
        help="a pip requirements file, put at code/requirements.txt",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("model.tar.gz"),
        help="the archive to write (default model.tar.gz)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite the archive if it exists")
    add_output_option(parser)
    parser.set_defaults(func=_package)


def _package(args: argparse.Namespace) -> int:
    spec = _spec(args)
    out: Path = args.out
    if out.exists() and not args.force:
        raise MoorageError(f"{out} already exists; pass --force to overwrite it")
    members = build_archive(spec, out)
    size = out.stat().st_size
    if args.output == "json":
        print_json({"Path": str(out), "Size": size, "Members": members})
        return EXIT_OK
    print(f"Wrote {out} ({human_size(size)}):")
    for name in members:
        print(f"  {name}")
    handler = spec.entry_point.name if spec.entry_point else None
    if handler is None and f"{CODE_DIR}/{DEFAULT_HANDLER}" not in members:
        print(f"No code/{DEFAULT_HANDLER}: the endpoint will use the default handlers (TorchScript).")
    elif handler is not None and handler != DEFAULT_HANDLER:
        print(
            f"The handler is code/{handler}: deploy with --env SAGEMAKER_PROGRAM={handler} "
            f"(SageMaker looks for code/{DEFAULT_HANDLER} otherwise)."
        )
    print(f"Next: moorage deploy {out} --name ENDPOINT   (or: moorage upload {out})")
    return EXIT_OK


def _spec(args: argparse.Namespace) -> PackageSpec:
    if not (args.model_file or args.entry_point or args.source_dir):
        raise ConfigError("nothing to package: give --model-file, --entry-point or --source-dir")
    for path in args.model_file:
        if not path.exists():
            raise MoorageError(f"--model-file {path} does not exist")
    tops = [path.name for path in args.model_file]
    if CODE_DIR in tops or len(set(tops)) != len(tops):
        raise ConfigError(f"model files need distinct names other than {CODE_DIR!r}: {', '.join(tops)}")
    source_dir: Path | None = args.source_dir
    entry_point: Path | None = args.entry_point
    if source_dir is not None and not source_dir.is_dir():
        raise MoorageError(f"--source-dir {source_dir} is not a directory")
    if entry_point is not None:
        handler = source_dir / entry_point if source_dir is not None else entry_point
        if not handler.is_file():
            where = f" in --source-dir {source_dir}" if source_dir is not None else ""
            raise MoorageError(f"--entry-point {entry_point} is not a file{where}")
        entry_point = handler
    if args.requirements is not None and not args.requirements.is_file():
        raise MoorageError(f"--requirements {args.requirements} is not a file")
    return PackageSpec(tuple(args.model_file), entry_point, source_dir, args.requirements)


def build_archive(spec: PackageSpec, out: Path) -> list[str]:
    """Write the archive to `out` (atomically); returns its member names, in order."""
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(descriptor)
    partial = Path(partial_name)
    leave_out = {out.resolve(), partial.resolve()}  # -o may point inside --source-dir
    try:
        with tarfile.open(partial, "w:gz", compresslevel=_COMPRESS_LEVEL) as archive:
            members = list(_add_all(archive, spec, leave_out))
        partial.chmod(0o644)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return members


def _add_all(archive: tarfile.TarFile, spec: PackageSpec, leave_out: set[Path]) -> Iterator[str]:
    for path in spec.model_files:
        yield from _add_tree(archive, path, path.name, leave_out)
    has_code = spec.entry_point is not None or spec.source_dir is not None or spec.requirements is not None
    if not has_code:
        return
    yield _add(archive, None, CODE_DIR)
    skip = set(leave_out)
    if spec.requirements is not None and spec.source_dir is not None:
        skip.add((spec.source_dir / REQUIREMENTS).resolve())  # --requirements wins over the tree's own
    if spec.source_dir is not None:
        for child in sorted(spec.source_dir.iterdir()):
            yield from _add_tree(archive, child, f"{CODE_DIR}/{child.name}", skip)
    elif spec.entry_point is not None:
        yield _add(archive, spec.entry_point, f"{CODE_DIR}/{spec.entry_point.name}")
    if spec.requirements is not None:
        yield _add(archive, spec.requirements, f"{CODE_DIR}/{REQUIREMENTS}")


def _add_tree(archive: tarfile.TarFile, path: Path, name: str, skip: set[Path]) -> Iterator[str]:
    if path.resolve() in skip or (path.is_dir() and path.name in _SKIPPED_DIRS):
        return
    yield _add(archive, path, name)
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.iterdir()):
            yield from _add_tree(archive, child, f"{name}/{child.name}", skip)


def _add(archive: tarfile.TarFile, path: Path | None, name: str) -> str:
    """One member, owned by root:root, read through symlinks (the server refuses links in archives)."""
    if path is None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        archive.addfile(_anonymous(info))
        return name
    info = archive.gettarinfo(str(path.resolve()), arcname=name)
    if info.isfile():
        with path.open("rb") as data:
            archive.addfile(_anonymous(info), data)
    else:
        archive.addfile(_anonymous(info))
    return name


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
