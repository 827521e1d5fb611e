"""The repack rules of spec §1.2: what ends up in code/ of the new model.tar.gz, and what stays."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from moorage.sdk.errors import InvalidArgument, PackagingError
from moorage.sdk.repack import CodeSpec, code_spec, repack


def make_tar(path: Path, members: dict[str, bytes | None], *, mode: str = "w:gz") -> Path:
    """A tarball whose members are given by name (None: a directory), in this order."""
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(content))
    return path


def read_tar(path: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            extracted = archive.extractfile(member) if member.isfile() else None
            found[member.name] = extracted.read() if extracted else None
    return found


@pytest.fixture
def handler(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "inference.py"
    path.parent.mkdir()
    path.write_text("def model_fn(model_dir):\n    return 'new'\n")
    return path


def test_entry_point_is_added_to_a_new_code_dir(tmp_path: Path, handler: Path) -> None:
    original = make_tar(tmp_path / "in.tar.gz", {"model_0.pth": b"weights", "README": b"hi"})
    repack(original, tmp_path / "out.tar.gz", code_spec(handler, None))
    assert read_tar(tmp_path / "out.tar.gz") == {
        "model_0.pth": b"weights",
        "README": b"hi",
        "code": None,
        "code/inference.py": handler.read_bytes(),
    }


def test_entry_point_replaces_its_namesake_and_keeps_the_rest_of_code(tmp_path: Path, handler: Path) -> None:
    original = make_tar(
        tmp_path / "in.tar.gz",
        {
            "model.pt": b"w",
            "code": None,
            "code/inference.py": b"old handler",
            "code/helper.py": b"kept",
            "code/requirements.txt": b"numpy\n",
        },
    )
    repack(original, tmp_path / "out.tar.gz", code_spec(handler, None))
    members = read_tar(tmp_path / "out.tar.gz")
    assert members == {
        "model.pt": b"w",
        "code": None,
        "code/helper.py": b"kept",
        "code/requirements.txt": b"numpy\n",
        "code/inference.py": handler.read_bytes(),
    }


def test_source_dir_replaces_the_whole_code_dir(tmp_path: Path) -> None:
    source = tmp_path / "project"
    (source / "pkg").mkdir(parents=True)
    (source / "serve.py").write_text("# handler\n")
    (source / "pkg" / "util.py").write_text("X = 1\n")
    original = make_tar(
        tmp_path / "in.tar.gz",
        {
            "model.pt": b"w",
            "code": None,
            "code/inference.py": b"old",
            "code/stale.py": b"gone",
            "codex": b"kept",
        },
    )
    spec = code_spec("serve.py", source)
    assert (spec.entry_point, spec.program) == (source / "serve.py", "serve.py")
    repack(original, tmp_path / "out.tar.gz", spec)
    assert read_tar(tmp_path / "out.tar.gz") == {
        "model.pt": b"w",
        "codex": b"kept",
        "code": None,
        "code/pkg": None,
        "code/pkg/util.py": b"X = 1\n",
        "code/serve.py": b"# handler\n",
    }


def test_source_dir_without_entry_point(tmp_path: Path) -> None:
    source = tmp_path / "project"
    source.mkdir()
    (source / "inference.py").write_text("# default module name\n")
    original = make_tar(tmp_path / "in.tar.gz", {"model.pt": b"w"})
    spec = code_spec(None, source)
    assert spec.program is None  # the server's default, inference.py
    repack(original, tmp_path / "out.tar.gz", spec)
    assert read_tar(tmp_path / "out.tar.gz")["code/inference.py"] == b"# default module name\n"


def test_member_names_are_normalised(tmp_path: Path, handler: Path) -> None:
    # `tar czf model.tar.gz .` writes "./" entries; SageMaker's own repack writes a "" root entry.
    original = make_tar(
        tmp_path / "in.tar.gz",
        {"./": None, "./model.pt": b"w", "./code/": None, "./code/inference.py": b"old", "/abs.txt": b"a"},
    )
    repack(original, tmp_path / "out.tar.gz", code_spec(handler, None))
    assert read_tar(tmp_path / "out.tar.gz") == {
        "model.pt": b"w",
        "code": None,
        "abs.txt": b"a",
        "code/inference.py": handler.read_bytes(),
    }


def test_an_uncompressed_tar_is_read_too(tmp_path: Path, handler: Path) -> None:
    original = make_tar(tmp_path / "in.tar", {"model.pt": b"w"}, mode="w")
    repack(original, tmp_path / "out.tar.gz", code_spec(handler, None))
    assert set(read_tar(tmp_path / "out.tar.gz")) == {"model.pt", "code", "code/inference.py"}


def test_symlinked_code_is_stored_as_plain_files(tmp_path: Path) -> None:
    source = tmp_path / "project"
    source.mkdir()
    (tmp_path / "shared.py").write_text("SHARED = True\n")
    (source / "inference.py").write_text("from shared import SHARED\n")
    (source / "shared.py").symlink_to(tmp_path / "shared.py")
    original = make_tar(tmp_path / "in.tar.gz", {"model.pt": b"w"})
    repack(original, tmp_path / "out.tar.gz", code_spec("inference.py", source))
    with tarfile.open(tmp_path / "out.tar.gz") as archive:
        shared = archive.getmember("code/shared.py")
        assert shared.isfile()
        extracted = archive.extractfile(shared)
        assert extracted is not None and extracted.read() == b"SHARED = True\n"


def test_a_member_that_escapes_is_refused(tmp_path: Path, handler: Path) -> None:
    original = make_tar(tmp_path / "in.tar.gz", {"model.pt": b"w", "../../etc/evil": b"x"})
    with pytest.raises(PackagingError, match="points outside the archive"):
        repack(original, tmp_path / "out.tar.gz", code_spec(handler, None))


def test_not_a_tarball(tmp_path: Path, handler: Path) -> None:
    bogus = tmp_path / "model.tar.gz"
    bogus.write_bytes(b"this is not gzip at all")
    with pytest.raises(PackagingError, match=r"is not a readable tar\.gz archive"):
        repack(bogus, tmp_path / "out.tar.gz", code_spec(handler, None))


def test_truncated_tarball(tmp_path: Path, handler: Path) -> None:
    whole = make_tar(tmp_path / "in.tar.gz", {"model.pt": bytes(range(256)) * 4096})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(PackagingError):
        repack(cut, tmp_path / "out.tar.gz", code_spec(handler, None))


def test_nothing_to_add_copies_the_archive(tmp_path: Path) -> None:
    original = make_tar(tmp_path / "in.tar.gz", {"model.pt": b"w", "code": None, "code/inference.py": b"h"})
    repack(original, tmp_path / "out.tar.gz", CodeSpec(entry_point=None, source_dir=None))
    assert read_tar(tmp_path / "out.tar.gz") == {"model.pt": b"w", "code": None, "code/inference.py": b"h"}


@pytest.mark.parametrize(
    ("entry_point", "source_dir", "message"),
    [
        ("missing.py", None, "entry_point missing.py is not a file"),
        ("missing.py", "SRC", 'No file named "missing.py" was found in directory'),
        (None, "NOWHERE", "is not a directory"),
        ("inference.py", "s3://bucket/sourcedir.tar.gz", "must be a local directory"),
    ],
)
def test_bad_paths_are_invalid_arguments(
    tmp_path: Path, handler: Path, entry_point: str | None, source_dir: str | None, message: str
) -> None:
    directory = {"SRC": str(handler.parent), "NOWHERE": str(tmp_path / "nowhere")}.get(
        source_dir or "", source_dir
    )
    with pytest.raises(InvalidArgument, match=message):
        code_spec(entry_point, directory)


def test_relative_entry_point_is_inside_source_dir(handler: Path) -> None:
    spec = code_spec("inference.py", handler.parent)
    assert spec == CodeSpec(entry_point=handler.parent / "inference.py", source_dir=handler.parent)
