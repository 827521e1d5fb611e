"""Matrix row 7: eight clients racing CreateEndpoint, UpdateEndpoint and DeleteEndpoint on one name.

Exactly one create wins and the others hear SageMaker's "already existing"; while an endpoint is in
progress (Creating, Updating) every update and delete is refused, so a delete during Creating is
rejected, never half-applied (moorage's choice, documented in control/lifecycle.py); once it serves,
one update or the deletes win, never both. A poller checks every DescribeEndpoint it sees against
the lifecycle, and after each round no worker process and no endpoint is left over. Model loads
are slowed (FAULT_LOAD=sleep) so that each in-progress window outlasts the race.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.reliability.rig import (
    create_config,
    create_model,
    unique,
    wait_gone,
    wait_status,
    worker_pids,
)
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

THREADS = 8
LOAD_SECONDS = "2.5"  # how long model_fn takes: the window in which the racers must all arrive
ARN = "arn:aws:sagemaker:us-east-1:000000000000:endpoint/{}"
# Status → the statuses DescribeEndpoint may show next ("gone": the endpoint no longer exists).
# InService → gone is a skipped Deleting, not a forbidden jump: with nothing in flight the instances
# stop in a few milliseconds, which can fall between two polls (seen on a loaded 2-core machine).
NEXT = {
    "Creating": {"Creating", "InService"},
    "InService": {"InService", "Updating", "Deleting", "gone"},
    "Updating": {"Updating", "InService"},
    "Deleting": {"Deleting", "gone"},
    "gone": {"gone"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("races") / "data", env={"MOORAGE_DRAIN_GRACE": "5"})
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def race(calls: list[Callable[[], Any]]) -> list[tuple[str, str]]:
    """Run the calls at the same moment, one per thread; each outcome is ("ok", "") or (code, message)."""
    barrier = threading.Barrier(len(calls))

    def one(call: Callable[[], Any]) -> tuple[str, str]:
        barrier.wait()
        try:
            call()
        except ClientError as exc:
            return exc.response["Error"]["Code"], exc.response["Error"]["Message"]
        return "ok", ""

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


class Poller:
    """DescribeEndpoint in a loop; every answer must be a state the lifecycle allows after the last."""

    def __init__(self, sm: Any, name: str) -> None:
        self.sm = sm
        self.name = name
        self.seen: list[str] = []
        self.problems: list[str] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller")

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                described = self.sm.describe_endpoint(EndpointName=self.name)
                status = described["EndpointStatus"]
                self._check(described)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ValidationException":
                    self.problems.append(repr(exc))
                status = "gone" if self.seen else "not yet"
            if status == "not yet":
                continue
            if self.seen and status not in NEXT[self.seen[-1]]:
                self.problems.append(f"{self.seen[-1]} → {status}")
            if not self.seen or self.seen[-1] != status:
                with self._changed:
                    self.seen.append(status)
                    self._changed.notify_all()
            time.sleep(0.02)

    def wait_seen(self, status: str, timeout: float = 60.0) -> None:
        """Until the poller itself has seen `status`: the test's own wait saw it first, and the next
        write could end that state before the poller's next look, leaving a gap that is no
        transition at all (say Creating → Deleting when InService came between two polls)."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self.seen) and self.seen[-1] == status, timeout):
                self.problems.append(f"the poller never saw {status} (it saw {self.seen})")

    def _check(self, described: dict[str, Any]) -> None:
        status = described["EndpointStatus"]
        (variant,) = described["ProductionVariants"]
        if not 0 <= variant["CurrentInstanceCount"] <= variant["DesiredInstanceCount"]:
            self.problems.append(f"{status} with counts {variant}")
        if status == "InService" and variant["CurrentInstanceCount"] != 1:
            self.problems.append(f"InService with {variant['CurrentInstanceCount']} instances")
        if status == "Updating" and "PendingDeploymentSummary" not in described:
            self.problems.append("Updating without a PendingDeploymentSummary")
        if status == "Creating" and described.get("FailureReason"):
            self.problems.append(f"Creating with a FailureReason: {described['FailureReason']}")
        if status == "Failed":
            self.problems.append(f"Failed: {described.get('FailureReason')}")


