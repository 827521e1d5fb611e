"""Sealed trees, their manifests, leases, holds and the cache budget, on a real cache directory."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from moorage.artifacts import ModelSource, PreparedModel, prepare_model
from moorage.artifacts.cache import ArtifactCache
from moorage.artifacts.manifest import Manifest, seal, verify
from moorage.artifacts.trees import Trees, release_holder
from moorage.errors import ArtifactError
from moorage.settings import ArtifactPolicy

HANDLER = b"def model_fn(d):\n    return 'clean'\n"


def archive(path: Path, weights: bytes = b"w" * 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"model.pt": weights, "code/inference.py": HANDLER}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def prepare(
    cache: Path,
    source: Path,
    logs: list[str],
    *,
    policy: ArtifactPolicy | None = None,
    holder: str | None = None,
) -> PreparedModel:
    return prepare_model(
        ModelSource(str(source)),
        submit_directory=None,
        cache_dir=cache,
        policy=policy or ArtifactPolicy(),
        log=logs.append,
        holder=holder,
    )


# manifest -----------------------------------------------------------------------------------------
@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, Manifest]:
    root = tmp_path / "tree"
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_bytes(HANDLER)
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    return root, seal(root, {})


def writable(path: Path) -> None:
    os.chmod(path, stat.S_IMODE(path.stat().st_mode) | 0o200)


def test_seal_removes_every_write_bit_and_keeps_exec(sealed: tuple[Path, Manifest]) -> None:
    root, manifest = sealed
    assert stat.S_IMODE((root / "code" / "inference.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((root / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((root / "code").stat().st_mode) == 0o555
    assert stat.S_IMODE(root.stat().st_mode) == 0o555
    assert sorted(manifest.files) == ["code/inference.py", "run.sh"]
    assert manifest.dirs == {"": 0o555, "code": 0o555}
    assert manifest.total_bytes == len(HANDLER) + 10
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert verify(root, manifest) is None


def test_a_same_size_change_with_mode_and_mtime_restored_is_found(sealed: tuple[Path, Manifest]) -> None:
    root, manifest = sealed
    handler = root / "code" / "inference.py"
    before = handler.stat()
    writable(handler)
    handler.write_bytes(HANDLER.replace(b"clean", b"dirty"))
    os.chmod(handler, 0o444)
    os.utime(handler, ns=(before.st_atime_ns, before.st_mtime_ns))

    problem = verify(root, manifest)

    assert problem is not None and problem.startswith("code/inference.py has sha256 ")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("add", "code/sitecustomize.py was added"),
        ("remove", "run.sh was removed"),
        ("symlink", "code/link.py is no longer a regular file"),
        ("chmod", "run.sh has mode 755, not 555"),
        ("mkdir", "directory extra was added"),
    ],
)
def test_other_changes_are_found(sealed: tuple[Path, Manifest], change: str, expected: str) -> None:
    root, manifest = sealed
    writable(root)
    writable(root / "code")
    if change == "add":
        (root / "code" / "sitecustomize.py").write_text("import os\n")
    elif change == "remove":
        (root / "run.sh").unlink()
    elif change == "symlink":
        (root / "code" / "link.py").symlink_to("/etc/hostname")
    elif change == "chmod":
        os.chmod(root / "run.sh", 0o755)
    else:
        (root / "extra").mkdir()
    os.chmod(root, 0o555)
    os.chmod(root / "code", 0o555)

    assert verify(root, manifest) == expected


# reuse through prepare_model ---------------------------------------------------------------------
def test_a_tree_without_its_manifest_is_extracted_again(tmp_path: Path) -> None:
    source, logs = archive(tmp_path / "m.tar.gz"), list[str]()
    first = prepare(tmp_path / "cache", source, logs)
    record = Trees(ArtifactCache(tmp_path / "cache"), ArtifactPolicy()).record(first.digest)
    (record / "manifest.json").unlink()

    again = prepare(tmp_path / "cache", source, logs)

    assert again.model_dir == first.model_dir
    assert any("it has no manifest; discarding it" in line for line in logs)
    assert (record / "manifest.json").is_file()


def test_a_tampered_tree_found_by_a_second_download_of_the_same_content(tmp_path: Path) -> None:
    """Another archive file with the same bytes finds the tree by digest: it is verified too."""
    logs: list[str] = []
    first = prepare(tmp_path / "cache", archive(tmp_path / "a" / "m.tar.gz"), logs)
    handler = first.model_dir / "code" / "inference.py"
    writable(handler)
    with handler.open("ab") as tampered:
        tampered.write(b"import os\n")

    copy = tmp_path / "b" / "m.tar.gz"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "a" / "m.tar.gz").read_bytes())
    again = prepare(tmp_path / "cache", copy, logs)

    assert (again.model_dir / "code" / "inference.py").read_bytes() == HANDLER
    assert any("code/inference.py has 46 bytes, not 36" in line for line in logs)


# disk -------------------------------------------------------------------------------------------
def test_an_archive_that_would_cross_the_disk_reserve_is_refused_before_writing(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    policy = ArtifactPolicy(disk_reserve_bytes=free + 10**12)

    with pytest.raises(ArtifactError, match=r"'model.pt' needs 1000 B, .* short; free some space"):
        prepare(tmp_path / "cache", archive(tmp_path / "m.tar.gz"), [], policy=policy)

    assert list((tmp_path / "cache" / "models").iterdir()) == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


# holds, leases and the budget -------------------------------------------------------------------
def test_a_lease_keeps_a_tree_over_budget_and_release_lets_it_go(tmp_path: Path) -> None:
    policy = ArtifactPolicy(cache_max_bytes=1500)
    cache, logs = tmp_path / "cache", list[str]()
    first = prepare(cache, archive(tmp_path / "a.tar.gz", b"a" * 1000), logs, policy=policy, holder="A")
    second = prepare(cache, archive(tmp_path / "b.tar.gz", b"b" * 1000), logs, policy=policy, holder="B")
    assert first.model_dir.is_dir() and second.model_dir.is_dir()  # over budget, both leased

    first.release()

    assert not first.model_dir.exists()
    assert second.model_dir.is_dir()


def test_release_holder_frees_only_trees_no_other_model_holds_and_nobody_uses(tmp_path: Path) -> None:
    cache, policy = tmp_path / "cache", ArtifactPolicy()
    source = archive(tmp_path / "m.tar.gz")
    one = prepare(cache, source, [], holder="One")
    two = prepare(cache, source, [], holder="two")
    one.release()
    two.release()

    release_holder(cache, policy, "one")  # names are case-insensitive
    assert one.model_dir.is_dir()  # "two" holds it still

    used = prepare(cache, source, [])
    release_holder(cache, policy, "TWO")
    assert used.model_dir.is_dir()  # no holder left, but in use

    used.release()
    assert not used.model_dir.exists()
    assert not Trees(ArtifactCache(cache), policy).record(used.digest).exists()


def test_an_unheld_tree_stays_in_budget_until_the_budget_needs_the_room(tmp_path: Path) -> None:
    """serve-model and direct callers hold nothing: their trees are plain cache entries."""
    cache, policy = tmp_path / "cache", ArtifactPolicy(cache_max_bytes=2500)
    sources = [archive(tmp_path / f"{n}.tar.gz", n.encode() * 1000) for n in "abc"]
    prepared = [prepare(cache, source, [], policy=policy) for source in sources[:2]]
    for model in prepared:
        model.release()
    assert [model.model_dir.is_dir() for model in prepared] == [True, True]

    third = prepare(cache, sources[2], [], policy=policy)

    assert [m.model_dir.is_dir() for m in (*prepared, third)] == [False, True, True]
