"""Local sources, file-root policy, pins, the cache's identity and concurrency, and the legacy layout."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from moorage.artifacts import ModelSource, PreparedModel, prepare_model
from moorage.artifacts.cache import ArtifactCache
from moorage.artifacts.extract import tree_digest
from moorage.errors import ArtifactSourceError, IntegrityError
from moorage.settings import ArtifactPolicy


def make_archive(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


MODEL_FILES = {"model.pt": b"weights", "code/inference.py": b"def model_fn(d):\n    return d\n"}


class Preparer:
    def __init__(self, base: Path) -> None:
        self.cache = base / "cache"
        self.logs: list[str] = []
        self.phases: list[str] = []

    def __call__(
        self,
        url: str,
        *,
        policy: ArtifactPolicy | None = None,
        sha256: str | None = None,
        etag: str | None = None,
        submit_directory: str | None = None,
    ) -> PreparedModel:
        return prepare_model(
            ModelSource(url, sha256=sha256, etag=etag),
            submit_directory=submit_directory,
            cache_dir=self.cache,
            policy=policy or ArtifactPolicy(),
            log=self.logs.append,
            progress=lambda phase, done, total: self.phases.append(phase),
        )


@pytest.fixture
def prepare(tmp_path: Path) -> Preparer:
    return Preparer(tmp_path)


def test_local_archive_is_extracted_and_identified_by_its_sha256(tmp_path: Path, prepare: Preparer) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", MODEL_FILES)
    expected = hashlib.sha256(archive.read_bytes()).hexdigest()

    prepared = prepare(archive.as_uri())

    assert prepared.digest == f"sha256:{expected}"
    assert prepared.model_dir == prepare.cache / "models" / f"sha256-{expected}"
    assert prepared.code_dir == prepared.model_dir / "code"
    assert prepared.deps_dir is None
    assert (prepared.model_dir / "model.pt").read_bytes() == b"weights"
    assert "download" in prepare.phases and "extract" in prepare.phases


def test_second_prepare_of_the_same_file_reads_and_extracts_nothing(
    tmp_path: Path, prepare: Preparer
) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", MODEL_FILES)
    first = prepare(str(archive))
    inode = first.model_dir.stat().st_ino
    prepare.phases.clear()

    second = prepare(str(archive))

    assert second == first
    assert second.model_dir.stat().st_ino == inode
    assert prepare.phases == []
    assert (
        prepare.logs[-1]
        == f"{archive} is unchanged since it was prepared as {first.digest}: nothing to download"
    )


def test_a_touched_file_with_the_same_content_is_read_again_but_not_extracted(
    tmp_path: Path, prepare: Preparer
) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", MODEL_FILES)
    first = prepare(str(archive))
    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    prepare.phases.clear()

    second = prepare(str(archive))

    assert second.digest == first.digest
    assert "download" in prepare.phases and "extract" not in prepare.phases
    assert any("has the same content as an earlier model" in line for line in prepare.logs)


def test_sha256_pin_is_checked_before_extraction(tmp_path: Path, prepare: Preparer) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", MODEL_FILES)
    actual = hashlib.sha256(archive.read_bytes()).hexdigest()

    with pytest.raises(IntegrityError) as caught:
        prepare(str(archive), sha256="0" * 64)

    assert caught.value.message.startswith(f"checksum mismatch for {archive}: its sha256 is {actual}")
    assert list((prepare.cache / "models").iterdir()) == []
    assert list((prepare.cache / "tmp").iterdir()) == []
    assert prepare(str(archive), sha256=f"sha256:{actual.upper()}").digest == f"sha256:{actual}"
    with pytest.raises(IntegrityError):  # the cached identity still answers to the pin
        prepare(str(archive), sha256="1" * 64)


def test_etag_pin_is_refused_for_a_local_source(tmp_path: Path, prepare: Preparer) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", MODEL_FILES)
    with pytest.raises(ArtifactSourceError, match="ETag pin applies to one s3:// object only"):
        prepare(str(archive), etag='"abc"')


def test_directory_is_used_in_place_and_its_pin_is_a_tree_manifest(tmp_path: Path, prepare: Preparer) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.pt").write_bytes(b"weights")
    (model / "code" / "inference.py").write_bytes(b"pass\n")
    by_hand = subprocess.run(
        "find . -type f | cut -c3- | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        shell=True,
        cwd=model,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]

    prepared = prepare(f"file://{model}", sha256=by_hand)

    assert tree_digest(model) == by_hand
    assert prepared.model_dir == model.resolve()
    assert prepared.digest == f"dir:{model.resolve()}"
    assert prepared.code_dir == model.resolve() / "code"
    assert not (prepare.cache / "models").exists() or list((prepare.cache / "models").iterdir()) == []
    (model / "model.pt").write_bytes(b"changed")
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        prepare(str(model), sha256=by_hand)


def test_file_roots_contain_by_path_components_after_resolving_symlinks(
    tmp_path: Path, prepare: Preparer
) -> None:
    allowed = tmp_path / "allowed"
    make_archive(allowed / "model.tar.gz", MODEL_FILES)
    sibling = make_archive(tmp_path / "allowed-not" / "model.tar.gz", MODEL_FILES)
    outside = make_archive(tmp_path / "outside" / "model.tar.gz", MODEL_FILES)
    (allowed / "link.tar.gz").symlink_to(outside)
    (allowed / "linkdir").symlink_to(outside.parent)
    policy = ArtifactPolicy(allowed_file_roots=(str(allowed),))

    assert prepare(str(allowed / "model.tar.gz"), policy=policy).digest.startswith("sha256:")
    for refused in (sibling, allowed / "link.tar.gz", allowed / "linkdir", allowed / ".." / "outside"):
        with pytest.raises(ArtifactSourceError) as caught:
            prepare(str(refused), policy=policy)
        assert "outside MOORAGE_ALLOWED_FILE_ROOTS" in caught.value.message
        assert str(refused) in caught.value.message


def test_file_sources_can_be_turned_off(tmp_path: Path, prepare: Preparer) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", MODEL_FILES)
    with pytest.raises(ArtifactSourceError, match="file sources are off"):
        prepare(str(archive), policy=ArtifactPolicy(allow_file_sources=False))


def test_missing_local_source_names_the_path(tmp_path: Path, prepare: Preparer) -> None:
    with pytest.raises(ArtifactSourceError, match="does not exist"):
        prepare(str(tmp_path / "nope.tar.gz"))
    with pytest.raises(ArtifactSourceError, match="unsupported scheme 'ftp'"):
        prepare("ftp://example.com/model.tar.gz")


def test_download_cap_applies_to_local_archives(tmp_path: Path, prepare: Preparer) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", {"model.pt": os.urandom(50_000)})
    with pytest.raises(ArtifactSourceError, match="download limit"):
        prepare(str(archive), policy=ArtifactPolicy(max_download_bytes=10_000))
    assert list((prepare.cache / "tmp").iterdir()) == []


def test_concurrent_prepares_of_one_archive_extract_it_once(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", {"model.pt": os.urandom(2_000_000)})
    logs: list[str] = []
    results: list[PreparedModel] = []
    start = threading.Barrier(6)

    def run() -> None:
        start.wait()
        results.append(
            prepare_model(
                ModelSource(str(archive)),
                submit_directory=None,
                cache_dir=tmp_path / "cache",
                policy=ArtifactPolicy(),
                log=logs.append,
            )
        )

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 6 and len({r.model_dir for r in results}) == 1
    assert sum(line.startswith("extracted ") for line in logs) == 1
    assert sum(line.startswith("downloading ") for line in logs) == 1
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_workspaces_of_dead_owners_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    dead = cache.tmp / "dead-owner"
    dead.mkdir()
    (dead / ".lock").touch()
    (dead / "archive").write_bytes(b"partial")
    with cache.workspace() as live:
        (live / "archive").write_bytes(b"in use")

        ArtifactCache(tmp_path / "cache")  # the next user sweeps

        assert not dead.exists()
        assert (live / "archive").read_bytes() == b"in use"
        fd = os.open(live / ".lock", os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert list(cache.tmp.iterdir()) == []


def test_workspace_of_a_killed_process_is_removed_on_next_use(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from moorage.artifacts.cache import ArtifactCache\n"
        "with ArtifactCache(Path(sys.argv[1])).workspace() as work:\n"
        "    (work / 'archive').write_bytes(b'half a download')\n"
        "    os._exit(9)\n"
    )
    died = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cache")], check=False)
    assert died.returncode == 9
    assert [entry.name for entry in (tmp_path / "cache" / "tmp").iterdir() if (entry / "archive").exists()]

    ArtifactCache(tmp_path / "cache")

    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_legacy_submit_directory_archive_becomes_the_code_dir(tmp_path: Path, prepare: Preparer) -> None:
    weights_only = make_archive(tmp_path / "src" / "model.tar.gz", {"model.pth": b"w"})
    sourcedir = make_archive(tmp_path / "src" / "sourcedir.tar.gz", {"inference.py": b"pass\n"})

    prepared = prepare(str(weights_only), submit_directory=sourcedir.as_uri())

    assert prepared.code_dir is not None and prepared.code_dir != prepared.model_dir
    assert (prepared.code_dir / "inference.py").read_bytes() == b"pass\n"
    assert prepared.code_dir.parent == prepare.cache / "models"


def test_informational_submit_directory_is_ignored(tmp_path: Path, prepare: Preparer) -> None:
    weights_only = make_archive(tmp_path / "src" / "model.tar.gz", {"model.pth": b"w"})

    assert prepare(str(weights_only), submit_directory="/opt/ml/model/code").code_dir is None


def test_model_code_dir_wins_over_a_submit_directory(tmp_path: Path, prepare: Preparer) -> None:
    archive = make_archive(tmp_path / "src" / "model.tar.gz", MODEL_FILES)

    prepared = prepare(str(archive), submit_directory=str(tmp_path / "never-fetched.tar.gz"))

    assert prepared.code_dir == prepared.model_dir / "code"
    assert any("is not used: the model has a code/ directory" in line for line in prepare.logs)
