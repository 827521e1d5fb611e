"""Turning an untrusted tar(.gz), or the objects of an S3 prefix, into a plain tree of files.

The archive is hostile until proven otherwise (reliability.md §2.2, matrix row 11). `tarfile` only
parses headers here; every member is checked by us and written by us: only regular files and
directories, names that stay inside the tree, no special bits, and hard caps on the member count,
on the bytes actually written (so a gzip bomb stops at the cap whatever its headers claim) and on
the header bytes read between members (so a giant pax or long-name header cannot fill memory).
`filter="data"` is not used: it has had bypasses (CVE-2025-4517 family) and we need none of it,
because nothing in the tree we build can be a link.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from moorage.artifacts.diskspace import DiskGuard
from moorage.artifacts.sources import CHUNK_BYTES, ProgressCallback
from moorage.errors import ArtifactError, ArtifactSourceError, UnsafeArchiveError
from moorage.settings import ArtifactPolicy

__all__ = ["ExtractStats", "FileSink", "TreeWriter", "extract_archive", "member_parts", "tree_digest"]

# SageMaker SDK's repack writes a root member named "" (spec §1.2); tar tools write "." or "./".
_ROOT_NAMES = frozenset({"", ".", "./"})
_MAX_COMPONENT_BYTES = 255
_MAX_HEADER_BYTES = 1024 * 1024 + 64 * 1024  # pax/long-name data before one member, plus read-ahead
_FILE_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})
_REFUSED_TYPES = {
    tarfile.SYMTYPE: "symbolic links are not allowed",
    tarfile.LNKTYPE: "hard links are not allowed",
    tarfile.CHRTYPE: "character devices are not allowed",
    tarfile.BLKTYPE: "block devices are not allowed",
    tarfile.FIFOTYPE: "FIFOs are not allowed",
    tarfile.GNUTYPE_SPARSE: "sparse files are not allowed",
}


@dataclass(frozen=True)
class ExtractStats:
    files: int
    bytes_written: int
    file_hashes: dict[str, str] = field(default_factory=dict)  # relative path → sha256 as written


def _unsafe(name: str, source: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"unsafe member {name!r} in {source}: {why}")


def member_parts(name: str, source: str) -> tuple[str, ...]:
    """The path components of a member name, or UnsafeArchiveError if it could leave the tree."""
    if "\x00" in name:
        raise _unsafe(name, source, "its name contains a NUL byte")
    if name in _ROOT_NAMES:
        return ()
    if name.startswith("/"):
        raise _unsafe(name, source, "absolute names are not allowed")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise _unsafe(name, source, "its name has a '..' component")
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES:
            raise _unsafe(name, source, f"a name component is longer than {_MAX_COMPONENT_BYTES} bytes")
        parts.append(part)
    return tuple(parts)


class FileSink:
    """One file being written into the tree: counts, hashes and caps its bytes (a `ByteSink`)."""

    def __init__(self, writer: TreeWriter, handle: BinaryIO, name: str) -> None:
        self._writer = writer
        self._handle = handle
        self._name = name
        self._hash = hashlib.sha256()
        self.written = 0

    def restart(self, total: int | None) -> None:
        self._writer.uncount(self.written)
        self._handle.seek(0)
        self._handle.truncate()
        self._hash = hashlib.sha256()
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self._writer.count(len(chunk), self._name)
        self._handle.write(chunk)
        self._hash.update(chunk)
        self.written += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class TreeWriter:
    """Builds a tree under `root` from checked member names; nothing it creates can be a link.

    Files get 0o644, or 0o755 when the member's owner-exec bit is set; directories get 0o755 (the
    cache seals them read-only once the tree is complete, `manifest.seal`). setuid/setgid/sticky bits
    never survive. A later member may replace a file with a file, but may not turn a directory into
    a file or a file into a directory. Each file's declared size must fit on the disk above
    MOORAGE_DISK_RESERVE_BYTES before it is written (`diskspace`).
    """

    def __init__(
        self,
        root: Path,
        *,
        source: str,
        policy: ArtifactPolicy,
        progress: ProgressCallback | None = None,
        phase: str = "extract",
        expected_bytes: int | None = None,
    ) -> None:
        root.mkdir(mode=0o755)
        self.root = root
        self._source = source
        self._policy = policy
        self._progress = progress
        self._phase = phase
        self._expected = expected_bytes
        self._kinds: dict[tuple[str, ...], Literal["dir", "file"]] = {(): "dir"}
        self._hashes: dict[tuple[str, ...], str] = {}
        self._disk = DiskGuard(root, policy.disk_reserve_bytes, source=source)
        self.members = 0
        self.bytes_written = 0

    def admit(self, name: str) -> None:
        """Count one more member against the member cap."""
        self.members += 1
        if self.members > self._policy.max_members:
            raise _unsafe(
                name,
                self._source,
                f"the archive has more than {self._policy.max_members} members (MOORAGE_MAX_ARCHIVE_MEMBERS)",
            )

    def count(self, size: int, name: str) -> None:
        self.bytes_written += size
        if self.bytes_written > self._policy.max_extracted_bytes:
            raise _unsafe(
                name,
                self._source,
                f"the archive extracts to more than {self._policy.max_extracted_bytes} bytes "
                "(MOORAGE_MAX_EXTRACTED_BYTES)",
            )
        self._disk.written(size, name)
        if self._progress is not None:
            self._progress(self._phase, self.bytes_written, self._expected)

    def uncount(self, size: int) -> None:
        self.bytes_written -= size

    def expect(self, size: int, name: str) -> None:
        """Refuse early a member whose declared size alone would cross the cap or the disk reserve
        (`count` still guards both while the bytes flow)."""
        if self.bytes_written + size > self._policy.max_extracted_bytes:
            self.count(size, name)
        self._disk.require(size, name)

    @property
    def files(self) -> int:
        return len(self._hashes)

    def directory(self, name: str) -> None:
        self._make_dirs(member_parts(name, self._source), name)

    @contextlib.contextmanager
    def file(self, name: str, *, executable: bool = False) -> Iterator[FileSink]:
        parts = member_parts(name, self._source)
        if not parts:
            raise _unsafe(name, self._source, "a file cannot replace the model directory itself")
        if self._kinds.get(parts) == "dir":
            raise _unsafe(name, self._source, "a directory earlier in the archive cannot become a file")
        self._make_dirs(parts[:-1], name)
        path = self.root.joinpath(*parts)
        # O_NOFOLLOW and our own tree (no links in it, ever) keep every write inside `root`.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(path, flags, 0o600), "wb") as handle:
            sink = FileSink(self, handle, name)
            yield sink
            handle.flush()
            os.fchmod(handle.fileno(), 0o755 if executable else 0o644)
            os.fsync(handle.fileno())
        self._kinds[parts] = "file"
        self._hashes[parts] = sink.hexdigest()

    def _make_dirs(self, parts: tuple[str, ...], name: str) -> None:
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            kind = self._kinds.get(prefix)
            if kind == "file":
                raise _unsafe(
                    name,
                    self._source,
                    f"{'/'.join(prefix)!r} is a file earlier in the archive, not a directory",
                )
            if kind is None:
                path = self.root.joinpath(*prefix)
                os.mkdir(path, 0o755)
                os.chmod(path, 0o755)
                self._kinds[prefix] = "dir"

    def file_hashes(self) -> dict[str, str]:
        """sha256 of each file as written, by relative path (what `manifest.seal` records)."""
        return {"/".join(parts): digest for parts, digest in self._hashes.items()}

    def tree_digest(self) -> str:
        """The hex digest of this tree's manifest (see `tree_digest`)."""
        return _manifest_digest(("/".join(parts), digest) for parts, digest in self._hashes.items())


