"""Matrix rows 10, 11 and 12 end to end: pinned, hostile, forbidden, unreachable and slow model data.

Row 10: an artifact that does not match its pin (S3 ETag through ModelDataSource, checked against a
moto S3 whose object is swapped after CreateModel; sha256 through MOORAGE_MODEL_DATA_SHA256) fails
its endpoint with "checksum mismatch"; nothing is extracted and no handler code runs (the handler
would leave a marker file on import). Row 11: a hostile tarball fails its endpoint naming the member,
and a sentinel directory outside stays empty. Row 12: a model whose data points at a metadata,
loopback or private address, or at a local path outside the allowed roots, is refused at CreateModel
with a ValidationException and no connection is attempted; a redirect to such an address is refused
when fetched; an unreachable S3 and a source that stalls or trickles fail their endpoint with
"could not download" within ModelDataDownloadTimeoutInSeconds.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from integration.reliability.rig import (
    create_config,
    create_model,
    deploy,
    error_of,
    invoke,
    unique,
    wait_status,
)
from support.aws import offline_credentials
from support.handlers import FAULT_HANDLER
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

BUCKET = "models"
MAX_MEMBERS = 200
MAX_EXTRACTED = 16 * 1024 * 1024


# Local helpers: a connection counter, a redirector, and sources that stall or trickle -------------------
class Trap:
    """A TCP listener that only counts the connections it gets (it must get none)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def serve_http(
    handle: Callable[[http.server.BaseHTTPRequestHandler], None],
) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def port_of(server: http.server.ThreadingHTTPServer) -> int:
    return int(server.server_address[1])


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    listener = Trap()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with offline_credentials(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(scope="module")
def s3(aws_env: None) -> Iterator[tuple[str, Any]]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, config=Config(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket=BUCKET)
    try:
        yield url, client
    finally:
        moto.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, s3: tuple[str, Any]) -> Iterator[RunningServer]:
    """The default policy (no allowlists), local files only under the tests' temp dir, S3 from moto."""
    running = start_server(
        tmp_path_factory.mktemp("sources") / "data",
        env={
            "AWS_ENDPOINT_URL_S3": s3[0],
            "MOORAGE_ALLOWED_FILE_ROOTS": str(tmp_path_factory.getbasetemp()),
            "MOORAGE_MAX_ARCHIVE_MEMBERS": str(MAX_MEMBERS),
            "MOORAGE_MAX_EXTRACTED_BYTES": str(MAX_EXTRACTED),
        },
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def tarball(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """An archive whose first member is the fault handler, followed by `members` as given."""
    with tarfile.open(path, "w:gz") as tar:
        handler = FAULT_HANDLER.encode()
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(handler)
        tar.addfile(info, io.BytesIO(handler))
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def failure_of(server: RunningServer, url: str, env: dict[str, str] | None = None, **kw: Any) -> str:
    sm = server.client("sagemaker")
    name = unique("ep")
    config = create_config(sm, create_model(sm, url, env=env, **kw))
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config)
    reason: str = wait_status(sm, name, {"Failed"})["FailureReason"]
    sm.delete_endpoint(EndpointName=name)
    return reason


def extracted_trees(server: RunningServer) -> set[str]:
    models = server.data_dir / "cache" / "models"
    return set(os.listdir(models)) if models.exists() else set()


# Row 10 ---------------------------------------------------------------------------------------------
def test_a_wrong_sha256_pin_fails_before_anything_is_extracted_or_run(
    server: RunningServer, artifacts: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    actual = hashlib.sha256(artifacts.fault_tar.read_bytes()).hexdigest()
    before = extracted_trees(server)
    env = {"MOORAGE_MODEL_DATA_SHA256": "0" * 64, "FAULT_IMPORT_MARKER": str(marker)}

    reason = failure_of(server, f"file://{artifacts.fault_tar}", env)

    assert reason == (
        f"Production variant AllTraffic: checksum mismatch for {artifacts.fault_tar}: "
        f"its sha256 is {actual}, but the model pins {'0' * 64}; nothing was extracted"
    )
    assert extracted_trees(server) - before == set()
    assert not marker.exists()


def test_the_right_sha256_pin_serves(server: RunningServer, artifacts: Any) -> None:
    sm = server.client("sagemaker")
    pin = hashlib.sha256(artifacts.fault_tar.read_bytes()).hexdigest()
    name = deploy(sm, f"file://{artifacts.fault_tar}", env={"MOORAGE_MODEL_DATA_SHA256": f"sha256:{pin}"})
    assert invoke(server.client("sagemaker-runtime"), name, action="echo")["echo"] == {"action": "echo"}
    sm.delete_endpoint(EndpointName=name)


def test_an_object_swapped_after_create_model_fails_its_etag_pin(
    server: RunningServer, s3: tuple[str, Any], artifacts: Any, tmp_path: Path
) -> None:
    _, client = s3
    key = f"{unique('swap')}/model.tar.gz"
    client.put_object(Bucket=BUCKET, Key=key, Body=artifacts.fault_tar.read_bytes())
    pinned = client.head_object(Bucket=BUCKET, Key=key)["ETag"]
    marker = tmp_path / "imported"
    sm = server.client("sagemaker")
    source = {
        "S3Uri": f"s3://{BUCKET}/{key}",
        "S3DataType": "S3Object",
        "CompressionType": "Gzip",
        "ETag": pinned,
    }
    model = create_model(sm, source=source, env={"FAULT_IMPORT_MARKER": str(marker)})
    swapped = tarball(tmp_path / "other.tar.gz", [regular("weights.bin", b"another model")]).read_bytes()
    client.put_object(Bucket=BUCKET, Key=key, Body=swapped)  # after CreateModel, before CreateEndpoint
    actual = client.head_object(Bucket=BUCKET, Key=key)["ETag"]
    before = extracted_trees(server)

    name = unique("ep")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=create_config(sm, model))
    reason = wait_status(sm, name, {"Failed"})["FailureReason"]

    assert reason == (
        f"Production variant AllTraffic: checksum mismatch for s3://{BUCKET}/{key}: its ETag is {actual}, "
        f"but the model pins ETag {pinned.strip(chr(34))}; nothing was downloaded or extracted"
    )
    assert extracted_trees(server) == before
    assert not marker.exists()
    sm.delete_endpoint(EndpointName=name)


def test_a_matching_etag_pin_serves_from_model_data_source_alone(
    server: RunningServer, s3: tuple[str, Any], artifacts: Any
) -> None:
    _, client = s3
    key = f"{unique('pinned')}/model.tar.gz"
    client.put_object(Bucket=BUCKET, Key=key, Body=artifacts.fault_tar.read_bytes())
    etag = client.head_object(Bucket=BUCKET, Key=key)["ETag"]
    sm = server.client("sagemaker")
    source = {
        "S3Uri": f"s3://{BUCKET}/{key}",
        "S3DataType": "S3Object",
        "CompressionType": "Gzip",
        "ETag": etag,
    }
    name = unique("ep")
    sm.create_endpoint(
        EndpointName=name, EndpointConfigName=create_config(sm, create_model(sm, source=source))
    )
    wait_status(sm, name, {"InService"})
    assert invoke(server.client("sagemaker-runtime"), name, action="echo")["echo"] == {"action": "echo"}
    sm.delete_endpoint(EndpointName=name)


# Row 11 ---------------------------------------------------------------------------------------------
def hostile_cases(sentinel: Path) -> dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str, str]]:
    """case → (members after the handler, the member named in the error, why)."""
    climb = "../" * 24 + str(sentinel).lstrip("/") + "/escaped.txt"
    long_name = "code/" + "n" * 256
    many: list[tuple[tarfile.TarInfo, bytes | None]] = [regular(f"data/{i}.txt") for i in range(MAX_MEMBERS)]
    return {
        "parent traversal": ([regular(climb)], climb, "its name has a '..' component"),
        "absolute name": (
            [regular(f"{sentinel}/abs.txt")],
            f"{sentinel}/abs.txt",
            "absolute names are not allowed",
        ),
        "symlink out": (
            [special("code/out", tarfile.SYMTYPE, str(sentinel)), regular("code/out/through.txt")],
            "code/out",
            "symbolic links are not allowed (only regular files and directories)",
        ),
        "hardlink in tree": (
            [special("code/hard", tarfile.LNKTYPE, "code/inference.py")],
            "code/hard",
            "hard links are not allowed (only regular files and directories)",
        ),
        "char device": (
            [special("dev/zero", tarfile.CHRTYPE)],
            "dev/zero",
            "character devices are not allowed (only regular files and directories)",
        ),
        "block device": (
            [special("dev/sda", tarfile.BLKTYPE)],
            "dev/sda",
            "block devices are not allowed (only regular files and directories)",
        ),
        "fifo": (
            [special("code/pipe", tarfile.FIFOTYPE)],
            "code/pipe",
            "FIFOs are not allowed (only regular files and directories)",
        ),
        "long name": ([regular(long_name)], long_name, "a name component is longer than 255 bytes"),
        "too many members": (
            many,
            f"data/{MAX_MEMBERS - 1}.txt",
            f"the archive has more than {MAX_MEMBERS} members (MOORAGE_MAX_ARCHIVE_MEMBERS)",
        ),
        "gzip bomb": (
            [regular("weights.bin", bytes(2 * MAX_EXTRACTED))],
            "weights.bin",
            f"the archive extracts to more than {MAX_EXTRACTED} bytes (MOORAGE_MAX_EXTRACTED_BYTES)",
        ),
    }


