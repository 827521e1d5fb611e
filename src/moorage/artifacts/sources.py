"""Fetching model bytes from where a ModelDataUrl points: local files, S3, http(s).

Each source streams into a `ByteSink` (a temp file in the cache, or one file of an S3 prefix tree)
that caps, hashes and reports what it receives. Transient failures (connection errors, timeouts,
HTTP 5xx/429, S3 throttling) are retried with exponential backoff and jitter until the deadline;
anything else (403, 404, a refused URL) fails at once. boto3 and urllib3 errors are translated into
moorage errors here, once, with the original chained.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import urllib3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import SSLError as BotocoreSSLError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import SSLError as Urllib3SSLError

from moorage import server_credentials
from moorage.artifacts import netguard
from moorage.errors import ArtifactError, ArtifactSourceError
from moorage.settings import ArtifactPolicy

__all__ = [
    "ByteSink",
    "Deadline",
    "EmbeddedS3Objects",
    "FileDownload",
    "HttpOutcome",
    "Location",
    "ProgressCallback",
    "S3Object",
    "S3Objects",
    "allowed_local_path",
    "display_url",
    "fetch_http",
    "format_bytes",
    "parse_location",
    "read_local_file",
    "resolve_local_path",
]

ProgressCallback = Callable[[str, int, int | None], None]  # (phase, done_bytes, total_bytes or None)

CHUNK_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_S3_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
    }
)
_T = TypeVar("_T")


class ByteSink(Protocol):
    """Where downloaded bytes go; `restart` forgets a failed attempt's bytes before a retry."""

    def restart(self, total: int | None) -> None: ...

    def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True)
class Location:
    """A parsed model data URL: a local path, an S3 bucket and key, or an http(s) URL."""

    scheme: Literal["file", "s3", "http"]
    url: str
    path: Path | None = None
    bucket: str = ""
    key: str = ""


def parse_location(url: str) -> Location:
    """Accept s3://bucket/key, http(s)://..., file:///abs/path or a plain local path."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise ArtifactSourceError(f"model data URL {url!r} has no bucket: use s3://bucket/key")
        return Location("s3", url, bucket=parts.netloc, key=parts.path.removeprefix("/"))
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ArtifactSourceError(f"model data URL {display_url(url)!r} has no host")
        return Location("http", url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ArtifactSourceError(
                f"file URL {url!r} names host {parts.netloc!r}: use file:///absolute/path"
            )
        return Location("file", url, path=Path(urllib.parse.unquote(parts.path)))
    if scheme == "":
        if not url.strip():
            raise ArtifactSourceError("model data URL is empty")
        return Location("file", url, path=Path(url).expanduser())
    raise ArtifactSourceError(
        f"model data URL {display_url(url)!r} has unsupported scheme {scheme!r}: "
        "use s3://, https://, http://, file:// or a local path"
    )


def display_url(url: str) -> str:
    """The URL for messages and logs: no password and no query (pre-signed URLs carry secrets there)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}" if parts.scheme else url


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


