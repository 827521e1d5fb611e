"""Reading a job's inputs and publishing its outputs: moorage's embedded S3 store, or an external S3.

Inputs are read as a stream of chunks (never whole). An output is staged in a file while its object
is transformed and becomes visible only when the whole object succeeded: the embedded store moves the
fsynced file into place in one index transaction; an external S3 gets it by boto3's managed upload
(multipart above 8 MiB, completed only at the end, aborted on error), so no reader ever sees half an
output. A staged file of an object that failed or was interrupted is removed (or, after a `kill -9`,
swept when the server starts again).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from boto3.exceptions import S3UploadFailedError
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from moorage import server_credentials
from moorage.artifacts.sources import CHUNK_BYTES

__all__ = [
    "EmbeddedStorage",
    "ExternalStorage",
    "InputListing",
    "OutputFile",
    "Storage",
    "StorageError",
    "open_storage",
]


class StorageError(Exception):
    """An input that cannot be listed or read, or an output that cannot be written; the message says which."""


@dataclass(frozen=True)
class InputListing:
    key: str
    size: int


class OutputFile(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Publish the output object (all of it, at once)."""
        ...

    def abort(self) -> None:
        """Drop what was staged; nothing is published."""
        ...


class Storage(Protocol):
    where: str  # for messages: which S3 this is

    def list_prefix(self, bucket: str, prefix: str, max_objects: int) -> list[InputListing]: ...

    def read(self, bucket: str, key: str) -> Iterator[bytes]: ...

    def open_output(
        self, bucket: str, key: str, *, content_type: str | None, kms_key_id: str | None
    ) -> OutputFile: ...


class _TooMany(StorageError):
    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"{url} holds more than {limit} objects (MOORAGE_TRANSFORM_MAX_OBJECTS)")


class EmbeddedStorage:
    """moorage's own store, read and written on this disk without HTTP (like artifacts/sources.py)."""

    def __init__(self, root: Path) -> None:
        from moorage.s3.storage import Store

        self.root = root
        self.where = "moorage's S3 store"
        self._store = Store(root)

    def list_prefix(self, bucket: str, prefix: str, max_objects: int) -> list[InputListing]:
        from moorage.s3.errors import S3Error
        from moorage.s3.listing import marker_position

        found: list[InputListing] = []
        start = marker_position(None, prefix.encode("utf-8", "surrogatepass"), b"")
        try:
            while start is not None:
                page = self._store.list_objects(
                    bucket, prefix=prefix, delimiter="", start=start, max_keys=1000
                )
                found.extend(InputListing(info.key, info.size) for _, info in page.contents)
                if len(found) > max_objects:
                    raise _TooMany(f"s3://{bucket}/{prefix}", max_objects)
                start = page.next_position if page.truncated else None
        except S3Error as exc:
            raise StorageError(f"cannot list s3://{bucket}/{prefix} in {self.where}: {exc.message}") from None
        return found

    def read(self, bucket: str, key: str) -> Iterator[bytes]:
        from moorage.s3 import open_object

        try:
            handle, _ = open_object(self.root, bucket, key)
        except KeyError:
            raise StorageError(f"s3://{bucket}/{key} does not exist in {self.where}") from None
        with handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def open_output(
        self, bucket: str, key: str, *, content_type: str | None, kms_key_id: str | None
    ) -> OutputFile:
        # KmsKeyId with the embedded store is refused when the job is created (transform/operations.py).
        return _EmbeddedOutput(self._store, bucket, key, content_type)


class _EmbeddedOutput:
    def __init__(self, store: Any, bucket: str, key: str, content_type: str | None) -> None:
        self._store = store
        self._bucket = bucket
        self._key = key
        self._content_type = content_type
        self._path: Path = store.new_temp_path()  # under the store's .tmp: swept when it opens
        self._file: IO[bytes] = self._path.open("wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._md5.update(data)
        self._size += len(data)

    def commit(self) -> None:
        from moorage.s3.errors import S3Error
        from moorage.s3.records import ObjectAttributes

        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        attributes = ObjectAttributes(content_type=self._content_type or "binary/octet-stream")
        try:
            self._store.put_object(
                self._bucket,
                self._key,
                self._path,
                size=self._size,
                etag=self._md5.hexdigest(),
                attributes=attributes,
            )
        except S3Error as exc:
            self._path.unlink(missing_ok=True)
            raise StorageError(f"cannot write s3://{self._bucket}/{self._key}: {exc}") from None

    def abort(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


class ExternalStorage:
    """An S3 reached over HTTP with boto3: AWS_ENDPOINT_URL_S3 (MinIO, moto, ...) or AWS itself."""

    def __init__(self, endpoint_url: str | None, staging_dir: Path) -> None:
        session = server_credentials.session()
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 5})
        if session.get_credentials() is None:
            config = config.merge(Config(signature_version=UNSIGNED))
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._staging = staging_dir
        self.where = str(self._client.meta.endpoint_url)

    def list_prefix(self, bucket: str, prefix: str, max_objects: int) -> list[InputListing]:
        found: list[InputListing] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found.append(InputListing(str(item["Key"]), int(item["Size"])))
                    if len(found) > max_objects:
                        raise _TooMany(f"s3://{bucket}/{prefix}", max_objects)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot list s3://{bucket}/{prefix} at {self.where}: {exc}") from None
        return found

    def read(self, bucket: str, key: str) -> Iterator[bytes]:
        try:
            body = self._client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                yield from body.iter_chunks(CHUNK_BYTES)
            finally:
                body.close()
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"cannot read s3://{bucket}/{key} at {self.where}: {exc}") from None

    def open_output(
        self, bucket: str, key: str, *, content_type: str | None, kms_key_id: str | None
    ) -> OutputFile:
        extra: dict[str, str] = {}
        if content_type:
            extra["ContentType"] = content_type
        if kms_key_id:
            extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
        return _ExternalOutput(self, bucket, key, extra)


class _ExternalOutput:
    def __init__(self, storage: ExternalStorage, bucket: str, key: str, extra: dict[str, str]) -> None:
        storage._staging.mkdir(parents=True, exist_ok=True)
        self._storage = storage
        self._bucket = bucket
        self._key = key
        self._extra = extra
        # Closed by commit or abort, whichever ends the output.
        self._file = tempfile.NamedTemporaryFile(dir=storage._staging, suffix=".out", delete=False)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.close()
        try:
            self._storage._client.upload_file(self._file.name, self._bucket, self._key, ExtraArgs=self._extra)
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise StorageError(
                f"cannot write s3://{self._bucket}/{self._key} at {self._storage.where}: {exc}"
            ) from None
        finally:
            os.unlink(self._file.name)

    def abort(self) -> None:
        self._file.close()
        Path(self._file.name).unlink(missing_ok=True)


def open_storage(s3_local_root: Path | None, external_s3: str | None, staging_dir: Path) -> Storage:
    """The server's own S3 for a feature's objects: its embedded store when `s3_local_root` is given,
    else the S3 at `external_s3` (AWS itself when None), with outputs staged in `staging_dir`."""
    if s3_local_root is not None:
        return EmbeddedStorage(s3_local_root)
    return ExternalStorage(external_s3, staging_dir)