CASES = list(hostile_cases(Path("/x")))


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_tarball_fails_its_endpoint_naming_the_member(
    server: RunningServer, tmp_path: Path, case: str
) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    marker = tmp_path / "imported"
    members, member, why = hostile_cases(sentinel)[case]
    archive = tarball(tmp_path / "hostile.tar.gz", members)
    before = extracted_trees(server)

    reason = failure_of(server, f"file://{archive}", {"FAULT_IMPORT_MARKER": str(marker)})

    assert reason == f"Production variant AllTraffic: unsafe member {member!r} in {archive}: {why}"
    assert list(sentinel.iterdir()) == []
    assert extracted_trees(server) == before
    assert list((server.data_dir / "cache" / "tmp").iterdir()) == []
    assert not marker.exists()


def test_special_permission_bits_are_dropped_not_kept(server: RunningServer, tmp_path: Path) -> None:
    archive = tarball(tmp_path / "setuid.tar.gz", [regular("bin/tool", b"#!/bin/sh\n", mode=0o6755)])
    sm = server.client("sagemaker")
    name = deploy(sm, f"file://{archive}")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    tool = server.data_dir / "cache" / "models" / f"sha256-{digest}" / "bin" / "tool"
    assert tool.stat().st_mode & 0o7777 == 0o555  # owner exec kept; the cache seals trees read-only
    sm.delete_endpoint(EndpointName=name)