@pytest.mark.parametrize("round_", range(3))
def test_racing_writers_leave_one_winner_and_no_orphans(
    server: RunningServer, artifacts: Any, round_: int
) -> None:
    sm = server.client("sagemaker")
    clients = [server.client("sagemaker") for _ in range(THREADS)]
    slow = {"FAULT_LOAD": "sleep", "FAULT_LOAD_SECONDS": LOAD_SECONDS}
    url = f"file://{artifacts.fault_tar}"

    model = unique("model")
    outcomes = race([functools.partial(create_model, c, url, env=slow, name=model) for c in clients])
    assert Counter(code for code, _ in outcomes) == {"ok": 1, "ValidationException": THREADS - 1}
    first = create_config(sm, model)
    second = create_config(sm, create_model(sm, url, env={**slow, "MODEL_VERSION": "2"}))
    name = unique("race")
    arn = ARN.format(name)

    with Poller(sm, name) as poller:
        outcomes = race(
            [
                functools.partial(c.create_endpoint, EndpointName=name, EndpointConfigName=first)
                for c in clients
            ]
        )
        assert sorted(outcomes) == [
            ("ValidationException", f'Cannot create already existing endpoint "{arn}".')
        ] * (THREADS - 1) + [("ok", "")]

        # Creating: no update and no delete gets in (the delete is refused, not queued).
        outcomes = race(
            [
                functools.partial(c.update_endpoint, EndpointName=name, EndpointConfigName=second)
                for c in clients[:4]
            ]
            + [functools.partial(c.delete_endpoint, EndpointName=name) for c in clients[4:]]
        )
        in_progress = ("ValidationException", f'Cannot update in-progress endpoint "{arn}".')
        assert outcomes == [in_progress] * THREADS

        wait_status(sm, name, {"InService"})
        poller.wait_seen("InService")
        outcomes = race(
            [
                functools.partial(c.update_endpoint, EndpointName=name, EndpointConfigName=second)
                for c in clients[:4]
            ]
            + [functools.partial(c.delete_endpoint, EndpointName=name) for c in clients[4:]]
        )
        updates, deletes = Counter(outcomes[:4]), Counter(outcomes[4:])
        being_deleted = (
            "ValidationException",
            f'Cannot update endpoint "{arn}" because it is being deleted.',
        )
        if updates[("ok", "")]:
            # The update won: it is in progress, so every other write was refused.
            assert updates == {("ok", ""): 1, in_progress: 3}, outcomes
            assert deletes == {in_progress: 4}, outcomes
            assert wait_status(sm, name, {"InService"})["EndpointConfigName"] == second
            poller.wait_seen("InService")
            sm.delete_endpoint(EndpointName=name)
        else:
            # A delete won: the updates were refused; the other deletes are accepted (it is Deleting).
            assert set(updates) <= {being_deleted, in_progress}, outcomes
            assert deletes[("ok", "")] >= 1, outcomes
            assert set(deletes) <= {("ok", ""), in_progress}, outcomes
        wait_gone(sm, name)
        deadline = time.monotonic() + 10
        while poller.seen[-1] != "gone" and time.monotonic() < deadline:
            time.sleep(0.05)

    assert poller.problems == []
    assert poller.seen[0] == "Creating" and poller.seen[-1] == "gone", poller.seen
    assert "InService" in poller.seen
    assert sm.list_endpoints()["Endpoints"] == []
    deadline = time.monotonic() + 15
    while worker_pids(server):  # the deleted endpoint's workers stop within the drain grace
        assert time.monotonic() < deadline, f"orphan workers: {worker_pids(server)}"
        time.sleep(0.1)
