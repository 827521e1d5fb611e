"""moorage joins a multi-node Ray cluster (--ray-address), spreads an endpoint over its nodes and
survives losing one: requests in flight fail as SageMaker would (never hang), DescribeEndpoint shows
the missing instance, and the replacement lands on the node that remains.

The cluster runs on this machine (two Ray nodes on loopback, `tests/support/ray_cluster.py`); removing
a node kills its raylet and every worker on it, as losing its machine would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from support.backends import NO_RAY, RAY_INSTALLED
from support.hosting import answer, delete, deploy, pack_fault_handler, variant_counts, wait_for_counts
from support.ray_cluster import TWO_NODES, RayCluster, module_fixtures
from support.servers import RunningServer

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.skipif(not RAY_INSTALLED, reason=NO_RAY)]


@pytest.fixture(scope="module")
def fault_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_fault_handler(tmp_path_factory.mktemp("ray-artifacts"))


cluster, server = module_fixtures(TWO_NODES, "ray-join")  # the fixtures the tests below take


def nodes_serving(runtime: Any, name: str, cluster: RayCluster, requests: int = 12) -> Counter[str | None]:
    return Counter(cluster.node_of(answer(runtime, name, action="echo")["pid"]) for _ in range(requests))


def test_an_endpoint_survives_losing_a_node(
    server: RunningServer, cluster: RayCluster, fault_tar: Path
) -> None:
    sm, runtime = server.client("sagemaker"), server.client("sagemaker-runtime")
    name = deploy(sm, fault_tar, instances=2, instance_type="ml.c5.large")
    assert variant_counts(sm, name) == ("InService", 2, 2)
    assert set(nodes_serving(runtime, name, cluster)) == {"head", "side"}, "the instances are spread"

    outcomes: list[tuple[str, float]] = []
    stop = threading.Event()

    def load() -> None:
        client = server.client("sagemaker-runtime")
        while not stop.is_set():
            started = time.monotonic()
            try:
                answer(client, name, action="sleep", seconds=0.02)
                outcome = "ok"
            except ClientError as exc:
                outcome = exc.response["Error"]["Code"]
            except ReadTimeoutError:
                outcome = "hang"
            outcomes.append((outcome, time.monotonic() - started))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        cluster.remove("side")
        # Degraded first (the lost instance stops counting), then whole again on the head node.
        wait_for_counts(sm, name, current=1, desired=2, timeout=60)
        wait_for_counts(sm, name, current=2, desired=2, timeout=120)
        before_recovery = len(outcomes)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    kinds = Counter(outcome for outcome, _ in outcomes)
    assert set(kinds) <= {"ok", "ModelError", "ServiceUnavailable"}, kinds
    assert max(duration for _, duration in outcomes) < 30, "no request waited for the lost node"
    assert all(outcome == "ok" for outcome, _ in outcomes[before_recovery:]), kinds
    assert set(nodes_serving(runtime, name, cluster)) == {"head"}
    assert variant_counts(sm, name) == ("InService", 2, 2)
    delete(sm, name)


def test_an_instance_type_no_node_can_hold_fails_at_once(server: RunningServer, fault_tar: Path) -> None:
    sm = server.client("sagemaker")
    started = time.monotonic()
    name = deploy(sm, fault_tar, instance_type="ml.g5.xlarge", wait=False)
    deadline = time.monotonic() + 60
    while (described := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert described["EndpointStatus"] == "Failed"
    assert "GPU" in described["FailureReason"], described["FailureReason"]
    assert time.monotonic() - started < 30, "refused before anything waited for a place"
    delete(sm, name)