# Row 12: refused up front ---------------------------------------------------------------------------
def forbidden_urls(trap: int) -> list[tuple[str, str]]:
    return [
        ("http://169.254.169.254/latest/model.tar.gz", "169.254.169.254, a cloud metadata address"),
        ("http://[fd00:ec2::254]/model.tar.gz", "fd00:ec2::254, a cloud metadata address"),
        (f"http://127.0.0.1:{trap}/model.tar.gz", "127.0.0.1, a loopback address"),
        (f"http://localhost:{trap}/model.tar.gz", "a loopback address"),
        (f"http://[::1]:{trap}/model.tar.gz", "::1, a loopback address"),
        (f"http://[::ffff:127.0.0.1]:{trap}/m.tar.gz", "a loopback address (IPv4 127.0.0.1 inside IPv6)"),
        (f"http://2130706433:{trap}/model.tar.gz", "127.0.0.1, a loopback address"),
        ("https://10.1.2.3/model.tar.gz", "10.1.2.3, a private address"),
        ("http://192.168.7.7:8080/model.tar.gz", "192.168.7.7, a private address"),
        ("http://0.0.0.0/model.tar.gz", "0.0.0.0, an unspecified address"),
    ]


@pytest.mark.parametrize("index", range(len(forbidden_urls(1))))
def test_create_model_refuses_ssrf_targets_without_connecting(
    server: RunningServer, trap: Trap, index: int
) -> None:
    url, problem = forbidden_urls(trap.port)[index]
    sm = server.client("sagemaker")
    name = unique("ssrf")
    with pytest.raises(ClientError) as caught:
        create_model(sm, url, name=name)
    assert error_of(caught.value) == (400, "ValidationException")
    message = caught.value.response["Error"]["Message"]
    assert message.startswith(f"model data URL {url} is not allowed: ") and problem in message, message
    assert trap.connections == 0
    with pytest.raises(ClientError) as absent:
        sm.describe_model(ModelName=name)
    assert error_of(absent.value) == (400, "ValidationException")  # the refused model was not created


