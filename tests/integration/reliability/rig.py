"""What the reliability matrix tests share: deploying with boto3, finding workers, slow clients, and a
server whose data dir is a tiny tmpfs of its own.

Everything here drives the real `moorage serve` from outside, as a user or an attacker would: boto3,
raw sockets, signals, psutil. Nothing of moorage is imported except to read its settings' names.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config
from botocore.exceptions import ClientError

from support.servers import RunningServer, start_server

ROLE = "arn:aws:iam::000000000000:role/moorage-tests"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# Control plane ---------------------------------------------------------------------------------------
def create_model(
    sm: Any,
    url: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    source: dict[str, Any] | None = None,
    name: str | None = None,
) -> str:
    name = name or unique("model")
    container: dict[str, Any] = {
        "Image": IMAGE,
        "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **(env or {})},
    }
    if url is not None:
        container["ModelDataUrl"] = url
    if source is not None:
        container["ModelDataSource"] = {"S3DataSource": source}
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    return name


def create_config(
    sm: Any, model: str, *, instances: int = 1, download_timeout: int | None = None, name: str | None = None
) -> str:
    name = name or unique("config")
    variant: dict[str, Any] = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InitialInstanceCount": instances,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 1.0,
    }
    if download_timeout is not None:
        variant["ModelDataDownloadTimeoutInSeconds"] = download_timeout
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    return name


def deploy(
    sm: Any,
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    instances: int = 1,
    wait: bool = True,
    name: str | None = None,
) -> str:
    """CreateModel + CreateEndpointConfig + CreateEndpoint; waits for InService unless told not to."""
    name = name or unique("ep")
    config = create_config(sm, create_model(sm, url, env=env), instances=instances)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config)
    if wait:
        wait_status(sm, name, {"InService"})
    return name


def wait_status(sm: Any, name: str, wanted: set[str], timeout: float = 120.0) -> dict[str, Any]:
    """DescribeEndpoint until its status is one of `wanted`; fails at once on an unexpected Failed."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        if status in wanted:
            return described
        assert status != "Failed", described.get("FailureReason")
        assert time.monotonic() < deadline, f"{name} is still {status} after {timeout} s"
        time.sleep(0.1)


def delete_endpoint(sm: Any, name: str, timeout: float = 60.0) -> None:
    sm.delete_endpoint(EndpointName=name)
    wait_gone(sm, name, timeout)


def wait_gone(sm: Any, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sm.describe_endpoint(EndpointName=name)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ValidationException"
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} was not deleted within {timeout} s")


def error_of(exc: ClientError) -> tuple[int, str]:
    """(HTTP status, error code) of a botocore ClientError."""
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


# Runtime -------------------------------------------------------------------------------------------
def one_attempt(
    server: RunningServer, service: str = "sagemaker-runtime", *, read_timeout: float = 60
) -> Any:
    """A boto3 client that makes exactly one attempt per call, so that the test sees every answer.

    (botocore's `max_attempts` counts retries, not attempts: `{"max_attempts": 1}` still retries once.)
    """
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=read_timeout,
            connect_timeout=5,
            max_pool_connections=50,
        ),
    )


def invoke(runtime: Any, endpoint: str, **request: Any) -> dict[str, Any]:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps(request),
        ContentType="application/json",
        Accept="application/json",
    )
    answer: dict[str, Any] = json.loads(response["Body"].read())
    return answer


