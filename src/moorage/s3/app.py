"""The embedded S3 endpoint: authenticate, route a path-style request to its operation, render errors.

botocore addresses any custom S3 endpoint path-style, `/<bucket>/<key>` (spec §5), so the bucket is the
first path segment and the key everything after it, percent-decoded from the raw request target (a
key may contain "%2F", "//" or "../"; none of it is a path to us). The operation is chosen by method,
by whether there is a key, and by the subresource in the query string, as S3 does.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from moorage.errors import MoorageError
from moorage.httpd import App, Request, Response, StreamingResponse
from moorage.httpd.hosts import BrowserGuard
from moorage.s3 import buckets, multipart, objects
from moorage.s3.context import Call
from moorage.s3.errors import (
    InternalError,
    InvalidURI,
    MethodNotAllowed,
    NoSuchBucket,
    NotImplementedOperation,
    S3Error,
)
from moorage.s3.listing import Position, marker_position
from moorage.s3.names import is_valid_bucket_name
from moorage.s3.records import ObjectInfo
from moorage.s3.schema import encode_key
from moorage.s3.storage import Store
from moorage.s3.xml import error_document

__all__ = ["build_s3_app", "open_object"]

log = logging.getLogger("moorage.s3")

Handler = Callable[[Call], Awaitable[Response | StreamingResponse]]

# Real S3 subresources this store does not implement: answered 501 NotImplemented rather than being
# mistaken for the plain operation on the same path (GET /b?acl is not a listing).
_UNSUPPORTED = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metadataTable",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "tagging",
        "torrent",
        "versioning",
        "versions",
        "website",
    }
)
_DRAIN_LIMIT = 64 * 1024


def _request_id() -> str:
    return secrets.token_hex(8).upper()


def _split_target(request: Request) -> tuple[str, str | None]:
    raw = request.raw_path
    if "://" in raw:  # absolute-form request target
        raw = urlsplit(raw).path
    bucket_part, slash, key_part = raw.lstrip("/").partition("/")
    try:
        bucket = unquote(bucket_part, errors="strict")
        key = unquote(key_part, errors="strict") if slash and key_part else None
    except UnicodeDecodeError:
        raise InvalidURI("Couldn't parse the specified URI.") from None
    return bucket, key


def _bucket_handler(method: str, query: dict[str, str]) -> Handler:
    unsupported = _UNSUPPORTED.intersection(query)
    if unsupported:
        raise NotImplementedOperation(
            f"The {sorted(unsupported)[0]} subresource is not implemented by this store."
        )
    if method == "GET":
        if "location" in query:
            return buckets.get_bucket_location
        if "uploads" in query:
            return multipart.list_uploads
        return buckets.list_objects_v2 if query.get("list-type") == "2" else buckets.list_objects
    if method == "POST" and "delete" in query:
        return objects.delete_objects
    simple: dict[str, Handler] = {
        "HEAD": buckets.head_bucket,
        "PUT": buckets.create_bucket,
        "DELETE": buckets.delete_bucket,
    }
    if method in simple:
        return simple[method]
    raise MethodNotAllowed("The specified method is not allowed against this resource.")


def _object_handler(method: str, query: dict[str, str], copy: bool) -> Handler:
    unsupported = _UNSUPPORTED.intersection(query)
    if unsupported:
        raise NotImplementedOperation(
            f"The {sorted(unsupported)[0]} subresource is not implemented by this store."
        )
    if method == "GET":
        return multipart.list_parts if "uploadId" in query else objects.get_object
    if method == "HEAD":
        return objects.head_object
    if method == "PUT":
        if "uploadId" in query or "partNumber" in query:
            return multipart.upload_part
        return objects.copy_object if copy else objects.put_object
    if method == "DELETE":
        return multipart.abort_upload if "uploadId" in query else objects.delete_object
    if method == "POST":
        if "uploads" in query:
            return multipart.create_upload
        if "uploadId" in query:
            return multipart.complete_upload
    raise MethodNotAllowed("The specified method is not allowed against this resource.")


def _route(request: Request, store: Store, region: str, request_id: str) -> tuple[Handler, Call]:
    bucket, key = _split_target(request)
    query = dict(request.query())
    call = Call(request, store, region, request_id, bucket, key, query)
    if not bucket:
        if request.method != "GET":
            raise MethodNotAllowed("The specified method is not allowed against this resource.")
        return buckets.list_buckets, call
    if key is None:
        handler = _bucket_handler(request.method, query)
        if handler is not buckets.create_bucket and not is_valid_bucket_name(bucket):
            raise NoSuchBucket(bucket)  # such a bucket cannot exist (CreateBucket says InvalidBucketName)
        return handler, call
    if not is_valid_bucket_name(bucket):
        raise NoSuchBucket(bucket)
    return _object_handler(request.method, query, "x-amz-copy-source" in request.headers), call


def _error_response(request: Request, error: MoorageError, request_id: str) -> Response:
    fields = error.fields if isinstance(error, S3Error) else ()
    headers = [("Content-Type", "application/xml"), *(error.headers if isinstance(error, S3Error) else ())]
    if request.method == "HEAD":
        return Response(error.status, b"", headers)  # HEAD answers carry no body; botocore uses the status
    body = error_document(error.code, error.message, request.raw_path, request_id, fields)
    return Response(error.status, body, headers)


async def _drain_small_body(request: Request) -> None:
    """Read an unread small body after an early error, so the connection can be kept alive.

    A client that sent `Expect: 100-continue` has not sent its body and is not asked to.
    """
    reader = request.reader
    if reader.started or reader.complete or "expect" in request.headers:
        return
    if request.content_length is None or request.content_length > _DRAIN_LIMIT:
        return
    with contextlib.suppress(MoorageError, ConnectionError, TimeoutError):
        await request.body(_DRAIN_LIMIT)


class _BrowserRefused(S3Error):
    code = "AccessDenied"
    status = 403


def build_s3_app(
    root: Path,
    *,
    region: str,
    authenticate: Callable[[Request], Awaitable[None]] | None = None,
    guard: BrowserGuard | None = None,
) -> App:
    """The S3 endpoint over the store at `root` (created if new; left-overs of a crash cleaned up).

    `guard`, when given, refuses a foreign Host or a cross-site browser request first (httpd/hosts.py:
    a web page must not delete objects), answered 403 AccessDenied. `authenticate`, when given, is
    awaited next; the AuthError it raises is answered 403 in S3's XML error shape with the error's code.
    """
    store = Store.open(root)

    async def app(request: Request) -> Response | StreamingResponse:
        request_id = _request_id()
        response: Response | StreamingResponse
        try:
            refusal = guard.check(request) if guard is not None else None
            if refusal is not None:
                raise _BrowserRefused(refusal)
            if authenticate is not None:
                await authenticate(request)
            handler, call = _route(request, store, region, request_id)
            response = await handler(call)
        except MoorageError as error:
            await _drain_small_body(request)
            response = _error_response(request, error, request_id)
        except (ConnectionError, TimeoutError) as error:
            # The client went away or stalled mid-body; the server has already dropped the connection.
            log.info("S3 %s %s: body not received: %s", request.method, request.raw_path, error)
            response = Response(400, b"", close=True)
        except Exception:
            log.exception("S3 %s %s failed", request.method, request.raw_path)
            internal = InternalError("We encountered an internal error. Please try again.")
            response = _error_response(request, internal, request_id)
            response.close = True
        response.headers.append(("x-amz-request-id", request_id))
        response.headers.append(("x-amz-id-2", base64.b64encode(os.urandom(24)).decode("ascii")))
        return response

    return app


def list_objects(root: Path, bucket: str, prefix: str, *, max_keys: int) -> list[ObjectInfo]:
    """Every object whose key starts with `prefix`, at most `max_keys` + 1 of them, without HTTP.

    Raises KeyError when the store or the bucket does not exist.
    """
    store = Store(root)
    if not store.db_path.is_file() or not is_valid_bucket_name(bucket):
        raise KeyError(f"s3://{bucket}/{prefix}")
    found: list[ObjectInfo] = []
    # The first page starts at the prefix itself (None would mean "nothing can follow").
    start: Position | None = marker_position(None, encode_key(prefix), b"")
    try:
        while len(found) <= max_keys:
            page = store.list_objects(bucket, prefix=prefix, delimiter="", start=start, max_keys=1000)
            found.extend(info for _, info in page.contents)
            if not page.truncated:
                break
            start = page.next_position
    except S3Error as error:
        raise KeyError(f"s3://{bucket}/{prefix}") from error
    return found


def open_object(root: Path, bucket: str, key: str) -> tuple[BinaryIO, ObjectInfo]:
    """Open an object of the store at `root` for reading, without HTTP (the artifact fetcher's path).

    Raises KeyError when the store, the bucket or the key does not exist. The caller closes the file.
    """
    store = Store(root)
    if not store.db_path.is_file() or not is_valid_bucket_name(bucket):
        raise KeyError(f"s3://{bucket}/{key}")
    try:
        fd, info = store.open_object(bucket, key)
    except S3Error as error:
        raise KeyError(f"s3://{bucket}/{key}") from error
    return os.fdopen(fd, "rb"), info
