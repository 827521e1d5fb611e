"""http(s) model sources against local http.server instances on 127.0.0.1: SSRF policy, redirects,
conditional requests and retries."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from moorage.artifacts import ModelSource, PreparedModel, prepare_model
from moorage.errors import ArtifactSourceError, IntegrityError
from moorage.settings import ArtifactPolicy

pytestmark = pytest.mark.slow

Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[Message], Reply]


def archive_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


MODEL = archive_bytes({"model.pt": b"weights", "code/inference.py": b"pass\n"})


class FakeOrigin:
    """A tiny HTTP server: path → reply function; records every request it gets."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, Message]] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                origin.requests.append((self.path, self.headers))
                route = origin.routes.get(self.path)
                status, headers, body = route(self.headers) if route else (404, {}, b"no such model")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def origin() -> Iterator[FakeOrigin]:
    server = FakeOrigin()
    yield server
    server.close()


@pytest.fixture
def other_origin() -> Iterator[FakeOrigin]:
    server = FakeOrigin()
    yield server
    server.close()


def static(body: bytes, **headers: str) -> Route:
    return lambda request: (200, dict(headers), body)


def redirect(location: str, status: int = 302) -> Route:
    return lambda request: (status, {"Location": location}, b"")


class Preparer:
    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.logs: list[str] = []
        self.downloaded: list[int] = []

    def __call__(
        self, url: str, policy: ArtifactPolicy, *, sha256: str | None = None, timeout_s: float | None = None
    ) -> PreparedModel:
        def progress(phase: str, done: int, total: int | None) -> None:
            if phase == "download":
                self.downloaded.append(done)

        return prepare_model(
            ModelSource(url, sha256=sha256),
            submit_directory=None,
            cache_dir=self.cache,
            policy=policy,
            log=self.logs.append,
            progress=progress,
            timeout_s=timeout_s,
        )


@pytest.fixture
def prepare(tmp_path: Path) -> Preparer:
    return Preparer(tmp_path / "cache")


def test_loopback_origin_is_refused_by_default_without_a_connection(
    origin: FakeOrigin, prepare: Preparer
) -> None:
    origin.routes["/model.tar.gz"] = static(MODEL)

    with pytest.raises(ArtifactSourceError) as caught:
        prepare(origin.url("/model.tar.gz"), ArtifactPolicy())

    assert "127.0.0.1 resolves to 127.0.0.1, a loopback address" in caught.value.message
    assert origin.requests == []


def test_allowlisted_origin_is_fetched(origin: FakeOrigin, prepare: Preparer) -> None:
    origin.routes["/model.tar.gz"] = static(MODEL)

    prepared = prepare(origin.url("/model.tar.gz"), ArtifactPolicy(allowed_http_hosts=(origin.host,)))

    assert prepared.digest == f"sha256:{hashlib.sha256(MODEL).hexdigest()}"
    assert (prepared.model_dir / "model.pt").read_bytes() == b"weights"
    assert origin.requests[0][1]["Host"] == origin.host
    assert prepare.downloaded[-1] == len(MODEL)


