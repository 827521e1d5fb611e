"""What an extracted model tree held when it was made, so that a later change is found, never served.

A tree in the cache is shared by every model with the same content, and workers run untrusted
handler code next to it (security-probe-2 row 66: one model appended code to another's tree). At
extraction `seal` makes every file and directory read-only and records each file's sha256, size
and mode, and each directory's mode; the record lives outside the tree (`trees.py` keeps it beside
the cache index). `verify` walks the tree again before it is reused and hashes every file: mode
bits alone do not stop a worker that runs as root, and a size+mtime check can be forged with
`utime`, so only the content hash is trusted. Its cost is one read of the tree (docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from moorage.artifacts.sources import CHUNK_BYTES

__all__ = ["FileEntry", "Manifest", "seal", "verify"]

_READ_ONLY_DIR = 0o555
_FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    size: int
    mode: int  # permission bits only
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Every file and directory of one tree, by path relative to its root ("" is the root)."""

    files: Mapping[str, FileEntry]
    dirs: Mapping[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "files": {name: [e.size, e.mode, e.sha256] for name, e in sorted(self.files.items())},
                "dirs": dict(sorted(self.dirs.items())),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """ValueError (or KeyError/TypeError) for a manifest that is not one we wrote."""
        data = json.loads(text)
        if data.get("format") != _FORMAT:
            raise ValueError(f"unknown manifest format {data.get('format')!r}")
        files = {str(name): FileEntry(int(v[0]), int(v[1]), str(v[2])) for name, v in data["files"].items()}
        return cls(files=files, dirs={str(name): int(mode) for name, mode in data["dirs"].items()})


def seal(root: Path, hashes: Mapping[str, str]) -> Manifest:
    """Make the tree under `root` read-only and describe it.

    `hashes` are the sha256 of each file as it was written (relative path → hex), so the content is
    not read a second time; a file missing from it is hashed here.
    """
    files: dict[str, FileEntry] = {}
    dirs: dict[str, int] = {}
    for directory, _subdirs, names in os.walk(root, topdown=False):
        here = Path(directory)
        for name in names:
            path = here / name
            relative = path.relative_to(root).as_posix()
            info = path.lstat()
            mode = 0o555 if info.st_mode & stat.S_IXUSR else 0o444
            os.chmod(path, mode, follow_symlinks=False)
            digest = hashes.get(relative) or _hash_file(path)
            files[relative] = FileEntry(size=info.st_size, mode=mode, sha256=digest)
        os.chmod(here, _READ_ONLY_DIR)
        dirs["" if here == root else here.relative_to(root).as_posix()] = _READ_ONLY_DIR
    return Manifest(files=files, dirs=dirs)


def verify(root: Path, manifest: Manifest) -> str | None:
    """None when the tree is exactly what `manifest` describes, else the first difference in words.

    Names, types, sizes and modes are compared first (cheap, and enough to catch most changes
    early); then every file is hashed, because only the content hash cannot be forged.
    """
    seen_files: dict[str, os.stat_result] = {}
    seen_dirs: dict[str, int] = {}
    try:
        for directory, subdirs, names in os.walk(root, onerror=_raise):
            here = Path(directory)
            relative_dir = "" if here == root else here.relative_to(root).as_posix()
            seen_dirs[relative_dir] = stat.S_IMODE(here.lstat().st_mode)
            for name in [*names, *(d for d in subdirs if (here / d).is_symlink())]:
                path = here / name
                relative = path.relative_to(root).as_posix()
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    return f"{relative} is no longer a regular file"
                seen_files[relative] = info
    except OSError as exc:
        return f"the tree cannot be read ({exc.strerror or exc})"
    for relative in sorted(seen_files.keys() - manifest.files.keys()):
        return f"{relative} was added"
    for relative in sorted(manifest.files.keys() - seen_files.keys()):
        return f"{relative} was removed"
    for relative in sorted(seen_dirs.keys() ^ manifest.dirs.keys()):
        return f"directory {relative or '.'} was {'added' if relative in seen_dirs else 'removed'}"
    for relative, mode in sorted(seen_dirs.items()):
        if mode != manifest.dirs[relative]:
            return f"directory {relative or '.'} has mode {mode:o}, not {manifest.dirs[relative]:o}"
    for relative, info in sorted(seen_files.items()):
        entry = manifest.files[relative]
        if info.st_size != entry.size:
            return f"{relative} has {info.st_size} bytes, not {entry.size}"
        if stat.S_IMODE(info.st_mode) != entry.mode:
            return f"{relative} has mode {stat.S_IMODE(info.st_mode):o}, not {entry.mode:o}"
    for relative in sorted(seen_files):
        try:
            actual = _hash_file(root / relative)
        except OSError as exc:
            return f"{relative} cannot be read ({exc.strerror or exc})"
        if actual != manifest.files[relative].sha256:
            return f"{relative} has sha256 {actual}, not {manifest.files[relative].sha256}"
    return None


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _raise(error: OSError) -> None:
    raise error