class Deadline:
    """The time left for one fetch, retries included (ModelDataDownloadTimeoutInSeconds)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def check(self, url: str) -> None:
        if self.remaining() <= 0:
            raise ArtifactSourceError(f"could not download {url} within {self.seconds:g} s")


class _Transient(Exception):
    """One attempt failed in a way that another attempt may not (the cause is chained)."""


def retry(attempt: Callable[[], _T], *, url: str, deadline: Deadline, log: Callable[[str], None]) -> _T:
    """Run `attempt` until it succeeds, raises a final error, or the deadline leaves no time."""
    delay = 0.2
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except _Transient as exc:
            remaining = deadline.remaining()
            if remaining < 0.05:
                raise ArtifactSourceError(
                    f"could not download {url} within {deadline.seconds:g} s ({tries} attempts): {exc}"
                ) from exc.__cause__
            pause = min(remaining, delay * random.uniform(0.5, 1.0))
            log(f"{url}: {exc}; retrying in {pause:.1f} s")
            time.sleep(pause)
            delay = min(delay * 2, 10.0)


class FileDownload:
    """A `ByteSink` into one file: caps the size, computes sha256 while streaming, reports progress."""

    def __init__(self, path: Path, *, limit: int, url: str, progress: ProgressCallback | None) -> None:
        self.path = path
        self._limit = limit
        self._url = url
        self._progress = progress
        self._handle = path.open("wb")
        self._hash = hashlib.sha256()
        self._total: int | None = None
        self.size = 0

    def __enter__(self) -> FileDownload:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._handle.close()

    def restart(self, total: int | None) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        self._hash = hashlib.sha256()
        self._total = total
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise ArtifactSourceError(
                f"{self._url} is larger than the {format_bytes(self._limit)} download limit "
                "(MOORAGE_MAX_ARTIFACT_BYTES)"
            )
        try:
            self._handle.write(chunk)
        except OSError as exc:  # our disk, not the source: say so (a full disk, matrix row 9)
            raise ArtifactError(
                f"could not store {self._url} in {self.path.parent}: {exc.strerror or exc}"
            ) from exc
        self._hash.update(chunk)
        if self._progress is not None:
            self._progress("download", self.size, self._total)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# --- local files -----------------------------------------------------------------------------------


def resolve_local_path(location: Location, policy: ArtifactPolicy) -> Path:
    """The real path of a local source, after the policy: file sources on, inside an allowed root."""
    resolved = allowed_local_path(location, policy)
    if not resolved.exists():
        raise ArtifactSourceError(f"local model data {location.url!r} does not exist")
    return resolved


def allowed_local_path(location: Location, policy: ArtifactPolicy) -> Path:
    """The real path of a local source if the policy allows it (it need not exist yet)."""
    assert location.path is not None
    if not policy.allow_file_sources:
        raise ArtifactSourceError(
            f"local model data {location.url!r} is not allowed: "
            "file sources are off (MOORAGE_ALLOW_FILE_SOURCES)"
        )
    if not location.path.is_absolute() and location.url.startswith("file:"):
        raise ArtifactSourceError(f"file URL {location.url!r} must hold an absolute path")
    resolved = location.path.resolve()  # follows every symlink, so the check sees the real place
    if policy.allowed_file_roots:
        roots = [Path(root).expanduser().resolve() for root in policy.allowed_file_roots]
        if not any(resolved.is_relative_to(root) for root in roots):
            raise ArtifactSourceError(
                f"local model data {location.url!r} is not allowed: it resolves to {resolved}, which is "
                f"outside MOORAGE_ALLOWED_FILE_ROOTS ({', '.join(str(root) for root in roots)})"
            )
    return resolved


def read_local_file(path: Path, sink: ByteSink, *, limit: int, deadline: Deadline) -> None:
    """Copy a local archive into the sink (the copy, not the original, is what gets checked)."""
    try:
        # O_NOFOLLOW: the path was resolved and checked; a symlink swapped in since then is refused.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                raise ArtifactSourceError(_too_large(str(path), size, limit))
            sink.restart(size)
            while chunk := handle.read(CHUNK_BYTES):
                deadline.check(str(path))
                sink.write(chunk)
    except OSError as exc:
        raise ArtifactSourceError(f"could not read local model data {path}: {exc.strerror or exc}") from exc


def _too_large(url: str, size: int, limit: int) -> str:
    return (
        f"{url} is {format_bytes(size)}, more than the {format_bytes(limit)} download limit "
        "(MOORAGE_MAX_ARTIFACT_BYTES)"
    )


# --- S3 --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int


class S3Objects:
    """One bucket-agnostic S3 client: path-style, our own retries, unsigned when no credentials."""

    def __init__(self, endpoint_url: str | None, *, log: Callable[[str], None], timeout_s: float) -> None:
        session = server_credentials.session()
        config = Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": 1},  # `retry` below does it, to a deadline
            connect_timeout=max(0.1, min(10.0, timeout_s)),
            read_timeout=max(0.1, min(60.0, timeout_s)),
        )
        if session.get_credentials() is None:
            # A public bucket, or moorage's own embedded store, which needs no credentials.
            config = config.merge(Config(signature_version=UNSIGNED))
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._log = log
        self.endpoint: str = str(self._client.meta.endpoint_url)

    def head(self, bucket: str, key: str, *, deadline: Deadline) -> S3Object:
        url = f"s3://{bucket}/{key}"

        def attempt() -> S3Object:
            with _s3_errors("read", url):
                reply = self._client.head_object(Bucket=bucket, Key=key)
            return S3Object(key=key, etag=str(reply.get("ETag", "")), size=int(reply.get("ContentLength", 0)))

        return retry(attempt, url=url, deadline=deadline, log=self._log)

    def list_prefix(
        self, bucket: str, prefix: str, *, deadline: Deadline, max_objects: int
    ) -> list[S3Object]:
        url = f"s3://{bucket}/{prefix}"

        def attempt() -> list[S3Object]:
            found: list[S3Object] = []
            with _s3_errors("list", url):
                for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix
                ):
                    for item in page.get("Contents", []):
                        found.append(S3Object(str(item["Key"]), str(item.get("ETag", "")), int(item["Size"])))
                        if len(found) > max_objects:
                            raise ArtifactSourceError(
                                f"{url} holds more than {max_objects} objects (MOORAGE_MAX_ARCHIVE_MEMBERS)"
                            )
            return found

        return retry(attempt, url=url, deadline=deadline, log=self._log)

    def download(self, bucket: str, obj: S3Object, sink: ByteSink, *, limit: int, deadline: Deadline) -> None:
        """Stream one object into `sink`; If-Match makes sure it is still the object that was checked."""
        url = f"s3://{bucket}/{obj.key}"
        if obj.size > limit:
            raise ArtifactSourceError(_too_large(url, obj.size, limit))

        def attempt() -> None:
            with _s3_errors("download", url):
                reply = self._client.get_object(Bucket=bucket, Key=obj.key, IfMatch=obj.etag)
                body = reply["Body"]
                try:
                    sink.restart(int(reply.get("ContentLength", obj.size)))
                    for chunk in body.iter_chunks(CHUNK_BYTES):
                        deadline.check(url)
                        sink.write(chunk)
                finally:
                    body.close()

        retry(attempt, url=url, deadline=deadline, log=self._log)


class EmbeddedS3Objects:
    """The same three reads as S3Objects, served straight from moorage's own store on this disk.

    When moorage runs its embedded S3 store, the server reads artifacts from the store's directory
    instead of over HTTP: no request to itself, and no credentials to present when --auth is on.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.endpoint = f"moorage's embedded store ({root})"

    def head(self, bucket: str, key: str, *, deadline: Deadline) -> S3Object:
        from moorage.s3 import open_object

        try:
            handle, info = open_object(self.root, bucket, key)
        except KeyError:
            raise ArtifactSourceError(
                f"s3://{bucket}/{key} does not exist in moorage's S3 store; upload it first "
                f"(aws s3 cp, moorage upload)"
            ) from None
        handle.close()
        return S3Object(key=key, etag=info.quoted_etag, size=info.size)

    def list_prefix(
        self, bucket: str, prefix: str, *, deadline: Deadline, max_objects: int
    ) -> list[S3Object]:
        from moorage.s3 import list_objects

        url = f"s3://{bucket}/{prefix}"
        try:
            found = list_objects(self.root, bucket, prefix, max_keys=max_objects)
        except KeyError:
            raise ArtifactSourceError(f"{url}: no such bucket in moorage's S3 store") from None
        if len(found) > max_objects:
            raise ArtifactSourceError(
                f"{url} holds more than {max_objects} objects (MOORAGE_MAX_ARCHIVE_MEMBERS)"
            )
        return [S3Object(info.key, info.quoted_etag, info.size) for info in found]

    def download(self, bucket: str, obj: S3Object, sink: ByteSink, *, limit: int, deadline: Deadline) -> None:
        from moorage.s3 import open_object

        url = f"s3://{bucket}/{obj.key}"
        if obj.size > limit:
            raise ArtifactSourceError(_too_large(url, obj.size, limit))
        try:
            handle, info = open_object(self.root, bucket, obj.key)
        except KeyError:
            raise ArtifactSourceError(
                f"{url} disappeared from moorage's S3 store while it was read"
            ) from None
        with handle:
            if info.quoted_etag != obj.etag:
                raise ArtifactSourceError(f"{url} changed while it was being read; deploy again")
            sink.restart(info.size)
            while chunk := handle.read(CHUNK_BYTES):
                deadline.check(url)
                sink.write(chunk)


