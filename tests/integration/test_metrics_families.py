"""`GET /metrics` counts what the clients saw: every family the README names, with exact values.

README ("Use it"): Prometheus text under SageMaker's CloudWatch names `Invocations`,
`Invocation4XXErrors`, `Invocation5XXErrors`, `ModelLatency`, `OverheadLatency`. One endpoint (one
worker, an admission queue of 1) gets a known mix: successes, handler errors the model answered with a
500 and with a 415 (both a 424 ModelError to the client), and a ThrottlingException (400). As in
CloudWatch, a ModelError counts under the model's own status (OriginalStatusCode). The client tallies
each outcome; the counters must equal that tally, and the latency histograms must count exactly the
requests the model answered.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.reliability.rig import delete_endpoint, deploy, error_of, invoke, one_attempt, wait_file
from support.servers import RunningServer, http_get, start_server, wait_until_gone

pytestmark = pytest.mark.slow

FAMILIES = (
    "sagemaker_Invocations_total",
    "sagemaker_Invocation4XXErrors_total",
    "sagemaker_Invocation5XXErrors_total",
    "sagemaker_ModelLatency_microseconds",
    "sagemaker_OverheadLatency_microseconds",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("metrics") / "data", env={"MOORAGE_MAX_QUEUE": "1"})
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


class Tally:
    """Each InvokeEndpoint's outcome as the client received it, under the status CloudWatch counts."""

    def __init__(self, runtime: Any, endpoint: str) -> None:
        self.runtime, self.endpoint = runtime, endpoint
        self.statuses: Counter[int] = Counter()  # the model's status for a ModelError, else the HTTP one
        self.model_errors = 0
        self.lock = threading.Lock()

    def send(self, **request: Any) -> int:
        try:
            invoke(self.runtime, self.endpoint, **request)
            status = 200
        except ClientError as exc:
            status, code = error_of(exc)
            if code == "ModelError":
                status = exc.response["OriginalStatusCode"]
                with self.lock:
                    self.model_errors += 1
        with self.lock:
            self.statuses[status] += 1
        return status


def scrape(server: RunningServer, endpoint: str) -> dict[str, float]:
    """This endpoint's samples: `name{le}` → value (labels other than `le` dropped)."""
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    labels = f'EndpointName="{endpoint}",VariantName="AllTraffic"'
    samples: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or labels not in line:
            continue
        name_and_labels, value = line.rsplit(" ", 1)
        name = name_and_labels.split("{", 1)[0]
        le = name_and_labels.split('le="', 1)[1].rstrip('"}') if 'le="' in name_and_labels else ""
        samples[f"{name}{{{le}}}" if le else name] = float(value)
    return samples


def test_every_family_counts_what_the_clients_received(
    server: RunningServer, artifacts: Any, tmp_path: Path
) -> None:
    sm = server.client("sagemaker")
    endpoint = deploy(sm, f"file://{artifacts.fault_tar}")
    tally = Tally(one_attempt(server), endpoint)

    assert [tally.send(action="sleep", seconds=0.2) for _ in range(3)] == [200] * 3
    assert [tally.send(action="raise", where="predict_fn") for _ in range(2)] == [500] * 2
    assert tally.send(action="status", status=415, message="send a JPEG") == 415

    # The one worker blocks; of two more requests one waits in the queue (of 1), the other is throttled.
    started, release = tmp_path / "started", tmp_path / "release"
    blocked = threading.Thread(
        target=tally.send, kwargs={"action": "block", "started": str(started), "release": str(release)}
    )
    blocked.start()
    wait_file(started)
    outcomes: list[int] = []
    pair = [threading.Thread(target=lambda: outcomes.append(tally.send(action="echo"))) for _ in range(2)]
    for thread in pair:
        thread.start()
    while not outcomes:  # whichever arrived second is throttled at once
        pair[0].join(0.05)
    assert outcomes == [400]
    release.touch()
    for thread in (blocked, *pair):
        thread.join(30)
        assert not thread.is_alive()
    assert sorted(outcomes) == [200, 400]

    samples = scrape(server, endpoint)
    for family in FAMILIES:
        assert any(key.startswith(family) for key in samples), f"{family} missing from /metrics"
    assert tally.statuses == {200: 5, 500: 2, 415: 1, 400: 1}
    assert samples["sagemaker_Invocations_total"] == 9
    assert samples["sagemaker_Invocation4XXErrors_total"] == 2  # the 415 from the model, the throttled 400
    assert samples["sagemaker_Invocation5XXErrors_total"] == 2  # the model's two 500s
    assert samples["sagemaker_InvocationModelErrors_total"] == tally.model_errors == 3
    answered_by_model = 8  # all but the throttled request, which no worker saw
    for histogram in ("sagemaker_ModelLatency_microseconds", "sagemaker_OverheadLatency_microseconds"):
        assert samples[f"{histogram}_count"] == answered_by_model
        assert samples[f"{histogram}_bucket{{+Inf}}"] == answered_by_model
    # The three 0.2 s sleeps took at least 200,000 µs of the model's time each: none is under 100 ms.
    model = "sagemaker_ModelLatency_microseconds"
    assert samples[f"{model}_bucket{{100000}}"] <= answered_by_model - 3
    assert samples[f"{model}_sum"] >= 3 * 200_000
    delete_endpoint(sm, endpoint)
