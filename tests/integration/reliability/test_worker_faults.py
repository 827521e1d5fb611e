"""Matrix row 4: a worker out of memory, killed as the OOM killer would, or failing to load again and again.

MOORAGE_WORKER_MEMORY_LIMIT sets every worker's RLIMIT_DATA; a handler allocating past it gets a
MemoryError, which is the handler's failure (424) and leaves the worker serving. A worker SIGKILLed
from outside fails the request it held (424, "killed by signal SIGKILL") and is replaced; other
endpoints never notice. A replacement that keeps failing to load is retried with growing pauses, and
the endpoint says so: DescribeEndpoint's CurrentInstanceCount drops, and `serve-model`'s /ping turns
Unhealthy, until a replacement loads again.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from integration.reliability.rig import (
    delete_endpoint,
    deploy,
    error_of,
    invoke,
    wait_file,
    wait_for_workers,
    worker_pids,
)
from support.servers import (
    RunningServer,
    http_get,
    launch_model_server,
    start_server,
    wait_for_ready,
    wait_until_gone,
)

pytestmark = pytest.mark.slow

LIMIT = 3 * 1024**3  # torch in the fork server already accounts for about 0.9 GiB of a worker's data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("worker-faults") / "data",
        env={"MOORAGE_WORKER_MEMORY_LIMIT": str(LIMIT), "MOORAGE_DRAIN_GRACE": "5"},
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@pytest.fixture(scope="module")
def endpoints(server: RunningServer, artifacts: Any) -> Iterator[tuple[str, str]]:
    """(the endpoint under test, a bystander endpoint that must never notice)."""
    sm = server.client("sagemaker")
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "20"}
    names = (
        deploy(sm, f"file://{artifacts.fault_tar}", env=env),
        deploy(sm, f"file://{artifacts.fault_tar}"),
    )
    yield names
    for name in names:
        delete_endpoint(sm, name)


def default_retries(server: RunningServer) -> Any:
    """A client with botocore's default retry mode, to show how many attempts it makes."""
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard"}, read_timeout=60),
    )


def test_every_worker_gets_the_configured_memory_limit(
    server: RunningServer, endpoints: tuple[str, str]
) -> None:
    pids = worker_pids(server)
    assert len(pids) == 2
    for pid in pids:
        limit = psutil.Process(pid).rlimit(psutil.RLIMIT_DATA)
        assert limit == (LIMIT, LIMIT)


@pytest.mark.parametrize("round_", range(3))
def test_allocating_past_the_limit_is_a_model_error_and_the_worker_keeps_serving(
    server: RunningServer, endpoints: tuple[str, str], round_: int
) -> None:
    endpoint, _ = endpoints
    runtime = default_retries(server)
    before = invoke(runtime, endpoint, action="echo")["pid"]
    server_rss = psutil.Process(server.process.pid).memory_info().rss

    with pytest.raises(ClientError) as caught:
        invoke(runtime, endpoint, action="alloc", bytes=4 * LIMIT)

    response = caught.value.response
    assert error_of(caught.value) == (424, "ModelError")
    assert response["OriginalStatusCode"] == 500
    assert response["ResponseMetadata"]["RetryAttempts"] == 0  # a ModelError is never retried
    assert invoke(runtime, endpoint, action="alloc", bytes=64 * 1024**2) == {"allocated": 64 * 1024**2}
    assert invoke(runtime, endpoint, action="echo")["pid"] == before  # no respawn: MemoryError was caught
    assert psutil.Process(server.process.pid).memory_info().rss < server_rss + 64 * 1024**2


@pytest.mark.parametrize("round_", range(3))
def test_a_worker_killed_like_the_oom_killer_fails_its_request_and_is_replaced(
    server: RunningServer, endpoints: tuple[str, str], tmp_path: Path, round_: int
) -> None:
    endpoint, bystander = endpoints
    runtime = server.client("sagemaker-runtime")
    victim = invoke(runtime, endpoint, action="echo")["pid"]
    started, release = tmp_path / "started", tmp_path / "release"
    outcome: dict[str, Any] = {}

    def blocked() -> None:
        try:
            outcome["answer"] = invoke(
                runtime, endpoint, action="block", started=str(started), release=str(release), seconds=30
            )
        except ClientError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=blocked)
    thread.start()
    wait_file(started)
    os.kill(victim, signal.SIGKILL)
    thread.join(10)

    assert not thread.is_alive(), "the request held by the killed worker did not end"
    error = outcome["error"]
    assert error_of(error) == (424, "ModelError")
    assert error.response["OriginalStatusCode"] == 500
    assert "killed by signal SIGKILL" in error.response["OriginalMessage"]
    replacement = invoke(runtime, endpoint, action="echo")["pid"]  # waits for the replacement
    assert replacement != victim
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    assert invoke(runtime, bystander, action="echo")["version"] == "1"
    wait_for_workers(server, 2)


def test_a_replacement_that_keeps_failing_to_load_backs_off_and_the_endpoint_reports_it(
    server: RunningServer, artifacts: Any, tmp_path: Path
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    marker, loads = tmp_path / "marker", tmp_path / "loads"
    env = {"FAULT_LOAD": "raise_if_marker", "FAULT_MARKER": str(marker), "FAULT_LOAD_LOG": str(loads)}
    name = deploy(sm, f"file://{artifacts.fault_tar}", env=env)
    try:
        first = invoke(runtime, name, action="echo")["pid"]
        marker.touch()  # from now on, model_fn raises
        loads.write_text("")
        os.kill(first, signal.SIGKILL)

        window = 7.0
        time.sleep(window)
        attempts = [float(line.split()[0]) for line in loads.read_text().splitlines()]
        # Pauses of 0.5, 1, 2, 4 s between attempts: about 4 in the window. A supervisor that did not
        # back off would have made dozens.
        assert 3 <= len(attempts) <= 6, attempts
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert max(gaps) >= 1.9, gaps
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "InService"
        (variant,) = described["ProductionVariants"]
        assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (0, 1)

        marker.unlink()  # the next attempt loads
        deadline = time.monotonic() + 40
        while variant["CurrentInstanceCount"] != 1:
            assert time.monotonic() < deadline, "the endpoint did not report its instance back"
            time.sleep(0.2)
            (variant,) = sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
        assert invoke(runtime, name, action="echo")["pid"] != first
    finally:
        marker.unlink(missing_ok=True)
        delete_endpoint(sm, name)


def test_serve_model_ping_is_unhealthy_while_no_worker_can_load(artifacts: Any, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    server = launch_model_server(
        artifacts.fault_tar,
        tmp_path / "data",
        args=["--workers", "1"],
        env={"FAULT_LOAD": "raise_if_marker", "FAULT_MARKER": str(marker)},
    )
    try:
        wait_for_ready(server, 60)
        (worker,) = worker_pids(server)
        marker.touch()
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while http_get(server.url + "/ping")[0] == 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http_get(server.url + "/ping") == (500, b'{\n  "status": "Unhealthy"\n}\n')
        marker.unlink()
        deadline = time.monotonic() + 40
        while http_get(server.url + "/ping")[0] != 200:
            assert time.monotonic() < deadline, "serve-model did not become healthy again"
            time.sleep(0.1)
    finally:
        server.stop()
    assert not wait_until_gone(server.tag)