@contextlib.contextmanager
def _s3_errors(what: str, url: str) -> Iterator[None]:
    """Translate botocore's errors for one S3 call: transient ones are retried, the rest are final."""
    try:
        yield
    except ClientError as exc:
        raise _translate_client_error(exc, what, url) from exc
    except BotocoreSSLError as exc:
        raise ArtifactSourceError(f"TLS failed for S3 {what} of {url}: {exc}") from exc
    except (BotocoreConnectionError, HTTPClientError, IncompleteReadError) as exc:
        raise _Transient(f"S3 {what} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise ArtifactSourceError(f"S3 {what} of {url} failed: {exc}") from exc
    except (Urllib3Error, ConnectionError, TimeoutError) as exc:
        raise _Transient(f"S3 {what} failed: {exc}") from exc


def _translate_client_error(exc: ClientError, what: str, url: str) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    detail = f"{code or status} {error.get('Message', '')}".strip()
    if status >= 500 or status == 429 or code in _S3_TRANSIENT_CODES:
        return _Transient(f"S3 answered {status} {code}")
    if status == 404 or code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
        return ArtifactSourceError(f"{url} does not exist (S3 {what}: {detail})")
    if status == 403 or code in ("403", "AccessDenied", "Forbidden"):
        return ArtifactSourceError(
            f"S3 refused to {what} {url} ({detail}): check the credentials and the bucket policy"
        )
    if status == 412 or code == "PreconditionFailed":
        return ArtifactSourceError(f"{url} changed while it was being downloaded; prepare it again")
    return ArtifactSourceError(f"S3 {what} of {url} failed: HTTP {status} {detail}")


# --- http(s) ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpOutcome:
    not_modified: bool  # the server answered 304 to If-None-Match: the cached copy is current
    etag: str | None  # a strong ETag of what was downloaded, usable for the next conditional request


def fetch_http(
    url: str,
    sink: ByteSink,
    *,
    policy: ArtifactPolicy,
    deadline: Deadline,
    known_etag: str | None,
    log: Callable[[str], None],
) -> HttpOutcome:
    """GET `url` into `sink`, vetting every hop (netguard) and following at most 5 redirects by hand."""
    shown = display_url(url)

    def attempt() -> HttpOutcome:
        headers = {"Accept-Encoding": "identity"}
        if known_etag:
            headers["If-None-Match"] = known_etag
        with _http_exchange(url, headers, policy=policy, deadline=deadline, log=log) as (final, response):
            status = response.status
            if status == 304 and known_etag:
                return HttpOutcome(not_modified=True, etag=known_etag)
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status} from {display_url(final)}")
            if status != 200:
                raise ArtifactSourceError(
                    f"could not download {display_url(final)}: HTTP {status} {response.reason}"
                )
            length_header = response.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None
            if length is not None and length > policy.max_download_bytes:
                raise ArtifactSourceError(_too_large(shown, length, policy.max_download_bytes))
            sink.restart(length)
            try:
                # read1 returns whatever has arrived, so a source that trickles bytes cannot hold the
                # download past its deadline (a full-size read would wait for the whole chunk).
                while chunk := response.read1(CHUNK_BYTES, decode_content=True):
                    deadline.check(shown)
                    sink.write(chunk)
            except Urllib3Error as exc:
                raise _Transient(f"reading {display_url(final)} failed: {exc}") from exc
            etag = response.headers.get("ETag")
            strong = etag if etag and etag.startswith('"') else None  # W/"..." is weak: not an identity
            return HttpOutcome(not_modified=False, etag=strong)

    return retry(attempt, url=shown, deadline=deadline, log=log)


