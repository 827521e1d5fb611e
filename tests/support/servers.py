"""Start the real `moorage serve` / `moorage serve-model` as subprocesses and talk to them over HTTP.

Servers bind port 0; the test learns the ports from the `server.json` the server writes once it
listens, then waits on /ping with a deadline. Every process a server starts inherits an environment
tag, so a test can prove that nothing outlived it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

TAG_VARIABLE = "PYTEST_MOORAGE_TAG"  # not MOORAGE_*: workers must inherit it
REGION = "us-east-1"


def base_environment(tag: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOORAGE_", "SAGEMAKER_"))}
    env.update(
        {
            TAG_VARIABLE: tag,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "MOORAGE_DRAIN_GRACE": "10",
            "PYTHONUNBUFFERED": "1",
            # Test handlers signal the test through files under the temp dir ("started", load logs);
            # the sandbox's own tests (tests/integration/security/) set this to "" again.
            "MOORAGE_SANDBOX_WRITABLE": tempfile.gettempdir(),
        }
    )
    env.update(extra or {})
    return env


def tagged_processes(tag: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get(TAG_VARIABLE) == tag:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_until_gone(tag: str, timeout: float = 15.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in tagged_processes(tag) if p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            return []
        time.sleep(0.1)
    return tagged_processes(tag)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    tag: str
    url: str = ""
    s3_url: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def client(
        self, service: str, *, credentials: tuple[str, str] = ("testing", "testing"), **kwargs: Any
    ) -> Any:
        """An unchanged boto3 client for this server; `credentials` (key id, secret) sign its requests."""
        endpoint = self.s3_url if service == "s3" else self.url
        config = Config(
            retries={"max_attempts": 1, "mode": "standard"}, read_timeout=90, s3={"addressing_style": "path"}
        )
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
            config=config,
            **kwargs,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def _wait_for_info(
    server: RunningServer,
    timeout: float,
    ready_path: str,
    info_name: str = "server.json",
    *,
    own_mounts: bool = False,
) -> None:
    deadline = time.monotonic() + timeout
    info_path = server.data_dir / info_name
    if own_mounts:  # the server's files as its mount namespace shows them
        info_path = Path(f"/proc/{server.process.pid}/root") / info_path.relative_to("/")
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = None
        if info and info.get("pid") == server.process.pid:
            server.info = info
            server.url = str(info["url"])
            server.s3_url = info.get("s3_url")
            status, _ = http_get(server.url + ready_path)
            if status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"the server was not ready within {timeout} s:\n{server.log()[-4000:]}")


def start_server(
    data_dir: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    tag: str | None = None,
    timeout: float = 60.0,
    prefix: Sequence[str] = (),
) -> RunningServer:
    """`moorage serve` on free ports; returns once /ping answers.

    `prefix` runs the server under another command that gives it mounts of its own (`unshare -m …`);
    its files are then read through /proc/<pid>/root.
    """
    tag = tag or uuid.uuid4().hex
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "moorage",
                "serve",
                "--port",
                "0",
                "--s3-port",
                "0",
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=base_environment(tag, env),
        )
    server = RunningServer(process, data_dir, log_path, tag)
    try:
        _wait_for_info(server, timeout, "/ping", own_mounts=bool(prefix))
    except BaseException:
        server.kill()
        raise
    return server


def wait_for_url(server: RunningServer, info_name: str = "serve-model.json", timeout: float = 30.0) -> None:
    """Until the server has bound its port (it may not be ready yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = json.loads((server.data_dir / info_name).read_text())
        except (OSError, ValueError):
            info = None
        if info and info.get("pid") == server.process.pid:
            server.url = str(info["url"])
            return
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log()[-4000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"the server did not bind within {timeout} s")


def wait_for_ready(server: RunningServer, timeout: float = 120.0) -> None:
    _wait_for_info(server, timeout, "/ping", "serve-model.json")


def start_model_server(
    model_data: str | Path,
    data_dir: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    tag: str | None = None,
    timeout: float = 120.0,
) -> RunningServer:
    """`moorage serve-model` on a free port; returns once /ping says every worker loaded the model."""
    server = launch_model_server(model_data, data_dir, args=args, env=env, tag=tag)
    try:
        wait_for_ready(server, timeout)
    except BaseException:
        server.kill()
        raise
    return server


def launch_model_server(
    model_data: str | Path,
    data_dir: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    tag: str | None = None,
    port_flag: bool = True,
) -> RunningServer:
    """`moorage serve-model` on a free port, without waiting for it.

    `port_flag=False` leaves `--port` out, so the server picks its port as SageMaker's container does
    (SAGEMAKER_BIND_TO_PORT, else 8080): the caller's `env` must then name a free one.
    """
    tag = tag or uuid.uuid4().hex
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-serve-model.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moorage",
                "serve-model",
                str(model_data),
                *(["--port", "0"] if port_flag else []),
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=base_environment(tag, env),
        )
    return RunningServer(process, data_dir, log_path, tag)


def post(
    url: str, body: bytes, headers: Mapping[str, str] | None = None, timeout: float = 90.0
) -> tuple[int, dict[str, str], bytes, str]:
    """POST and return (status, headers, body, reason phrase), whatever the status."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read(), response.reason
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read(), exc.reason


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_files(directory: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 handing out the files of `directory`; yields its URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def server_with_bucket(
    data_dir: Path, bucket: str, *, env: Mapping[str, str] | None = None
) -> Iterator[RunningServer]:
    """A module's `moorage serve` with one bucket made in its S3 store; stopped afterwards, and then
    nothing it started may outlive it (the module's fixtures yield from this)."""
    running = start_server(data_dir, env=env)
    try:
        running.client("s3").create_bucket(Bucket=bucket)
        yield running
    finally:
        running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]
