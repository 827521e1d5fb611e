"""Putting model data where the server can read it, repacked with the user's code (spec §1.2, §6.2).

- `s3://bucket/key`: read through boto3's S3 endpoint (AWS_ENDPOINT_URL_S3, ...; if none is set, the
  store the server itself reads from), repacked, and written back next to it, into the same bucket
  at `<prefix>/model.tar.gz`. Nothing to repack: the URI is used as it is.
- a local file (a path or `file://`): repacked if there is code, then uploaded to the S3 store the
  server reads from (learned from `GET /_moorage/info`; the embedded one by default), into the bucket
  `moorage-artifacts`, created on first use. So the server may run on another machine.
- `https://`: used as it is; it cannot be repacked (put the code in the archive, or use S3).
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from moorage.sdk.connection import DEFAULT_REGION, Connection
from moorage.sdk.errors import InvalidArgument
from moorage.sdk.repack import CodeSpec, repack

__all__ = ["ARTIFACT_BUCKET", "stage_model_data"]

ARTIFACT_BUCKET = "moorage-artifacts"
Progress = Callable[[str], None]


def stage_model_data(
    connection: Connection, model_data: str, code: CodeSpec, prefix: str, progress: Progress
) -> str:
    """The ModelDataUrl to create the model with; uploads (and repacks) as needed."""
    parts = urllib.parse.urlsplit(model_data)
    scheme = parts.scheme.lower()
    has_code = code.entry_point is not None or code.source_dir is not None
    if scheme == "s3":
        if not has_code:
            return model_data
        return _repack_on_s3(connection, parts.netloc, parts.path.lstrip("/"), code, prefix, progress)
    if scheme in ("http", "https"):
        if has_code:
            raise InvalidArgument(
                f"model_data {model_data} cannot be repacked with entry_point/source_dir: moorage repacks "
                "archives on S3 or on local disk. Download it first, or put code/ inside the archive."
            )
        return model_data
    if scheme not in ("", "file"):
        raise InvalidArgument(
            f"model_data {model_data} is not supported: give s3://bucket/key, https://..., a local path "
            "or file:///absolute/path to a model.tar.gz."
        )
    local = Path(urllib.parse.unquote(parts.path) if scheme == "file" else model_data).expanduser()
    if not local.is_file():
        raise InvalidArgument(f"model_data {model_data} is not a file.")
    return _upload_local(connection, local, code, prefix, progress)


def _repack_on_s3(
    connection: Connection, bucket: str, key: str, code: CodeSpec, prefix: str, progress: Progress
) -> str:
    s3 = connection.s3_for_model_data()
    where = str(s3.meta.endpoint_url)
    source = f"s3://{bucket}/{key}"
    with tempfile.TemporaryDirectory(prefix="moorage-repack-") as scratch:
        original, repacked = Path(scratch) / "original.tar.gz", Path(scratch) / "model.tar.gz"
        progress(f"Downloading {source} from {where}")
        with connection.translated(where, f"Could not read model_data {source} from {where}"):
            s3.download_file(bucket, key, str(original))
        progress(f"Repacking {_describe(code)} into code/ ({_megabytes(original)})")
        repack(original, repacked, code)
        return _upload(connection, s3, repacked, bucket, f"{prefix}/model.tar.gz", progress)


def _upload_local(
    connection: Connection, local: Path, code: CodeSpec, prefix: str, progress: Progress
) -> str:
    info = connection.server_info()
    if info is None or not info.s3_url:
        raise InvalidArgument(
            f"model_data {local} is a local file, and the server at {connection.url} has no S3 store "
            "to put it in (was it started with --no-s3?). Upload model.tar.gz to S3 and pass its "
            "s3:// URI instead."
        )
    s3 = connection.s3(info.s3_url)
    _ensure_bucket(connection, s3, ARTIFACT_BUCKET)
    key = f"{prefix}/model.tar.gz"
    if code.entry_point is None and code.source_dir is None:
        return _upload(connection, s3, local, ARTIFACT_BUCKET, key, progress)
    with tempfile.TemporaryDirectory(prefix="moorage-repack-") as scratch:
        repacked = Path(scratch) / "model.tar.gz"
        progress(f"Repacking {_describe(code)} into code/ ({_megabytes(local)})")
        repack(local, repacked, code)
        return _upload(connection, s3, repacked, ARTIFACT_BUCKET, key, progress)


def _upload(connection: Connection, s3: Any, path: Path, bucket: str, key: str, progress: Progress) -> str:
    where = str(s3.meta.endpoint_url)
    uri = f"s3://{bucket}/{key}"
    progress(f"Uploading {uri} to {where} ({_megabytes(path)})")
    with connection.translated(where, f"Could not upload {uri} to {where}"):
        s3.upload_file(str(path), bucket, key)
    return uri


def _ensure_bucket(connection: Connection, s3: Any, bucket: str) -> None:
    where = str(s3.meta.endpoint_url)
    with connection.translated(where, f"Could not use the bucket {bucket} at {where}"):
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        region = connection.region
        placement = (
            {} if region == DEFAULT_REGION else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        try:
            s3.create_bucket(Bucket=bucket, **placement)
        except ClientError as exc:  # another client made it meanwhile
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou",):
                raise


def _describe(code: CodeSpec) -> str:
    if code.source_dir is not None:
        return str(code.source_dir)
    return str(code.entry_point)


def _megabytes(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
