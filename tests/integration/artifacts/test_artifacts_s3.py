"""S3 model sources against a real moto server on 127.0.0.1, with objects uploaded by boto3."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from moorage.artifacts import ModelSource, PreparedModel, prepare_model
from moorage.artifacts.extract import tree_digest
from moorage.errors import ArtifactSourceError, IntegrityError, UnsafeArchiveError
from moorage.settings import ArtifactPolicy
from support.aws import offline_credentials

pytestmark = pytest.mark.slow

BUCKET = "models"


def archive_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with offline_credentials(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(scope="module")
def s3_endpoint(aws_env: None) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A client with a fresh, empty bucket named BUCKET (the previous test's bucket is emptied)."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, config=Config(s3={"addressing_style": "path"}))
    if any(b["Name"] == BUCKET for b in client.list_buckets()["Buckets"]):
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.delete_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket=BUCKET)
    return client


class Preparer:
    def __init__(self, cache: Path, endpoint: str) -> None:
        self.cache = cache
        self.endpoint = endpoint
        self.logs: list[str] = []
        self.downloaded: list[int] = []

    def __call__(
        self, source: ModelSource, *, policy: ArtifactPolicy | None = None, **kw: Any
    ) -> PreparedModel:
        def progress(phase: str, done: int, total: int | None) -> None:
            if phase == "download":
                self.downloaded.append(done)

        return prepare_model(
            source,
            submit_directory=kw.pop("submit_directory", None),
            cache_dir=self.cache,
            policy=policy or ArtifactPolicy(),
            s3_endpoint_url=self.endpoint,
            log=self.logs.append,
            progress=progress,
            **kw,
        )


@pytest.fixture
def prepare(tmp_path: Path, s3_endpoint: str) -> Preparer:
    return Preparer(tmp_path / "cache", s3_endpoint)


def test_second_prepare_of_the_same_object_downloads_nothing(s3: Any, prepare: Preparer) -> None:
    body = archive_bytes({"model.pt": b"w" * 10_000, "code/inference.py": b"pass\n"})
    s3.put_object(Bucket=BUCKET, Key="m/model.tar.gz", Body=body)
    source = ModelSource(f"s3://{BUCKET}/m/model.tar.gz")

    first = prepare(source)
    assert first.digest == f"sha256:{hashlib.sha256(body).hexdigest()}"
    assert prepare.downloaded[-1] == len(body)
    assert (first.model_dir / "code" / "inference.py").read_bytes() == b"pass\n"
    prepare.downloaded.clear()

    second = prepare(source)

    assert second == first
    assert prepare.downloaded == []
    url = f"s3://{BUCKET}/m/model.tar.gz"
    assert (
        prepare.logs[-1] == f"{url} is unchanged since it was prepared as {first.digest}: nothing to download"
    )


def test_a_replaced_object_is_downloaded_again(s3: Any, prepare: Preparer) -> None:
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=archive_bytes({"model.pt": b"v1"}))
    first = prepare(ModelSource(f"s3://{BUCKET}/model.tar.gz"))
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=archive_bytes({"model.pt": b"v2"}))

    second = prepare(ModelSource(f"s3://{BUCKET}/model.tar.gz"))

    assert second.digest != first.digest
    assert (second.model_dir / "model.pt").read_bytes() == b"v2"
    assert (first.model_dir / "model.pt").read_bytes() == b"v1"


def test_etag_pin_mismatch_downloads_and_extracts_nothing(s3: Any, prepare: Preparer) -> None:
    put = s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=archive_bytes({"model.pt": b"w"}))
    url = f"s3://{BUCKET}/model.tar.gz"

    with pytest.raises(IntegrityError) as caught:
        prepare(ModelSource(url, etag='"0123456789abcdef0123456789abcdef"'))

    assert caught.value.message.startswith(f"checksum mismatch for {url}: its ETag is {put['ETag']}")
    assert prepare.downloaded == []
    assert list((prepare.cache / "models").iterdir()) == []
    assert list((prepare.cache / "tmp").iterdir()) == []
    # The right pin, with or without its quotes, is accepted.
    assert prepare(ModelSource(url, etag=put["ETag"].strip('"'))).digest.startswith("sha256:")


def test_sha256_pin_mismatch_extracts_nothing(s3: Any, prepare: Preparer) -> None:
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=archive_bytes({"model.pt": b"w"}))

    with pytest.raises(IntegrityError, match="checksum mismatch"):
        prepare(ModelSource(f"s3://{BUCKET}/model.tar.gz", sha256="ab" * 32))

    assert list((prepare.cache / "models").iterdir()) == []


def test_missing_object_fails_at_once_naming_the_url(s3: Any, prepare: Preparer) -> None:
    started = time.monotonic()
    with pytest.raises(ArtifactSourceError) as caught:
        prepare(ModelSource(f"s3://{BUCKET}/nope/model.tar.gz"))
    assert caught.value.message.startswith(f"s3://{BUCKET}/nope/model.tar.gz does not exist")
    assert time.monotonic() - started < 2.0
    assert not any("retrying" in line for line in prepare.logs)


def test_bucket_outside_the_allowlist_is_refused_before_any_request(s3: Any, prepare: Preparer) -> None:
    with pytest.raises(ArtifactSourceError, match="bucket 'models' is not in MOORAGE_ALLOWED_S3_BUCKETS"):
        prepare(
            ModelSource(f"s3://{BUCKET}/model.tar.gz"), policy=ArtifactPolicy(allowed_s3_buckets=("other",))
        )


def test_unsigned_requests_are_used_when_there_are_no_credentials(
    s3: Any, prepare: Preparer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = archive_bytes({"model.pt": b"public"})
    s3.put_object(Bucket=BUCKET, Key="public.tar.gz", Body=body, ACL="public-read")
    s3.put_object(Bucket=BUCKET, Key="private.tar.gz", Body=body)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    prepared = prepare(ModelSource(f"s3://{BUCKET}/public.tar.gz"))

    assert (prepared.model_dir / "model.pt").read_bytes() == b"public"
    with pytest.raises(ArtifactSourceError, match=re.escape("S3 refused to read s3://models/private.tar.gz")):
        prepare(ModelSource(f"s3://{BUCKET}/private.tar.gz"))


def test_prefix_objects_become_files_and_are_cached_by_listing(s3: Any, prepare: Preparer) -> None:
    s3.put_object(Bucket=BUCKET, Key="raw/model.pt", Body=b"weights")
    s3.put_object(Bucket=BUCKET, Key="raw/code/", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="raw/code/inference.py", Body=b"pass\n")
    s3.put_object(Bucket=BUCKET, Key="rawx/not-this.pt", Body=b"other prefix")
    source = ModelSource(f"s3://{BUCKET}/raw", kind="prefix")

    first = prepare(source)

    assert first.digest == f"tree:{tree_digest(first.model_dir)}"
    assert sorted(str(p.relative_to(first.model_dir)) for p in first.model_dir.rglob("*")) == [
        "code",
        "code/inference.py",
        "model.pt",
    ]
    assert first.code_dir == first.model_dir / "code"
    prepare.downloaded.clear()
    pinned = ModelSource(f"s3://{BUCKET}/raw/", kind="prefix", sha256=first.digest.partition(":")[2])
    assert prepare(pinned) == first
    assert prepare.downloaded == []
    with pytest.raises(ArtifactSourceError, match="ETag pin applies to one s3:// object only"):
        prepare(ModelSource(f"s3://{BUCKET}/raw/", kind="prefix", etag='"abc"'))


def test_prefix_keys_get_the_same_name_checks_as_tar_members(s3: Any, prepare: Preparer) -> None:
    s3.put_object(Bucket=BUCKET, Key="p/model.pt", Body=b"weights")
    s3.put_object(Bucket=BUCKET, Key="p/model.pt/inside", Body=b"file under a file")

    with pytest.raises(UnsafeArchiveError) as caught:
        prepare(ModelSource(f"s3://{BUCKET}/p/", kind="prefix"))

    assert "unsafe member 'model.pt/inside' in s3://models/p/" in caught.value.message
    assert list((prepare.cache / "models").iterdir()) == []
    assert list((prepare.cache / "tmp").iterdir()) == []


def test_legacy_submit_directory_from_s3(s3: Any, prepare: Preparer) -> None:
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=archive_bytes({"model.pth": b"w"}))
    s3.put_object(Bucket=BUCKET, Key="src/sourcedir.tar.gz", Body=archive_bytes({"inference.py": b"pass\n"}))

    prepared = prepare(
        ModelSource(f"s3://{BUCKET}/model.tar.gz"), submit_directory=f"s3://{BUCKET}/src/sourcedir.tar.gz"
    )

    assert prepared.code_dir is not None
    assert (prepared.code_dir / "inference.py").read_bytes() == b"pass\n"


def test_unreachable_s3_is_retried_until_the_timeout(aws_env: None, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logs: list[str] = []
    started = time.monotonic()

    with pytest.raises(ArtifactSourceError) as caught:
        prepare_model(
            ModelSource(f"s3://{BUCKET}/model.tar.gz"),
            submit_directory=None,
            cache_dir=tmp_path / "cache",
            policy=ArtifactPolicy(),
            s3_endpoint_url=f"http://127.0.0.1:{port}",
            log=logs.append,
            timeout_s=1.0,
        )

    assert caught.value.message.startswith(f"could not download s3://{BUCKET}/model.tar.gz within 1 s")
    assert 0.9 < time.monotonic() - started < 5.0
    assert sum("retrying" in line for line in logs) >= 2