def test_strong_etag_makes_the_second_prepare_a_conditional_request(
    origin: FakeOrigin, prepare: Preparer
) -> None:
    def with_etag(request: Message) -> Reply:
        if request.get("If-None-Match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return 200, {"ETag": '"v1"'}, MODEL

    origin.routes["/model.tar.gz"] = with_etag
    policy = ArtifactPolicy(allowed_http_hosts=(origin.host,))
    first = prepare(origin.url("/model.tar.gz"), policy)
    prepare.downloaded.clear()

    second = prepare(origin.url("/model.tar.gz"), policy)

    assert second == first
    assert prepare.downloaded == []
    assert [headers.get("If-None-Match") for _, headers in origin.requests] == [None, '"v1"']
    assert any('is unchanged (ETag "v1"): nothing to download' in line for line in prepare.logs)


def test_without_a_strong_etag_the_source_is_downloaded_again(origin: FakeOrigin, prepare: Preparer) -> None:
    origin.routes["/model.tar.gz"] = static(MODEL, ETag='W/"weak"')
    policy = ArtifactPolicy(allowed_http_hosts=(origin.host,))
    prepare(origin.url("/model.tar.gz"), policy)
    second = prepare(origin.url("/model.tar.gz"), policy)

    assert len(origin.requests) == 2 and origin.requests[1][1].get("If-None-Match") is None
    assert any("has the same content as an earlier model" in line for line in prepare.logs)
    assert second.model_dir.is_dir()


def test_redirect_to_a_loopback_address_from_an_allowed_host_is_refused(
    origin: FakeOrigin, other_origin: FakeOrigin, prepare: Preparer
) -> None:
    other_origin.routes["/secret"] = static(MODEL)
    origin.routes["/model.tar.gz"] = redirect(other_origin.url("/secret"))

    with pytest.raises(ArtifactSourceError) as caught:
        prepare(origin.url("/model.tar.gz"), ArtifactPolicy(allowed_http_hosts=(origin.host,)))

    assert f"model data URL {other_origin.url('/secret')} is not allowed" in caught.value.message
    assert other_origin.requests == []
    assert len(origin.requests) == 1


def test_redirect_to_a_loopback_address_is_refused_when_only_private_addresses_are_blocked(
    origin: FakeOrigin, prepare: Preparer
) -> None:
    origin.routes["/model.tar.gz"] = redirect("http://[::1]:9/x", 307)

    with pytest.raises(ArtifactSourceError) as caught:
        prepare(origin.url("/model.tar.gz"), ArtifactPolicy(allowed_http_hosts=(origin.host,)))

    assert "http://[::1]:9/x is not allowed" in caught.value.message


def test_redirects_within_allowed_hosts_are_followed_at_most_five_times(
    origin: FakeOrigin, prepare: Preparer
) -> None:
    for hop in range(5):
        origin.routes[f"/hop{hop}"] = redirect(f"/hop{hop + 1}", 301)
    origin.routes["/hop5"] = static(MODEL)
    policy = ArtifactPolicy(allowed_http_hosts=(origin.host,))

    assert prepare(origin.url("/hop0"), policy).digest == f"sha256:{hashlib.sha256(MODEL).hexdigest()}"

    origin.routes["/hop5"] = redirect("/hop6")
    origin.routes["/hop6"] = static(MODEL)
    with pytest.raises(ArtifactSourceError, match="more than 5 redirects"):
        prepare(origin.url("/hop0"), policy)


def test_client_errors_fail_at_once_naming_url_and_status(origin: FakeOrigin, prepare: Preparer) -> None:
    started = time.monotonic()
    with pytest.raises(ArtifactSourceError) as caught:
        prepare(origin.url("/missing.tar.gz"), ArtifactPolicy(allowed_http_hosts=(origin.host,)))

    assert caught.value.message == f"could not download {origin.url('/missing.tar.gz')}: HTTP 404 Not Found"
    assert len(origin.requests) == 1
    assert time.monotonic() - started < 2.0


def test_server_errors_are_retried(origin: FakeOrigin, prepare: Preparer) -> None:
    answers: Iterator[Reply] = iter([(503, {}, b"busy"), (429, {}, b"slow down"), (200, {}, MODEL)])
    origin.routes["/model.tar.gz"] = lambda request: next(answers)

    prepared = prepare(origin.url("/model.tar.gz"), ArtifactPolicy(allowed_http_hosts=(origin.host,)))

    assert (prepared.model_dir / "model.pt").read_bytes() == b"weights"
    assert len(origin.requests) == 3
    assert sum("retrying" in line for line in prepare.logs) == 2


def test_unreachable_source_is_retried_and_fails_within_the_timeout(prepare: Preparer) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.tar.gz"
    started = time.monotonic()

    with pytest.raises(ArtifactSourceError) as caught:
        prepare(url, ArtifactPolicy(block_private_addresses=False), timeout_s=1.0)

    assert caught.value.message.startswith(f"could not download {url} within 1 s")
    assert "could not reach" in caught.value.message
    assert 0.9 < time.monotonic() - started < 5.0
    assert sum("retrying" in line for line in prepare.logs) >= 2


def test_download_cap_is_enforced_from_content_length(origin: FakeOrigin, prepare: Preparer) -> None:
    origin.routes["/model.tar.gz"] = static(MODEL)

    with pytest.raises(ArtifactSourceError, match="download limit"):
        prepare(
            origin.url("/model.tar.gz"),
            ArtifactPolicy(allowed_http_hosts=(origin.host,), max_download_bytes=64),
        )


def test_sha256_pin_is_checked_for_http_sources(origin: FakeOrigin, prepare: Preparer) -> None:
    origin.routes["/model.tar.gz"] = static(MODEL)
    policy = ArtifactPolicy(allowed_http_hosts=(origin.host,))

    with pytest.raises(IntegrityError, match="checksum mismatch"):
        prepare(origin.url("/model.tar.gz"), policy, sha256="00" * 32)

    assert list((prepare.cache / "models").iterdir()) == []
    assert prepare(
        origin.url("/model.tar.gz"), policy, sha256=hashlib.sha256(MODEL).hexdigest()
    ).model_dir.is_dir()


def test_query_strings_are_kept_out_of_messages(origin: FakeOrigin, prepare: Preparer) -> None:
    with pytest.raises(ArtifactSourceError) as caught:
        prepare(origin.url("/m.tar.gz?X-Amz-Signature=secret"), ArtifactPolicy())

    assert "secret" not in caught.value.message
    assert origin.url("/m.tar.gz?...") in caught.value.message
