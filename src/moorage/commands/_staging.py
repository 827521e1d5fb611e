"""Model data for `deploy` and `update`: a local model.tar.gz goes to the server's store, with a bar.

moorage's SDK uploads local files too (`moorage.sdk.staging`), but reports only whole steps. The CLI
does the local case itself, so the user sees the bytes move: repacked with --entry-point/--source-dir
into code/ (the SDK's `repack`, spec §1.2) and uploaded into the same bucket the SDK uses
(`moorage-artifacts`, on the S3 store the server reads from). s3:// and https:// model data go
through the SDK's own staging (repacked on S3 when there is code).
"""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moorage.errors import MoorageError

if TYPE_CHECKING:
    from moorage.commands._progress import Reporter
    from moorage.sdk import Connection
    from moorage.sdk.repack import CodeSpec

__all__ = [
    "ensure_bucket",
    "is_embedded",
    "local_path",
    "program_environment",
    "server_store",
    "stage",
    "upload",
]

_MISSING_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})
CODE_DIR_IN_CONTAINER = "/opt/ml/model/code"  # SAGEMAKER_SUBMIT_DIRECTORY, as SageMaker's SDK sets it


def local_path(model_data: str) -> Path | None:
    """The file `model_data` names on this machine (a path or file://), or None for a URL."""
    parts = urllib.parse.urlsplit(model_data)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(urllib.parse.unquote(parts.path))
    if scheme == "":
        return Path(model_data).expanduser()
    return None


def program_environment(code: CodeSpec) -> dict[str, str]:
    """What SageMaker's SDK puts in the model's Environment for its entry point (spec §1.3)."""
    if code.program is None:
        return {}
    return {"SAGEMAKER_PROGRAM": code.program, "SAGEMAKER_SUBMIT_DIRECTORY": CODE_DIR_IN_CONTAINER}


def server_store(connection: Connection) -> Any:
    """An S3 client for the store the server reads s3:// model data from (its embedded one by default)."""
    info = connection.server_info()
    if info is None or not info.s3_url:
        raise MoorageError(
            f"the server at {connection.url} has no S3 store to put local files in (was it started with "
            "--no-s3?). Upload the file to your S3 endpoint yourself and pass its s3:// URL."
        )
    return connection.s3(info.s3_url)


def is_embedded(connection: Connection, s3: Any) -> bool:
    info = connection.server_info()
    return bool(info and info.s3_url and str(s3.meta.endpoint_url).rstrip("/") == info.s3_url.rstrip("/"))


def ensure_bucket(connection: Connection, s3: Any, bucket: str, reporter: Reporter) -> None:
    """Make sure `bucket` exists. It is created (with a note) only on the store the server reads
    model data from (its embedded one unless the server was pointed elsewhere): other S3 endpoints'
    buckets are their owners' to make."""
    from botocore.exceptions import ClientError

    where = str(s3.meta.endpoint_url)
    with connection.translated(where, f"Could not use the bucket {bucket} at {where}"):
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _MISSING_BUCKET:
                raise
        if not is_embedded(connection, s3):
            raise MoorageError(
                f"bucket {bucket!r} does not exist at {where}; create it first "
                f"(aws s3 mb s3://{bucket} --endpoint-url {where})"
            )
        region = connection.region
        placement = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        try:
            s3.create_bucket(Bucket=bucket, **placement)
        except ClientError as exc:  # another client made it meanwhile
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        reporter.say(f"note: created the bucket {bucket!r} at {where}, the S3 store the moorage server reads")


def upload(connection: Connection, s3: Any, path: Path, bucket: str, key: str, reporter: Reporter) -> str:
    """Upload `path` to s3://bucket/key with a byte counter; returns the s3:// URL."""
    where = str(s3.meta.endpoint_url)
    uri = f"s3://{bucket}/{key}"
    with (
        reporter.transfer(f"Uploading {path.name} to {uri}", path.name, path.stat().st_size) as advance,
        connection.translated(where, f"Could not upload {uri} to {where}"),
    ):
        s3.upload_file(str(path), bucket, key, Callback=advance)
    return uri


def stage(connection: Connection, model_data: str, code: CodeSpec, prefix: str, reporter: Reporter) -> str:
    """The ModelDataUrl to create a model with: `model_data` with `code` in code/, readable by the server."""
    from moorage.sdk.repack import repack
    from moorage.sdk.staging import ARTIFACT_BUCKET, stage_model_data

    local = local_path(model_data)
    if local is None:
        return stage_model_data(connection, model_data, code, prefix, reporter.say)
    if not local.is_file():
        raise MoorageError(f"model data {model_data} is not a file")
    s3 = server_store(connection)
    ensure_bucket(connection, s3, ARTIFACT_BUCKET, reporter)
    key = f"{prefix}/model.tar.gz"
    if code.entry_point is None and code.source_dir is None:
        return upload(connection, s3, local, ARTIFACT_BUCKET, key, reporter)
    with tempfile.TemporaryDirectory(prefix="moorage-repack-") as scratch:
        repacked = Path(scratch) / "model.tar.gz"
        reporter.say(f"Repacking {code.source_dir or code.entry_point} into code/ of {local.name}")
        repack(local, repacked, code)
        return upload(connection, s3, repacked, ARTIFACT_BUCKET, key, reporter)
