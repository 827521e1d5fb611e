"""The extracted trees in the cache as entries with an owner, a use count and a size budget.

Each tree `models/<algo>-<hex>/` has a record `trees/<algo>-<hex>/` that workers have no reason to
touch (the worker sandbox keeps them out of the data dir; the tree itself is sealed read-only):

    manifest.json   per-file sha256, size and mode, written at extraction (`manifest.py`)
    bytes           the tree's size, so that the budget need not read every manifest
    use             flocked shared by every process that serves the tree; its mtime is the last use
    holds/<hash>    one file per model that was prepared from the tree (created by the first hold)

Who may remove a tree, and when (docs/security.md, "Model trees and disk"):
- a tree whose content no longer matches its manifest is discarded before reuse, whoever uses it;
- a tree in use (someone holds `use`) is never removed for space;
- when the last model holding a tree is deleted and nothing uses it, the tree is freed at once;
- when the trees add up to more than MOORAGE_CACHE_MAX_BYTES, unused ones go, least recently used first.
Every decision to remove is taken under the tree's `model:<digest>` lock, the lock `prepare` holds
while it verifies a tree and takes its lease, so a tree is never removed between the two.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from moorage.artifacts.cache import ArtifactCache, key_hash, remove_tree, try_flock
from moorage.artifacts.manifest import Manifest, verify
from moorage.artifacts.sources import format_bytes
from moorage.settings import ArtifactPolicy

__all__ = ["TreeLease", "Trees", "release_holder", "tree_bytes"]

_logger = logging.getLogger("moorage.artifacts")


class TreeLease:
    """One user's shared lock on a tree: while any lease is open, the tree is not evicted."""

    def __init__(self, trees: Trees, digest: str, fd: int) -> None:
        self.digest = digest
        self._trees = trees
        self._fd: int | None = fd

    def release(self) -> None:
        """Stop using the tree; it is then freed if no model holds it, or evicted if over budget."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            _touch(fd)  # the last use, for least-recently-used eviction
        os.close(fd)
        self._trees.settle(self.digest)

    def __del__(self) -> None:  # a lease dropped without release() must not pin the tree forever
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


@dataclass(frozen=True)
class _Entry:
    digest: str
    size: int
    last_used_ns: int


class Trees:
    """The tree records of one cache. Cheap to create; every method is safe across processes."""

    def __init__(
        self, cache: ArtifactCache, policy: ArtifactPolicy, log: Callable[[str], None] | None = None
    ):
        self._cache = cache
        self._policy = policy
        self._log = log or (lambda line: _logger.info("%s", line))

    def record(self, digest: str) -> Path:
        return self._cache.trees / self._cache.model_path(digest).name

    def publish(self, digest: str, tree: Path, manifest: Manifest) -> None:
        """Move a sealed tree into place with its manifest; the caller holds `model:<digest>`."""
        record = self.record(digest)
        record.mkdir(mode=0o700, exist_ok=True)
        _write_atomic(record / "manifest.json", manifest.to_json())
        _write_atomic(record / "bytes", str(manifest.total_bytes))
        self._cache.publish(tree, self._cache.model_path(digest))

    def reuse(self, digest: str, label: str) -> TreeLease | None:
        """A lease on the cached tree for `digest` if it is there and unchanged; None to extract it again.

        A tree that differs from its manifest (or has none) is logged, discarded and never served.
        """
        with self._cache.lock(f"model:{digest}"):
            return self.reuse_locked(digest, label)

    def reuse_locked(self, digest: str, label: str) -> TreeLease | None:
        """`reuse` for a caller that holds `model:<digest>` already."""
        tree = self._cache.model_path(digest)
        if not tree.is_dir():
            return None
        problem = self._check(digest, tree)
        if problem is not None:
            message = (
                f"the cached tree {digest} of {label} was changed after it was extracted: {problem}; "
                "discarding it and extracting the archive again"
            )
            self._log(message)
            _logger.warning("%s", message)
            self._discard(tree)
            return None
        return self.lease(digest)

    def lease(self, digest: str) -> TreeLease:
        """A lease on a tree that is in place; the caller holds `model:<digest>`."""
        record = self.record(digest)
        record.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(record / "use", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            _touch(fd)
        except BaseException:
            os.close(fd)
            raise
        return TreeLease(self, digest, fd)

    def hold(self, digest: str, holder: str) -> None:
        """Record that model `holder` was prepared from this tree: it stays until that model is deleted
        (or, unused, until the budget needs the room)."""
        holds = self.record(digest) / "holds"
        holds.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomic(holds / _holder_key(holder), holder)

    def release_holder(self, holder: str) -> list[str]:
        """Drop `holder`'s holds; frees each tree no other model holds and nothing uses. Freed digests."""
        freed: list[str] = []
        for hold in sorted(self._cache.trees.glob(f"*/holds/{_holder_key(holder)}")):
            hold.unlink(missing_ok=True)
            digest = _digest_of(hold.parent.parent.name)
            if self._free_if_orphaned(digest, why=f"model {holder} was deleted"):
                freed.append(digest)
        return freed

    def settle(self, digest: str) -> None:
        """After a lease on `digest` ended: free it if it is orphaned, then keep the cache in budget."""
        self._free_if_orphaned(digest, why="its last model was deleted and nothing uses it any more")
        self.collect()

    def collect(self) -> list[str]:
        """Evict unused trees, least recently used first, while the cache is over MOORAGE_CACHE_MAX_BYTES."""
        entries = sorted(self._entries(), key=lambda entry: entry.last_used_ns)
        total = sum(entry.size for entry in entries)
        budget = self._policy.cache_max_bytes
        evicted: list[str] = []
        for entry in entries:
            if total <= budget:
                break
            with self._cache.try_lock(f"model:{entry.digest}") as locked:
                if not locked or not self._remove_unused(entry.digest):
                    continue  # being prepared or in use: it stays, whatever the budget
            total -= entry.size
            evicted.append(entry.digest)
            _logger.info(
                "%s",
                f"evicted the unused tree {entry.digest} ({format_bytes(entry.size)}): the cache holds "
                f"more than MOORAGE_CACHE_MAX_BYTES ({format_bytes(budget)})",
            )
        return evicted

    # --- inside ---------------------------------------------------------------------------------

    def _check(self, digest: str, tree: Path) -> str | None:
        try:
            manifest = Manifest.from_json((self.record(digest) / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "it has no manifest"
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            return f"its manifest cannot be read ({exc})"
        return verify(tree, manifest)

    def _discard(self, tree: Path) -> None:
        """Move a tree out of models/ at once (never served again), then delete it."""
        with self._cache.workspace() as work:
            os.rename(tree, work / "discarded")
        (self.record(_digest_of(tree.name)) / "manifest.json").unlink(missing_ok=True)

    def _free_if_orphaned(self, digest: str, *, why: str) -> bool:
        holds = self.record(digest) / "holds"
        with self._cache.try_lock(f"model:{digest}") as locked:
            if not locked or not holds.is_dir() or any(holds.iterdir()):
                return False
            if not self._remove_unused(digest):
                return False
        _logger.info("%s", f"freed the tree {digest}: {why}")
        return True

    def _remove_unused(self, digest: str) -> bool:
        """Remove tree and record unless a lease is open; the caller holds `model:<digest>`."""
        record = self.record(digest)
        with try_flock(record / "use", create=False) as unused:
            if not unused:
                return False
            tree = self._cache.model_path(digest)
            if tree.is_dir():
                self._discard(tree)
            remove_tree(record)
        return True

    def _entries(self) -> Iterator[_Entry]:
        for tree in self._cache.models.iterdir():
            digest = _digest_of(tree.name)
            record = self.record(digest)
            try:
                size = int((record / "bytes").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                size = tree_bytes(tree)  # a tree from before manifests: counted by walking it
            try:
                last_used = (record / "use").stat().st_mtime_ns
            except OSError:
                last_used = _mtime_ns(tree)
            yield _Entry(digest, size, last_used)


def release_holder(cache_dir: Path, policy: ArtifactPolicy, holder: str) -> None:
    """DeleteModel's hook: free the trees only model `holder` held (they stay while in use)."""
    try:
        Trees(ArtifactCache(cache_dir), policy).release_holder(holder)
    except OSError:  # the model is deleted either way; the budget frees the tree later
        _logger.exception("could not free the cached trees of deleted model %s", holder)


def _touch(fd: int) -> None:
    """Set mtime from the clock in full: the file system's own timestamps are coarse (jiffies), and
    two uses a millisecond apart must still sort in order."""
    now = time.time_ns()
    os.utime(fd, ns=(now, now))


def _holder_key(holder: str) -> str:
    return key_hash(holder.lower())  # model names are case-insensitive


def _digest_of(name: str) -> str:
    algo, _, hexdigest = name.partition("-")
    return f"{algo}:{hexdigest}"


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def tree_bytes(tree: Path) -> int:
    """The bytes of the files under `tree` (links not followed); files that vanish meanwhile count 0."""
    total = 0
    for directory, _dirs, files in os.walk(tree):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _mtime_ns(path: Path) -> int:
    try:
        return path.lstat().st_mtime_ns
    except OSError:
        return 0
