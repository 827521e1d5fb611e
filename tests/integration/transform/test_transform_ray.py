"""A transform job on the Ray backend: its requests are spread over the cluster's nodes, and losing a
node mid-job loses only the requests that were in flight there, which are redone on the node left.

A 2-node `ray.cluster_utils` cluster on this machine (tests/support/ray_cluster.py); the job's two
ml.c6i.large instances (2 CPUs each) land one per node. Each of the first two objects starts with a
record that waits at the test's gate, so both instances hold a request when the side node is removed.
(A request answered behind one still waiting keeps its slot until those before it are written, so an
object with a waiting record and more records after it could take both slots: hence one-record objects.)
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from support.backends import NO_RAY, RAY_INSTALLED
from support.ray_cluster import TWO_NODES, RayCluster, module_fixtures
from support.servers import RunningServer

from .conftest import Gate, create_model, keys, read, stage, start_staged_job, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.skipif(not RAY_INSTALLED, reason=NO_RAY)]

# Object → (its lines, the output the score handler gives them one record at a time).
# The first two are one record each, so each holds one of the job's two request slots (MaxConcurrentTransforms
# 1 on each of 2 instances) while it waits at the gate, and they end up waiting at once.
INPUTS = {
    "in/a.csv": ("block,1\n", "1,1\n"),
    "in/b.csv": ("block,2\n", "2,1\n"),
    "in/c.csv": ("3\n4\n", "3,1\n4,1\n"),
    "in/d.csv": ("5\n6,1\n7\n", "5,1\n7,1\n7,1\n"),
}


cluster, server = module_fixtures(TWO_NODES, "ray-transform")  # the fixtures the test below takes


def test_a_node_lost_mid_job_redoes_only_its_requests(
    server: RunningServer, cluster: RayCluster, score_tar: Path, gate: Gate
) -> None:
    sm, s3 = server.client("sagemaker"), server.client("s3")
    bucket = stage(s3, {key: lines for key, (lines, _) in INPUTS.items()})
    model = create_model(sm, score_tar, {"GATE_URL": gate.url})
    resources = {"InstanceType": "ml.c6i.large", "InstanceCount": 2}
    name = start_staged_job(
        sm, model, bucket, strategy="SingleRecord", MaxConcurrentTransforms=1, resources=resources
    )
    for _ in range(2):  # one request waits on each instance
        assert gate.arrived.acquire(timeout=120), (
            sm.describe_transform_job(TransformJobName=name),
            server.log()[-3000:],
        )
    assert {cluster.node_of(pid) for pid in gate.pids} == {"head", "side"}, "spread over both nodes"

    (side_pid,) = [pid for pid in gate.pids if cluster.node_of(pid) == "side"]
    side_worker = psutil.Process(side_pid)
    cluster.remove("side")
    side_worker.wait(60)  # its request can no longer be answered when the gate opens
    gate.opened.set()
    described = wait_for_job(sm, name)

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert keys(s3, bucket, "out/") == sorted(f"out/{key[3:]}.out" for key in INPUTS)
    for key, (_, output) in INPUTS.items():
        assert read(s3, bucket, f"out/{key[3:]}.out") == output
    # The record that was on the lost node was redone (it reached the gate again), by another worker;
    # the head's record was not (it was answered once).
    assert len(gate.pids) == 3 and gate.pids[2] != side_pid
