"""Reading an async request's input object, with its Content-Type, from the embedded store or an S3.

The object's Content-Type matters: the SageMaker SDK's `predict_async` uploads its input with the
serializer's ContentType and sends no ContentType header, so when InvokeEndpointAsync names none the
model is given the input object's. An input up to `over` bytes is returned whole (it crosses the worker
socket like a real-time body); a larger one, up to `limit`, is copied into a file in chunks (the
embedded store's by the kernel, sendfile) and reaches the worker as that file (worker/protocol.py), so
the server never holds it. Objects over `limit` are refused before being read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from moorage import server_credentials
from moorage.artifacts.sources import CHUNK_BYTES

__all__ = ["EmbeddedInputs", "ExternalInputs", "InputError", "InputReader"]


class InputError(Exception):
    """The input cannot be read, or is too big; the message says which and why."""


class InputReader(Protocol):
    def fetch(
        self, bucket: str, key: str, limit: int, over: int, dest: Path
    ) -> tuple[bytes | None, str | None]:
        """(the whole object, its Content-Type), or (None, its Content-Type) when it was larger than
        `over` and was copied to `dest` instead; InputError when missing, unreadable or over `limit`."""
        ...


def _too_big(bucket: str, key: str, size: int, limit: int) -> InputError:
    return InputError(
        f"The input s3://{bucket}/{key} ({size} bytes) is larger than moorage's async input limit of "
        f"{limit} bytes (MOORAGE_ASYNC_MAX_INPUT_BYTES)."
    )


class EmbeddedInputs:
    def __init__(self, root: Path) -> None:
        self._root = root

    def fetch(
        self, bucket: str, key: str, limit: int, over: int, dest: Path
    ) -> tuple[bytes | None, str | None]:
        from moorage.s3 import open_object

        try:
            handle, info = open_object(self._root, bucket, key)
        except KeyError:
            raise InputError(f"The input s3://{bucket}/{key} does not exist in moorage's S3 store.") from None
        with handle:
            if info.size > limit:
                raise _too_big(bucket, key, info.size, limit)
            if info.size <= over:
                return handle.read(), info.attributes.content_type
            try:
                with dest.open("wb") as out:
                    copied = 0
                    while copied < info.size:
                        sent = os.sendfile(out.fileno(), handle.fileno(), copied, info.size - copied)
                        if not sent:
                            break
                        copied += sent
            except OSError as exc:
                raise InputError(
                    f"Could not stage the input s3://{bucket}/{key} for the worker: {exc}"
                ) from None
            return None, info.attributes.content_type


class ExternalInputs:
    """An S3 over HTTP (AWS_ENDPOINT_URL_S3, or AWS): the same client settings as s3io.py."""

    def __init__(self, endpoint_url: str | None) -> None:
        session = server_credentials.session()
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 5})
        if session.get_credentials() is None:
            config = config.merge(Config(signature_version=UNSIGNED))
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)

    def fetch(
        self, bucket: str, key: str, limit: int, over: int, dest: Path
    ) -> tuple[bytes | None, str | None]:
        try:
            answer = self._client.get_object(Bucket=bucket, Key=key)
            body = answer["Body"]
            try:
                size = int(answer.get("ContentLength", 0))
                if size > limit:
                    raise _too_big(bucket, key, size, limit)
                if size <= over:
                    return b"".join(body.iter_chunks(CHUNK_BYTES)), answer.get("ContentType")
                with dest.open("wb") as out:
                    for chunk in body.iter_chunks(CHUNK_BYTES):
                        out.write(chunk)
                return None, answer.get("ContentType")
            finally:
                body.close()
        except (ClientError, BotoCoreError, OSError) as exc:
            raise InputError(f"Could not read the input s3://{bucket}/{key}: {exc}") from None
