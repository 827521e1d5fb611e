"""The content-addressed artifact cache under the data dir, safe for many threads and processes.

Layout (everything moorage fetches or builds stays below `root`):

    models/<algo>-<hex>/   extracted model trees, named by the digest of their content; read-only
    trees/<algo>-<hex>/    what workers must not write: each tree's manifest, its `use` lock and
                           the models that hold it (see `trees.py`)
    deps/<hex>/            `pip install --target` results, named by the requirements and interpreter
    index/<hex>            small notes: source identity (S3 ETag, file size+mtime, HTTP ETag) → digest
    locks/<hex>.lock       one flock per key, so the same work is never done twice at once
    tmp/<name>/            workspaces; each holds `.lock` flocked by its owner while it lives
    pip/                   pip's download and wheel cache

A final entry only ever appears by `rename` of a finished workspace, so an entry that exists is
complete. A workspace whose owner died (its `.lock` can be taken) is removed by the next user.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ArtifactCache", "key_hash", "remove_tree", "try_flock"]

_STAGING_PREFIX = ".staging-"
_STAGING_MAX_AGE_S = 600.0  # a workspace is staged for microseconds; older staging dirs are orphans


def key_hash(key: str) -> str:
    """A file-name-safe, fixed-length name for an arbitrary cache key."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class ArtifactCache:
    """One cache directory. Cheap to create; creating it also sweeps workspaces of dead owners."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models = root / "models"
        self.deps = root / "deps"
        self.index = root / "index"
        self.trees = root / "trees"
        self.locks = root / "locks"
        self.tmp = root / "tmp"
        self.pip_cache = root / "pip"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (self.models, self.trees, self.deps, self.index, self.locks, self.tmp):
            path.mkdir(mode=0o755, exist_ok=True)
        self.sweep()

    def model_path(self, digest: str) -> Path:
        """Where the tree with this digest ("sha256:<hex>", "tree:<hex>") lives."""
        algo, _, hexdigest = digest.partition(":")
        return self.models / f"{algo}-{hexdigest}"

    def deps_path(self, key: str) -> Path:
        return self.deps / key

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on `key` across threads and processes (blocks until it is free)."""
        fd = os.open(self.locks / f"{key_hash(key)}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def try_lock(self, key: str) -> contextlib.AbstractContextManager[bool]:
        """Like `lock`, but never waits: yields False (holding nothing) when someone else has `key`."""
        return try_flock(self.locks / f"{key_hash(key)}.lock")

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Path]:
        """A fresh directory under tmp/, removed on exit, or by `sweep` if this process dies first."""
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.tmp))
        fd = os.open(staging / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Only now, locked, does it get a name that `sweep` looks at.
            work = self.tmp / staging.name[len(_STAGING_PREFIX) :]
            os.rename(staging, work)
        except BaseException:
            os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            yield work
        finally:
            remove_tree(work)
            os.close(fd)

    def sweep(self) -> int:
        """Remove workspaces whose owner is gone; returns how many were removed."""
        removed = 0
        for entry in self.tmp.iterdir():
            if entry.name.startswith(_STAGING_PREFIX):
                if _age_s(entry) > _STAGING_MAX_AGE_S:
                    remove_tree(entry)
                    removed += 1
            elif _owner_is_gone(entry):
                remove_tree(entry)
                removed += 1
        return removed

    def read_note(self, key: str) -> str | None:
        try:
            return (self.index / key_hash(key)).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_note(self, key: str, text: str) -> None:
        """Replace the note for `key` atomically (readers see the old or the new text, never half)."""
        final = self.index / key_hash(key)
        fd, temp = tempfile.mkstemp(dir=self.index, prefix=".note-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temp, final)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def publish(self, finished: Path, final: Path) -> None:
        """Move a finished tree into its final place in one step; an existing entry wins."""
        try:
            os.rename(finished, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return
        _fsync_dir(final.parent)


@contextlib.contextmanager
def try_flock(path: Path, *, create: bool = True) -> Iterator[bool]:
    """An exclusive flock on `path` if nobody holds one (True while held), else False at once.

    With `create=False` a missing file is nobody's: True, holding nothing.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        if create:
            raise
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a directory tree, read-only ones included (sealed model trees have no write bits)."""
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    for directory, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _owner_is_gone(entry: Path) -> bool:
    try:
        fd = os.open(entry / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        # The owner removes `.lock` only while deleting the whole workspace: finish the job.
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
