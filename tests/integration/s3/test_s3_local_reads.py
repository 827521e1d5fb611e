"""The server reads its own embedded store from disk (no HTTP): a prefix lists what boto3 uploaded.

`s3.app.list_objects` is what a ModelDataSource with S3Prefix and CompressionType None reads when the
model data is in moorage's embedded store; it once started its listing at "nothing can follow" and so
found no object at all, and the model came up empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.artifacts import ModelSource, prepare_model
from moorage.s3.app import list_objects
from moorage.settings import ArtifactPolicy

pytestmark = pytest.mark.slow


def test_a_prefix_lists_every_object_under_it_and_nothing_else(s3: Any, s3_root: Path) -> None:
    s3.create_bucket(Bucket="models")
    keys = ["raw/model.pt", "raw/code/inference.py", *(f"raw/part-{n:04d}" for n in range(1200))]
    for key in keys:
        s3.put_object(Bucket="models", Key=key, Body=key.encode())
    s3.put_object(Bucket="models", Key="rawx/other.pt", Body=b"another prefix")
    s3.put_object(Bucket="models", Key="a-before", Body=b"before the prefix")

    found = list_objects(s3_root, "models", "raw/", max_keys=5000)

    assert sorted(info.key for info in found) == sorted(keys)


def test_a_prefix_model_from_the_embedded_store_is_prepared_from_disk(
    s3: Any, s3_root: Path, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="raw/model.pt", Body=b"weights")
    s3.put_object(Bucket="models", Key="raw/code/inference.py", Body=b"pass\n")

    prepared = prepare_model(
        ModelSource("s3://models/raw/", kind="prefix"),
        submit_directory=None,
        cache_dir=tmp_path / "cache",
        policy=ArtifactPolicy(),
        s3_local_root=s3_root,
    )

    assert (prepared.model_dir / "model.pt").read_bytes() == b"weights"
    assert (prepared.model_dir / "code" / "inference.py").read_bytes() == b"pass\n"
