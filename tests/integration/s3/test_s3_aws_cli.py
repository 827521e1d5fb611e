"""The aws CLI, unchanged, as a subprocess configured only by AWS_ENDPOINT_URL_S3 and friends (spec §5).

The seed's first step is `aws s3 cp ./model.tar.gz s3://pytorch-sagemaker-example`; with moorage that
must work with nothing else running.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from moorage.s3 import build_s3_app
from support.background import serve_in_thread

MIB = 1024 * 1024


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr.decode()
    assert b"warning" not in result.stderr.lower(), result.stderr.decode()
    return str(result.stdout.decode())


@pytest.mark.slow  # nine CLI runs, each about 0.8 s of interpreter start-up
def test_seed_first_step_and_listings(
    s3_url: str, aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.tar.gz"
    model.write_bytes(os.urandom(4096))
    (tmp_path / "extra.txt").write_text("hello\n")
    monkeypatch.chdir(tmp_path)
    _ok(aws(s3_url, "s3", "mb", "s3://pytorch-sagemaker-example"))
    upload = _ok(aws(s3_url, "s3", "cp", "./model.tar.gz", "s3://pytorch-sagemaker-example"))
    assert "upload: ./model.tar.gz to s3://pytorch-sagemaker-example/model.tar.gz" in upload
    _ok(aws(s3_url, "s3", "cp", "./extra.txt", "s3://pytorch-sagemaker-example/code/notes/extra.txt"))

    buckets = _ok(aws(s3_url, "s3", "ls"))
    assert buckets.split()[-1] == "pytorch-sagemaker-example"
    top = _ok(aws(s3_url, "s3", "ls", "s3://pytorch-sagemaker-example/"))
    assert [line.split()[-1] for line in top.splitlines()] == ["code/", "model.tar.gz"]
    assert top.splitlines()[0].split() == ["PRE", "code/"]
    assert top.splitlines()[1].split()[2] == "4096"
    everything = _ok(aws(s3_url, "s3", "ls", "s3://pytorch-sagemaker-example/", "--recursive"))
    assert [line.split()[-1] for line in everything.splitlines()] == ["code/notes/extra.txt", "model.tar.gz"]

    streamed = aws(s3_url, "s3", "cp", "s3://pytorch-sagemaker-example/model.tar.gz", "-")
    assert streamed.returncode == 0, streamed.stderr.decode()
    assert streamed.stdout == model.read_bytes()

    _ok(aws(s3_url, "s3", "rm", "s3://pytorch-sagemaker-example/code/notes/extra.txt"))
    after = _ok(aws(s3_url, "s3", "ls", "s3://pytorch-sagemaker-example/", "--recursive"))
    assert [line.split()[-1] for line in after.splitlines()] == ["model.tar.gz"]


def test_missing_object_fails_cleanly(s3_url: str, aws: Any, s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    result = aws(s3_url, "s3", "cp", "s3://models/absent.tar.gz", "-")
    assert result.returncode != 0
    assert b"404" in result.stderr or b"Not Found" in result.stderr


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.md5()
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(8 * MIB, remaining))
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as source:
        while chunk := source.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_large_multipart_upload_survives_a_restart(
    s3_root: Path, aws: Any, s3_client: Any, tmp_path: Path
) -> None:
    big = tmp_path / "big-model.tar.gz"
    expected = _write_random(big, 105 * MIB + 4321)
    with serve_in_thread(build_s3_app(s3_root, region="us-east-1")) as url:
        _ok(aws(url, "s3", "mb", "s3://pytorch-sagemaker-example"))
        _ok(aws(url, "s3", "cp", str(big), "s3://pytorch-sagemaker-example/big/model.tar.gz"))
        etag = s3_client(url).head_object(Bucket="pytorch-sagemaker-example", Key="big/model.tar.gz")["ETag"]
        assert etag.endswith('-14"')  # the CLI's 8 MiB parts: it went multipart
    big.unlink()
    # A new server on the same root: everything acknowledged is still there.
    with serve_in_thread(build_s3_app(s3_root, region="us-east-1")) as url:
        listing = _ok(aws(url, "s3", "ls", "s3://pytorch-sagemaker-example/", "--recursive"))
        assert listing.split()[-2:] == [str(105 * MIB + 4321), "big/model.tar.gz"]
        target = tmp_path / "downloaded.tar.gz"
        _ok(aws(url, "s3", "cp", "s3://pytorch-sagemaker-example/big/model.tar.gz", str(target)))
    assert _md5_of(target) == expected
    assert not any((s3_root / ".uploads").iterdir())