@contextlib.contextmanager
def _http_exchange(
    url: str,
    headers: dict[str, str],
    *,
    policy: ArtifactPolicy,
    deadline: Deadline,
    log: Callable[[str], None],
) -> Iterator[tuple[str, urllib3.BaseHTTPResponse]]:
    """Send GET, following redirects by hand; yields the final URL and its unread response."""
    for _ in range(MAX_REDIRECTS + 1):
        with contextlib.ExitStack() as hop:
            response = _request(url, headers, policy=policy, deadline=deadline, hop=hop)
            if response.status not in _REDIRECT_STATUSES:
                yield url, response
                return
            location = response.headers.get("Location")
        if not location:
            raise ArtifactSourceError(f"{display_url(url)} answered {response.status} without a Location")
        target = urllib.parse.urljoin(url, location)
        if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
            raise ArtifactSourceError(
                f"{display_url(url)} redirects to {display_url(target)!r}; "
                "only http(s) redirects are followed"
            )
        log(f"{display_url(url)} redirects to {display_url(target)}")
        url = target
    raise ArtifactSourceError(f"{display_url(url)} was reached after more than {MAX_REDIRECTS} redirects")


def _request(
    url: str,
    headers: dict[str, str],
    *,
    policy: ArtifactPolicy,
    deadline: Deadline,
    hop: contextlib.ExitStack,
) -> urllib3.BaseHTTPResponse:
    """One GET to the address that netguard vetted for this URL (nothing is sent before the check)."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme.lower() == "https"
    try:
        port = parts.port or (443 if https else 80)
    except ValueError as exc:
        raise ArtifactSourceError(f"model data URL {display_url(url)!r} has a bad port") from exc
    try:
        target = netguard.vet_http_target(parts.hostname or "", port, url=display_url(url), policy=policy)
    except netguard.DnsUnavailable as exc:
        raise _Transient(str(exc)) from exc
    remaining = max(deadline.remaining(), 0.01)
    timeout = urllib3.Timeout(connect=min(10.0, remaining), read=min(60.0, remaining))
    pool: urllib3.HTTPConnectionPool
    if https:
        # Connect to the vetted address; TLS SNI and the certificate check still use the name.
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            assert_hostname=target.host,
            server_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, port, timeout=timeout, retries=False)
    hop.callback(pool.close)
    host_header = f"[{target.host}]" if ":" in target.host else target.host
    if parts.port is not None:
        host_header = f"{host_header}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = {**headers, "Host": host_header}
    if parts.username:
        request_headers.update(urllib3.make_headers(basic_auth=_userinfo(parts)))
    try:
        response = pool.urlopen(
            "GET", path, headers=request_headers, redirect=False, retries=False, preload_content=False
        )
    except Urllib3SSLError as exc:
        raise ArtifactSourceError(f"TLS failed for {display_url(url)}: {_reason(exc)}") from exc
    except Urllib3Error as exc:
        raise _Transient(f"could not reach {display_url(url)}: {_reason(exc)}") from exc
    hop.callback(response.close)
    return response


def _userinfo(parts: urllib.parse.SplitResult) -> str:
    user = urllib.parse.unquote(parts.username or "")
    return f"{user}:{urllib.parse.unquote(parts.password or '')}"


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)