def wait_answering(runtime: Any, endpoint: str, timeout: float = 60.0) -> dict[str, Any]:
    """Invoke until it succeeds; while instances (re)start the only answer allowed is a retryable 503."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return invoke(runtime, endpoint, action="echo")
        except ClientError as exc:
            assert error_of(exc) == (503, "ServiceUnavailable"), exc.response
            assert time.monotonic() < deadline, f"{endpoint} did not answer within {timeout} s"
            time.sleep(0.1)


# Processes -----------------------------------------------------------------------------------------
def fork_server(server: RunningServer) -> psutil.Process | None:
    """The fork server: the server's child that runs moorage.worker.forkserver."""
    try:
        children = psutil.Process(server.process.pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        with contextlib.suppress(psutil.Error):
            if "moorage.worker.forkserver" in child.cmdline():
                return child
    return None


def worker_pids(server: RunningServer) -> set[int]:
    """Every live worker process: the fork server's children."""
    forker = fork_server(server)
    if forker is None:
        return set()
    try:
        return {child.pid for child in forker.children() if child.status() != psutil.STATUS_ZOMBIE}
    except psutil.NoSuchProcess:
        return set()


def wait_for_workers(server: RunningServer, count: int, timeout: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = worker_pids(server)
        if len(pids) == count:
            return pids
        assert time.monotonic() < deadline, f"{len(pids)} workers, not {count}, after {timeout} s"
        time.sleep(0.05)


def server_peers(server: RunningServer) -> list[int]:
    """The client ports of the TCP connections the server holds open on its main port."""
    port = int(server.url.rsplit(":", 1)[1])
    process = psutil.Process(server.process.pid)
    return [
        connection.raddr.port
        for connection in process.net_connections("tcp")
        if connection.laddr and connection.laddr.port == port and connection.raddr
    ]


def server_connections(server: RunningServer) -> int:
    return len(server_peers(server))


def wait_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)


# Slow clients ----------------------------------------------------------------------------------------
@dataclass
class _Slow:
    sock: socket.socket
    opened: float
    closed: float | None = None
    answer: bytes = b""


@dataclass
class SlowClients:
    """M connections that each start a request and then trickle its headers (or its body) forever.

    A thread sends one byte per connection every `interval` seconds and notes when the server answers
    or hangs up. `body=True` sends complete headers declaring a body, then trickles the body.
    """

    host: str
    port: int
    count: int
    interval: float = 0.2
    body: bool = False
    path: str = "/endpoints/slow/invocations"
    clients: list[_Slow] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            sock = socket.create_connection((self.host, self.port), timeout=5)
            start = f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            if self.body:
                start += "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            else:
                start += "X-Slow"  # and then one more byte of this header's name at a time
            sock.sendall(start.encode())
            sock.setblocking(False)
            self.clients.append(_Slow(sock, time.monotonic()))
        self._thread = threading.Thread(target=self._trickle, name="slowloris", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for client in self.clients:
            client.sock.close()

    @property
    def open(self) -> int:
        return sum(1 for client in self.clients if client.closed is None)

    def answers(self) -> list[bytes]:
        return [client.answer for client in self.clients]

    def _trickle(self) -> None:
        while not self._stop.wait(self.interval):
            for client in self.clients:
                if client.closed is not None:
                    continue
                self._read(client)
                if client.closed is None and not client.answer:  # once answered, only listen
                    try:
                        client.sock.send(b"x" if self.body else b"X")
                    except OSError:
                        self._read(client)
                        client.closed = client.closed or time.monotonic()

    @staticmethod
    def _read(client: _Slow) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            client.closed = time.monotonic()
            return
        if data:
            client.answer += data
        else:
            client.closed = time.monotonic()

    def wait_all_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.open and time.monotonic() < deadline:
            time.sleep(0.05)


def idle_connections(host: str, port: int, count: int) -> list[socket.socket]:
    """Connections that send nothing at all."""
    return [socket.create_connection((host, port), timeout=5) for _ in range(count)]


# A server on a tmpfs of its own ---------------------------------------------------------------------
def namespaces_available() -> bool:
    """Whether an unprivileged user + mount namespace with a tmpfs can be made here (util-linux unshare)."""
    probe = 'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && umount "$d" && rmdir "$d"'
    try:
        done = subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def inside(server: RunningServer, path: Path) -> Path:
    """`path` as the server sees it (through its mount namespace)."""
    return Path(f"/proc/{server.process.pid}/root") / path.relative_to("/")


def start_on_tmpfs(
    data_dir: Path,
    size: str,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    tag: str | None = None,
    timeout: float = 60.0,
) -> RunningServer:
    """`moorage serve` whose data dir is a fresh tmpfs of `size` bytes, mounted in its own namespace.

    Only the server (and its workers) see the tmpfs; the test reaches it through /proc/<pid>/root.
    """
    script = 'mount -t tmpfs -o size="$1",mode=0700 tmpfs "$2" && shift 2 && exec "$@"'
    return start_server(
        data_dir,
        args=args,
        env=env,
        tag=tag,
        timeout=timeout,
        prefix=["unshare", "-rm", "sh", "-c", script, "sh", size, str(data_dir)],
    )


@contextlib.contextmanager
def filled(directory: Path, name: str = "filler") -> Iterator[Path]:
    """Fill the filesystem holding `directory` to the last byte; remove the filler afterwards."""
    path = directory / name
    chunk = b"\0" * (1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):  # ENOSPC ends each pass
                while True:
                    os.write(fd, chunk[:size])
    finally:
        os.close(fd)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
