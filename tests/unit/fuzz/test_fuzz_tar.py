"""Fuzzing the tar validator: archives of random members (names, types, links, modes, sizes) and random bytes.

Whatever the archive, `extract_archive` either builds a tree or raises ArtifactError (UnsafeArchiveError
for a member it refuses, ArtifactSourceError for an unreadable archive); it never raises anything
else, never writes outside its destination, and never leaves a link or a special permission bit.
Where the tests promise a refusal, they check it: an archive that Python's own tarfile cannot read
through (headers, then every member's bytes) must be refused, never half-extracted.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from moorage.artifacts.extract import extract_archive
from moorage.errors import ArtifactError
from moorage.settings import ArtifactPolicy

FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
POLICY = ArtifactPolicy(max_members=12, max_extracted_bytes=4096)

PARTS = ["..", ".", "", "a", "b", "code", "sentinel", "n" * 256, "é", "a\x00b", " "]
TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    b"Z",  # not a tar type at all
]

names = st.builds(
    lambda leading, parts: leading + "/".join(parts),
    st.sampled_from(["", "/", "./", "../"]),
    st.lists(st.sampled_from(PARTS) | st.text(max_size=4), min_size=1, max_size=4),
)
members = st.lists(
    st.tuples(
        names,
        st.sampled_from(TYPES),
        st.binary(max_size=64),
        st.sampled_from(["", "/", "..", "../sentinel", "a", "/etc/passwd", "code/../.."]),
        st.sampled_from([0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o7777, 0]),
    ),
    min_size=1,
    max_size=8,
)


def build(path: Path, entries: list[tuple[str, bytes, bytes, str, int]], compress: bool) -> None:
    with tarfile.open(path, "w:gz" if compress else "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, linkname, mode in entries:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = kind, linkname, mode
            regular = kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
            info.size = len(data) if regular else 0
            tar.addfile(info, io.BytesIO(data) if regular else None)


def readable(archive: Path) -> bool:
    """Whether tarfile reads the archive to its end: every header, and every regular member's bytes."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isreg():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    handle.read()
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error):
        return False
    return True


def check_extraction(archive: Path, root: Path) -> bool:
    """Extract, check that nothing escaped; True when extract_archive refused (with an ArtifactError)."""
    dest = root / "work" / "tree"
    dest.parent.mkdir()
    try:
        extract_archive(archive, dest, source="fuzz.tar", policy=POLICY)
        refused = False
    except ArtifactError:
        refused = True
    # Nothing appeared next to the tree, above it, or in the sentinel.
    assert sorted(os.listdir(root)) == sorted(["work", "sentinel", archive.name])
    assert os.listdir(root / "sentinel") == []
    assert os.listdir(root / "work") in ([], ["tree"])
    for directory, dirs, files in os.walk(dest):
        for entry in dirs + files:
            path = Path(directory, entry)
            mode = path.lstat().st_mode
            assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), path
            assert mode & 0o7000 == 0, path
            assert path.resolve().is_relative_to(dest.resolve())
    return refused


@FAST
@given(members, st.booleans())
def test_random_members_never_escape_and_fail_only_as_artifact_errors(
    entries: list[tuple[str, bytes, bytes, str, int]], compress: bool
) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        (root / "sentinel").mkdir()
        archive = root / "fuzz.tar"
        try:
            build(archive, entries, compress)
        except (ValueError, UnicodeError, tarfile.TarError):
            reject()  # tarfile itself cannot write this member
        check_extraction(archive, root)


@FAST
@given(st.binary(max_size=2048), st.booleans())
def test_random_bytes_are_refused_as_artifact_errors(data: bytes, gzip_header: bool) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        (root / "sentinel").mkdir()
        archive = root / "fuzz.tar"
        archive.write_bytes((b"\x1f\x8b" if gzip_header else b"") + data)
        refused = check_extraction(archive, root)
        if not readable(archive):
            assert refused, "an archive tarfile cannot read was not refused"


def test_the_random_bytes_test_sees_refusals() -> None:
    """The property above is not vacuous: plain noise is unreadable, and refused."""
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        (root / "sentinel").mkdir()
        archive = root / "fuzz.tar"
        archive.write_bytes(b"\x1f\x8b" + b"not a gzip stream" * 10)
        assert not readable(archive)
        assert check_extraction(archive, root)


@FAST
@given(st.binary(min_size=1, max_size=512), st.integers(0, 20_000))
def test_a_corrupted_archive_is_refused_as_an_artifact_error(noise: bytes, offset: int) -> None:
    """A valid archive with bytes overwritten somewhere: headers, sizes and checksums go wrong."""
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        (root / "sentinel").mkdir()
        archive = root / "fuzz.tar"
        build(
            archive,
            [
                ("code/inference.py", tarfile.REGTYPE, b"x" * 700, "", 0o644),
                ("d", tarfile.DIRTYPE, b"", "", 0o755),
            ],
            False,
        )
        raw = bytearray(archive.read_bytes())
        at = offset % len(raw)
        raw[at : at + len(noise)] = noise
        archive.write_bytes(bytes(raw))
        refused = check_extraction(archive, root)
        if not readable(archive):  # noise in a file's bytes only leaves a valid archive: either outcome
            assert refused, "a corrupted archive tarfile cannot read was not refused"
