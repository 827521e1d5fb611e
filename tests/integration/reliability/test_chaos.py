"""The load-and-chaos test: steady boto3 traffic to an endpoint of 2 instances while workers are SIGKILLed at
random, an UpdateEndpoint runs and slowloris clients hold connections.

Every request's outcome is counted. What must hold: each failure is one SageMaker's clients know how to
handle (a 424 ModelError for the request a killed worker held, a retryable 503 or
ThrottlingException), no request outlives its timeout, no answer goes to the wrong request, the
acknowledged UpdateEndpoint takes effect (or, if a kill hit one of its new workers while it loaded,
fails with a FailureReason while the old configuration keeps serving), every control-plane write
acknowledged during the faults (a CreateModel per fault) reads back afterwards, and service is back
within seconds of the last fault. The summary line prints these measured counts for the record.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.reliability.rig import (
    SlowClients,
    create_config,
    create_model,
    delete_endpoint,
    deploy,
    error_of,
    invoke,
    one_attempt,
    wait_status,
    worker_pids,
)
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

CLIENTS = 4
TIMEOUT_S = 5  # SAGEMAKER_MODEL_SERVER_TIMEOUT of the endpoint
CHAOS_S = 12.0
ALLOWED = {"200", "424 ModelError", "503 ServiceUnavailable", "400 ThrottlingException"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("chaos") / "data", env={"MOORAGE_DRAIN_GRACE": "5"})
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    wrong_answers: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    slowest: float = 0.0
    versions: list[str] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)  # when each success arrived
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: str, latency: float, detail: str = "") -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.slowest = max(self.slowest, latency)
            if outcome not in ALLOWED:
                self.unexpected.append(f"{outcome}: {detail}")
            if outcome == "200":
                self.successes.append(time.monotonic())


def traffic(server: RunningServer, endpoint: str, tally: Tally, stop: threading.Event) -> None:
    runtime = one_attempt(server, read_timeout=TIMEOUT_S + 10)
    while not stop.is_set():
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        try:
            answer = invoke(runtime, endpoint, action="sleep", seconds=0.02, id=request_id)
        except ClientError as exc:
            status, code = error_of(exc)
            detail = exc.response.get("OriginalMessage", exc.response["Error"]["Message"])
            if code == "ModelError" and "killed by signal SIGKILL" not in detail:
                code = "ModelError not caused by a kill"
            tally.record(f"{status} {code}", time.monotonic() - started, detail)
            continue
        except Exception as exc:  # a timeout or a dropped connection: counted, and fails the test
            tally.record(type(exc).__name__, time.monotonic() - started, repr(exc))
            continue
        tally.record("200", time.monotonic() - started)
        if answer["echo"].get("id") != request_id:
            tally.wrong_answers.append(f"sent {request_id}, got {answer['echo']}")
        with tally.lock:
            tally.versions.append(answer["version"])


def test_service_survives_worker_kills_an_update_and_slowloris(server: RunningServer, artifacts: Any) -> None:
    rng = random.Random(20261125)
    sm = server.client("sagemaker")
    url = f"file://{artifacts.fault_tar}"
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(TIMEOUT_S), "MODEL_VERSION": "1"}
    endpoint = deploy(sm, url, env=env, instances=2)
    new_config = create_config(sm, create_model(sm, url, env={**env, "MODEL_VERSION": "2"}), instances=2)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    tally, stop = Tally(), threading.Event()
    kills = 0
    acknowledged: list[str] = []  # CreateModel calls answered 200 while the faults ran

    with SlowClients(
        host, int(port), count=30, interval=0.5, path=f"/endpoints/{endpoint}/invocations"
    ) as slow:
        threads = [
            threading.Thread(target=traffic, args=(server, endpoint, tally, stop)) for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        updated_at = started + CHAOS_S / 3
        updating = False
        while time.monotonic() - started < CHAOS_S:
            time.sleep(rng.uniform(0.4, 1.2))
            if not updating and time.monotonic() >= updated_at:
                sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)  # acknowledged
                updating = True
            acknowledged.append(create_model(sm, url, env={"WRITTEN_DURING": "chaos"}))
            pids = sorted(worker_pids(server))
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        last_fault = time.monotonic()
        held = len(slow.clients)

        # Recovery: twenty successes in a row, counted from the last fault.
        deadline = last_fault + 30
        while True:
            with tally.lock:
                recent = [t for t in tally.successes if t > last_fault]
            if len(recent) >= 20:
                break
            assert time.monotonic() < deadline, f"no recovery within 30 s of the last fault: {tally.outcomes}"
            time.sleep(0.05)
        recovered_s = recent[0] - last_fault
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT_S + 15)

    described = wait_status(sm, endpoint, {"InService"}, timeout=60)
    if described.get("FailureReason"):  # a kill hit a new worker while it loaded: the update failed cleanly
        assert "killed by signal SIGKILL" in described["FailureReason"], described["FailureReason"]
        assert described["EndpointConfigName"] != new_config
        expected_version, update = "1", "failed cleanly (a new worker was killed while loading)"
    else:
        assert described["EndpointConfigName"] == new_config
        expected_version, update = "2", "applied"
    runtime = one_attempt(server)
    final = {invoke(runtime, endpoint, action="echo")["version"] for _ in range(10)}
    lost = [name for name in acknowledged if not _reads_back(sm, name)]

    sent = sum(tally.outcomes.values())
    print(
        f"\nchaos: {sent} requests sent by {CLIENTS} clients in {CHAOS_S:.0f} s of faults; faults injected: "
        f"{kills} worker SIGKILLs, 1 UpdateEndpoint ({update}), {held} slowloris connections; outcomes: "
        f"{dict(tally.outcomes)}; wrong answers: {len(tally.wrong_answers)}; "
        f"acknowledged writes: {len(acknowledged)}, lost: {len(lost)}; "
        f"answers by model version: {dict(Counter(tally.versions))}; "
        f"slowest request {tally.slowest:.2f} s; recovered {recovered_s:.2f} s after the last fault"
    )
    assert all(not thread.is_alive() for thread in threads)
    assert tally.unexpected == []
    assert tally.wrong_answers == []
    assert kills >= 5
    assert len(acknowledged) >= 5 and lost == []
    assert set(tally.versions) <= {"1", "2"} and "1" in tally.versions
    if expected_version == "2":
        assert "2" in tally.versions  # the update was visible to the traffic, not only to DescribeEndpoint
    assert tally.outcomes["424 ModelError"] <= kills  # a kill fails at most the one request its worker held
    assert tally.slowest < TIMEOUT_S + 10  # nothing hung past its timeout
    assert recovered_s < 15
    assert final == {expected_version}
    delete_endpoint(sm, endpoint)


def _reads_back(sm: Any, name: str) -> bool:
    """DescribeModel finds the model with the environment it was created with."""
    try:
        described = sm.describe_model(ModelName=name)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ValidationException", exc.response
        return False
    return bool(described["PrimaryContainer"]["Environment"].get("WRITTEN_DURING") == "chaos")
