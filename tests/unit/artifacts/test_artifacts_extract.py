"""Hostile and good archives through prepare_model with a local file source (reliability matrix row 11)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from moorage.artifacts import ModelSource, prepare_model
from moorage.artifacts.extract import member_parts
from moorage.errors import ArtifactSourceError, UnsafeArchiveError
from moorage.settings import ArtifactPolicy

Member = tuple[tarfile.TarInfo, bytes | None]


class _Zeros(io.RawIOBase):
    """`size` zero bytes, produced on demand, so a huge member costs no memory to build."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._left)
        buffer[:count] = bytes(count)
        self._left -= count
        return count


def entry(
    name: str,
    data: bytes | None = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    linkname: str = "",
) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    if kind == tarfile.REGTYPE and data is not None:
        info.size = len(data)
    return info, data if kind == tarfile.REGTYPE else None


def directory(name: str, mode: int = 0o755) -> Member:
    return entry(name, None, kind=tarfile.DIRTYPE, mode=mode)


def write_archive(path: Path, members: list[Member], *, compressed: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if compressed else "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


class Layout:
    """A cache dir and, next to it, a sentinel dir that hostile archives aim at."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.cache = base / "cache"
        self.sentinel = base / "sentinel"
        self.sentinel.mkdir()
        self.logs: list[str] = []

    def prepare(self, archive: Path, policy: ArtifactPolicy | None = None) -> Path:
        prepared = prepare_model(
            ModelSource(str(archive)),
            submit_directory=None,
            cache_dir=self.cache,
            policy=policy or ArtifactPolicy(),
            log=self.logs.append,
        )
        return prepared.model_dir

    def assert_nothing_left(self) -> None:
        assert list(self.sentinel.iterdir()) == []
        assert list((self.cache / "tmp").iterdir()) == []
        assert list((self.cache / "models").iterdir()) == []
        assert not (self.base / "evil").exists()


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def _hostile_cases(sentinel_hint: str) -> list[tuple[str, list[Member], str]]:
    """(bad member name, members, words the message must contain)."""
    return [
        ("code/../../sentinel/evil", [entry("code/../../sentinel/evil", b"x")], "'..' component"),
        ("../evil", [directory(""), entry("../evil", b"x")], "'..' component"),
        (f"{sentinel_hint}/evil", [entry(f"{sentinel_hint}/evil", b"x")], "absolute names"),
        (
            "code/link",
            [
                entry("code/link", kind=tarfile.SYMTYPE, linkname="../../sentinel"),
                entry("code/link/evil", b"x"),
            ],
            "symbolic links",
        ),
        (
            "code/inside",
            [entry("code/a.py", b"x"), entry("code/inside", kind=tarfile.SYMTYPE, linkname="a.py")],
            "symbolic links",
        ),
        (
            "hard",
            [entry("model.pt", b"x"), entry("hard", kind=tarfile.LNKTYPE, linkname="model.pt")],
            "hard links",
        ),
        (
            "outside-hard",
            [entry("outside-hard", kind=tarfile.LNKTYPE, linkname=f"{sentinel_hint}/target")],
            "hard links",
        ),
        ("tty", [entry("tty", kind=tarfile.CHRTYPE)], "character devices"),
        ("disk", [entry("disk", kind=tarfile.BLKTYPE)], "block devices"),
        ("pipe", [entry("pipe", kind=tarfile.FIFOTYPE)], "FIFOs"),
        ("x" * 256, [entry("x" * 256, b"x")], "longer than 255 bytes"),
        ("dir/" + "é" * 128, [entry("dir/" + "é" * 128, b"x")], "longer than 255 bytes"),
        ("a", [directory("a"), entry("a", b"x")], "cannot become a file"),
        ("a/b", [entry("a", b"x"), entry("a/b", b"y")], "is a file earlier"),
    ]


@pytest.mark.parametrize("index", range(len(_hostile_cases("/s"))))
def test_hostile_archive_is_refused_and_leaves_nothing(layout: Layout, index: int) -> None:
    bad_name, members, why = _hostile_cases(str(layout.sentinel))[index]
    archive = write_archive(layout.base / "in" / "model.tar.gz", members)

    with pytest.raises(UnsafeArchiveError) as caught:
        layout.prepare(archive)

    assert f"unsafe member {bad_name!r} in {archive}" in caught.value.message
    assert why in caught.value.message
    layout.assert_nothing_left()


def test_too_many_members_stops_at_the_cap(layout: Layout) -> None:
    archive = write_archive(
        layout.base / "in" / "m.tar", [entry(f"f{i}", b"x") for i in range(20)], compressed=False
    )

    with pytest.raises(UnsafeArchiveError) as caught:
        layout.prepare(archive, ArtifactPolicy(max_members=10))

    assert "unsafe member 'f10'" in caught.value.message
    assert "more than 10 members" in caught.value.message
    layout.assert_nothing_left()


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 MB of zeros in one member, about 200 kB compressed."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    info = tarfile.TarInfo("model.pt")
    info.size = 200 * 1024 * 1024
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        tar.addfile(info, io.BufferedReader(_Zeros(info.size)))
    return path


def test_gzip_bomb_stops_at_the_extracted_bytes_cap(layout: Layout, gzip_bomb: Path) -> None:
    assert gzip_bomb.stat().st_size < 1024 * 1024
    started = time.monotonic()

    with pytest.raises(UnsafeArchiveError) as caught:
        layout.prepare(gzip_bomb, ArtifactPolicy(max_extracted_bytes=10 * 1024 * 1024))

    assert "unsafe member 'model.pt'" in caught.value.message
    assert f"more than {10 * 1024 * 1024} bytes" in caught.value.message
    assert time.monotonic() - started < 2.0  # refused at the cap, not after inflating 200 MB
    layout.assert_nothing_left()


def test_many_small_members_are_stopped_by_counting_written_bytes(layout: Layout) -> None:
    members = [entry(f"part{i}", bytes(1024 * 1024)) for i in range(12)]
    archive = write_archive(layout.base / "in" / "parts.tar.gz", members)

    with pytest.raises(UnsafeArchiveError) as caught:
        layout.prepare(archive, ArtifactPolicy(max_extracted_bytes=10 * 1024 * 1024))

    assert "unsafe member 'part10'" in caught.value.message
    layout.assert_nothing_left()


def test_a_giant_pax_header_is_refused_before_it_fills_memory(layout: Layout) -> None:
    info, data = entry("model.pt", b"x")
    info.pax_headers = {"comment": "x" * (4 * 1024 * 1024)}
    archive = write_archive(layout.base / "in" / "pax.tar.gz", [entry("first", b"1"), (info, data)])

    with pytest.raises(UnsafeArchiveError) as caught:
        layout.prepare(archive)

    assert "unsafe member 'first'" in caught.value.message
    assert "header of the next member is larger than" in caught.value.message
    layout.assert_nothing_left()


def test_truncated_archive_is_refused(layout: Layout) -> None:
    archive = write_archive(
        layout.base / "in" / "m.tar", [entry("model.pt", bytes(100_000))], compressed=False
    )
    archive.write_bytes(archive.read_bytes()[:20_000])

    with pytest.raises(ArtifactSourceError) as caught:
        layout.prepare(archive)

    assert "truncated" in caught.value.message or "not a readable tar" in caught.value.message
    layout.assert_nothing_left()


def test_a_file_that_is_not_an_archive_is_refused(layout: Layout) -> None:
    archive = layout.base / "in" / "model.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"this is not a tar archive at all" * 100)

    with pytest.raises(ArtifactSourceError) as caught:
        layout.prepare(archive)

    assert f"{archive} is not a readable tar or tar.gz archive" in caught.value.message
    layout.assert_nothing_left()


@pytest.mark.parametrize("root", ["", ".", "./"])
@pytest.mark.parametrize("compressed", [True, False])
def test_good_archive_with_root_member_extracts_with_safe_modes(
    layout: Layout, root: str, compressed: bool
) -> None:
    prefix = "./" if root.startswith(".") else ""
    members = [
        directory(root, mode=0o777),
        directory(f"{prefix}code", mode=0o777),
        entry(f"{prefix}code/inference.py", b"def model_fn(d):\n    return d\n", mode=0o4755),
        entry(f"{prefix}code/helper.py", b"X = 1\n", mode=0o2666),
        entry(f"{prefix}model.pt", b"weights-v1", mode=0o1600),
        entry(f"{prefix}model.pt", b"weights-v2", mode=0o600),  # a later member replaces a file
        entry(f"{prefix}deep/er/file.bin", b"\x00\x01"),  # parents created implicitly
    ]
    archive = write_archive(layout.base / "in" / "model.tar.gz", members, compressed=compressed)

    model_dir = layout.prepare(archive)

    def mode(relative: str) -> int:
        return stat.S_IMODE(os.stat(model_dir / relative).st_mode)

    assert (model_dir / "code" / "inference.py").read_bytes() == b"def model_fn(d):\n    return d\n"
    assert (model_dir / "model.pt").read_bytes() == b"weights-v2"
    assert (model_dir / "deep" / "er" / "file.bin").read_bytes() == b"\x00\x01"
    # Sealed read-only in the cache (docs/security.md, "Model trees and disk").
    assert mode("code/inference.py") == 0o555  # setuid dropped, owner exec kept
    assert mode("code/helper.py") == 0o444  # setgid dropped
    assert mode("model.pt") == 0o444
    assert mode("code") == 0o555
    assert mode("deep/er") == 0o555
    assert model_dir.parent == layout.cache / "models"
    assert list((layout.cache / "tmp").iterdir()) == []
    assert any(line.startswith(f"extracted {archive}: 4 files") for line in layout.logs)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("", ()),
        (".", ()),
        ("./", ()),
        ("./code/inference.py", ("code", "inference.py")),
        ("code//x/./y/", ("code", "x", "y")),
        ("a" * 255, ("a" * 255,)),
    ],
)
def test_member_parts_accepts_names_inside_the_tree(name: str, parts: tuple[str, ...]) -> None:
    assert member_parts(name, "src") == parts


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a/\x00b", "NUL byte"),
        ("/etc/passwd", "absolute"),
        ("a/../../b", "'..'"),
        ("..", "'..'"),
        ("a/" + "b" * 256, "longer than 255"),
    ],
)
def test_member_parts_refuses_names_that_could_escape(name: str, why: str) -> None:
    with pytest.raises(UnsafeArchiveError) as caught:
        member_parts(name, "s3://b/k")
    assert caught.value.message.startswith(f"unsafe member {name!r} in s3://b/k: ")
    assert why in caught.value.message
