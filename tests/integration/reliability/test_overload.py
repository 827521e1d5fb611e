"""Matrix row 17: more requests than one worker can take, against an admission queue of 4 (MOORAGE_MAX_QUEUE).

With the worker held busy, a burst of 20 requests leaves exactly 4 waiting and answers the other 16
with ThrottlingException at once; the 4 are served once the worker is free. Under a sustained
overload from many threads with botocore's default retries, every request ends as a success or a
ThrottlingException (never a hang or a 5xx), and the server's memory stays flat.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from integration.reliability.rig import delete_endpoint, deploy, error_of, invoke, one_attempt, wait_file
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

QUEUE = 4
BURST = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("overload") / "data", env={"MOORAGE_MAX_QUEUE": str(QUEUE)}
    )
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, artifacts: Any) -> Iterator[str]:
    sm = server.client("sagemaker")
    name = deploy(sm, f"file://{artifacts.fault_tar}")  # one instance, one worker
    yield name
    delete_endpoint(sm, name)


def attempt(runtime: Any, endpoint: str, seconds: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        invoke(runtime, endpoint, action="sleep", seconds=seconds)
    except ClientError as exc:
        return f"{error_of(exc)[0]} {error_of(exc)[1]}", time.monotonic() - started
    return "200", time.monotonic() - started


@pytest.mark.parametrize("round_", range(2))
def test_a_burst_past_the_queue_is_throttled_at_once_and_the_queue_never_grows(
    server: RunningServer, endpoint: str, tmp_path: Path, round_: int
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    blocker: dict[str, Any] = {}
    holder = threading.Thread(
        target=lambda: blocker.update(
            invoke(one_attempt(server), endpoint, action="block", started=str(started), release=str(release))
        )
    )
    holder.start()
    wait_file(started)  # the only worker is busy from now on

    clients = [one_attempt(server) for _ in range(BURST)]
    barrier = threading.Barrier(BURST)
    results: list[tuple[str, float]] = []

    def one(runtime: Any) -> None:
        barrier.wait()
        results.append(attempt(runtime, endpoint, 0.2))

    threads = [threading.Thread(target=one, args=(runtime,)) for runtime in clients]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(results) < BURST - QUEUE:  # the throttled ones come back while the worker is still held
        assert time.monotonic() < deadline, results
        time.sleep(0.02)
    time.sleep(0.3)
    throttled = list(results)
    assert [outcome for outcome, _ in throttled] == ["400 ThrottlingException"] * (BURST - QUEUE)
    assert max(latency for _, latency in throttled) < 5  # answered at once, not after a wait

    release.touch()
    for thread in threads:
        thread.join(30)
    holder.join(30)
    assert Counter(outcome for outcome, _ in results) == {
        "200": QUEUE,
        "400 ThrottlingException": BURST - QUEUE,
    }
    assert blocker["echo"]["action"] == "block"


def test_sustained_overload_ends_every_request_in_success_or_throttling(
    server: RunningServer, endpoint: str
) -> None:
    process = psutil.Process(server.process.pid)
    rss_before = process.memory_info().rss
    outcomes: Counter[str] = Counter()
    retried = 0
    lock = threading.Lock()

    def client() -> Any:  # botocore's default retry mode: throttling is retried with backoff
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard"}, read_timeout=60),
        )

    def worker(index: int) -> None:
        nonlocal retried
        runtime = client()
        for _ in range(3):
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=endpoint,
                    Body=b'{"action": "sleep", "seconds": 0.2}',
                    ContentType="application/json",
                )
                response["Body"].read()
                outcome, metadata = "200", response["ResponseMetadata"]
            except ClientError as exc:
                outcome, metadata = " ".join(map(str, error_of(exc))), exc.response["ResponseMetadata"]
            with lock:
                outcomes[outcome] += 1
                retried += metadata["RetryAttempts"]

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(worker, range(24)))

    assert set(outcomes) <= {"200", "400 ThrottlingException"}, outcomes
    assert sum(outcomes.values()) == 72
    assert outcomes["200"] >= QUEUE + 1
    assert retried > 0  # the queue did push back, and the SDK backed off
    assert process.memory_info().rss < rss_before + 64 * 1024**2
    print(f"\noverload: 72 requests from 24 threads: {dict(outcomes)}, {retried} retries by botocore")