def tree_digest(root: Path) -> str:
    """sha256 of the sorted lines "<sha256 of file>  <relative path>\\n", one per file under `root`.

    The same as `(cd root && find . -type f | cut -c3- | LC_ALL=C sort | xargs -d '\\n' sha256sum)
    | sha256sum`, so a user can compute the pin of a model directory or S3 prefix by hand.
    """
    entries: list[tuple[str, str]] = []
    for directory, _dirs, files in os.walk(root):
        for file_name in files:
            path = Path(directory, file_name)
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    digest.update(chunk)
            entries.append((path.relative_to(root).as_posix(), digest.hexdigest()))
    return _manifest_digest(entries)


def _manifest_digest(entries: Iterator[tuple[str, str]] | list[tuple[str, str]]) -> str:
    manifest = hashlib.sha256()
    for relative, digest in sorted(entries, key=lambda entry: entry[0].encode("utf-8", "surrogateescape")):
        manifest.update(f"{digest}  {relative}\n".encode("utf-8", "surrogateescape"))
    return manifest.hexdigest()


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _MeteredReader:
    """The decompressed archive stream, with a cap on bytes read while tarfile parses headers."""

    def __init__(self, raw: _Readable, source: str) -> None:
        self._raw = raw
        self._source = source
        self._consumed = 0
        self._header_start: int | None = None
        self.last_member = ""

    def headers(self) -> None:
        self._header_start = self._consumed

    def data(self) -> None:
        self._header_start = None

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._consumed += len(chunk)
        if self._header_start is not None and self._consumed - self._header_start > _MAX_HEADER_BYTES:
            raise _unsafe(
                self.last_member,
                self._source,
                f"the header of the next member is larger than {_MAX_HEADER_BYTES} bytes",
            )
        return chunk


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    source: str,
    policy: ArtifactPolicy,
    progress: ProgressCallback | None = None,
) -> ExtractStats:
    """Extract a tar or tar.gz file into `dest` (which must not exist yet).

    On any error `dest` may hold a partial tree: the caller extracts into a workspace and throws
    it away. Raises UnsafeArchiveError naming the member, ArtifactSourceError for an unreadable
    archive, ArtifactError for local I/O failures (disk full).
    """
    writer = TreeWriter(dest, source=source, policy=policy, progress=progress)
    try:
        with archive.open("rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream: _Readable = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            reader = _MeteredReader(stream, source)
            reader.headers()
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                _extract_members(tar, reader, writer, source)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ArtifactSourceError(f"{source} is not a readable tar or tar.gz archive: {exc}") from exc
    except OSError as exc:
        raise ArtifactError(f"could not extract {source} into {dest.parent}: {exc.strerror or exc}") from exc
    return ExtractStats(
        files=writer.files, bytes_written=writer.bytes_written, file_hashes=writer.file_hashes()
    )


def _extract_members(tar: tarfile.TarFile, reader: _MeteredReader, writer: TreeWriter, source: str) -> None:
    while True:
        reader.headers()
        member = tar.next()
        reader.data()
        if member is None:
            return
        name = member.name
        reader.last_member = name
        writer.admit(name)
        member_parts(name, source)  # name checks come first, whatever the type
        if member.type in _REFUSED_TYPES:
            raise _unsafe(name, source, f"{_REFUSED_TYPES[member.type]} (only regular files and directories)")
        if member.sparse is not None:
            raise _unsafe(name, source, "sparse files are not allowed")
        if member.type == tarfile.DIRTYPE:
            writer.directory(name)
        elif member.type in _FILE_TYPES:
            _extract_file(tar, member, writer, source)
        else:
            raise _unsafe(name, source, f"member type {member.type!r} is not a regular file or directory")


def _extract_file(tar: tarfile.TarFile, member: tarfile.TarInfo, writer: TreeWriter, source: str) -> None:
    writer.expect(member.size, member.name)
    data = tar.extractfile(member)
    if data is None:
        raise _unsafe(member.name, source, "its data cannot be read")
    with data, writer.file(member.name, executable=bool(member.mode & 0o100)) as sink:
        while chunk := data.read(CHUNK_BYTES):
            sink.write(chunk)
        if sink.written != member.size:
            raise ArtifactSourceError(
                f"{source} is truncated: member {member.name!r} has {sink.written} of {member.size} bytes"
            )