def test_create_model_refuses_local_paths_outside_the_allowed_roots(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    sm = server.client("sagemaker")
    link = tmp_path / "inside-but-pointing-out"
    link.symlink_to("/etc")
    for url, resolved in (("file:///etc/passwd", "/etc/passwd"), (f"file://{link}/passwd", "/etc/passwd")):
        with pytest.raises(ClientError) as caught:
            create_model(sm, url)
        assert error_of(caught.value) == (400, "ValidationException")
        assert caught.value.response["Error"]["Message"] == (
            f"local model data {url!r} is not allowed: it resolves to {resolved}, which is outside "
            f"MOORAGE_ALLOWED_FILE_ROOTS ({tmp_path_factory.getbasetemp().resolve()})"
        )


# Row 12: refused or failed when fetched -------------------------------------------------------------
@pytest.fixture(scope="module")
def trickled() -> list[float]:
    """When each request to the trickling source arrived."""
    return []


@pytest.fixture(scope="module")
def sources(trap: Trap, trickled: list[float]) -> Iterator[dict[str, int]]:
    """A redirector to the trap, a source that never answers, one that trickles, and a closed port."""

    def redirect(request: http.server.BaseHTTPRequestHandler) -> None:
        request.send_response(302)
        request.send_header("Location", f"http://127.0.0.1:{trap.port}/model.tar.gz")
        request.send_header("Content-Length", "0")
        request.end_headers()

    stop = threading.Event()

    def trickle(request: http.server.BaseHTTPRequestHandler) -> None:
        trickled.append(time.monotonic())
        request.send_response(200)
        request.send_header("Content-Length", str(10 * 1024 * 1024))
        request.end_headers()
        while not stop.wait(0.5):
            try:
                request.wfile.write(b"\0")
                request.wfile.flush()
            except OSError:
                return

    def stall(request: http.server.BaseHTTPRequestHandler) -> None:
        stop.wait(120)

    servers = {
        kind: serve_http(handle)
        for kind, handle in (("redirect", redirect), ("trickle", trickle), ("stall", stall))
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    yield {kind: port_of(http_server) for kind, http_server in servers.items()} | {"closed": closed}
    stop.set()
    for http_server in servers.values():
        http_server.shutdown()
        http_server.server_close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, sources: dict[str, int]) -> Iterator[RunningServer]:
    """http(s) sources limited to the three local ones; S3 at a port where nothing listens."""
    hosts = ",".join(f"127.0.0.1:{sources[kind]}" for kind in ("redirect", "trickle", "stall"))
    running = start_server(
        tmp_path_factory.mktemp("guarded") / "data",
        env={
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{sources['closed']}",
            "MOORAGE_ALLOWED_HTTP_HOSTS": hosts,
        },
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def test_a_redirect_to_a_loopback_address_is_refused_without_connecting(
    guarded: RunningServer, sources: dict[str, int], trap: Trap
) -> None:
    url = f"http://127.0.0.1:{sources['redirect']}/model.tar.gz"
    reason = failure_of(guarded, url)
    target = f"http://127.0.0.1:{trap.port}/model.tar.gz"
    assert reason == (
        f"Production variant AllTraffic: model data URL {target} is not allowed: host '127.0.0.1' is not in "
        f"MOORAGE_ALLOWED_HTTP_HOSTS ({guarded_hosts(sources)})"
    )
    assert trap.connections == 0


def guarded_hosts(sources: dict[str, int]) -> str:
    return ", ".join(f"127.0.0.1:{sources[kind]}" for kind in ("redirect", "trickle", "stall"))


def test_hosts_outside_the_allowlist_are_refused_at_create_model(guarded: RunningServer) -> None:
    with pytest.raises(ClientError) as caught:
        create_model(guarded.client("sagemaker"), "https://example.com/model.tar.gz")
    assert error_of(caught.value) == (400, "ValidationException")
    assert (
        "host 'example.com' is not in MOORAGE_ALLOWED_HTTP_HOSTS" in caught.value.response["Error"]["Message"]
    )


def test_unreachable_stalled_and_trickling_sources_fail_within_the_download_timeout(
    guarded: RunningServer, sources: dict[str, int]
) -> None:
    sm = guarded.client("sagemaker")
    urls = {
        "unreachable S3": f"s3://{BUCKET}/model.tar.gz",
        "stalled": f"http://127.0.0.1:{sources['stall']}/model.tar.gz",
        "trickling": f"http://127.0.0.1:{sources['trickle']}/model.tar.gz",
    }
    names = {}
    started = time.monotonic()
    for kind, url in urls.items():
        names[kind] = unique("slow")
        config = create_config(sm, create_model(sm, url), download_timeout=60)
        sm.create_endpoint(EndpointName=names[kind], EndpointConfigName=config)
    reasons = {
        kind: wait_status(sm, name, {"Failed"}, timeout=120)["FailureReason"] for kind, name in names.items()
    }
    elapsed = time.monotonic() - started

    for kind, url in urls.items():
        assert reasons[kind].startswith(
            f"Production variant AllTraffic: could not download {url} within 60 s"
        ), (
            kind,
            reasons[kind],
        )
    assert elapsed < 100, reasons  # 60 s, plus the slack of a loaded machine
    for name in names.values():
        sm.delete_endpoint(EndpointName=name)


def test_the_server_stops_at_once_while_a_download_is_in_progress(
    tmp_path: Path, sources: dict[str, int], trickled: list[float]
) -> None:
    url = f"http://127.0.0.1:{sources['trickle']}/model.tar.gz"
    server = start_server(
        tmp_path / "data", env={"MOORAGE_ALLOWED_HTTP_HOSTS": f"127.0.0.1:{sources['trickle']}"}
    )
    sm = server.client("sagemaker")
    before = len(trickled)
    sm.create_endpoint(EndpointName=unique("ep"), EndpointConfigName=create_config(sm, create_model(sm, url)))
    deadline = time.monotonic() + 30
    while len(trickled) == before:  # the download (an hour's allowance by default) has begun
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stopping = time.monotonic()
    assert server.stop(timeout=30) == 0
    assert time.monotonic() - stopping < 20
    assert not wait_until_gone(server.tag)
