"""Multi-model endpoints on `--backend ray`, on a two-node cluster on loopback (support/ray_cluster.py):
boto3's TargetModel calls reach an actor that holds that model (one Ray actor per loaded model, placed
anywhere in the cluster), and a lost node takes only its own models' copies: their next calls load them
again on the node that remains.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from support.backends import NO_RAY, RAY_INSTALLED
from support.hosting import unique
from support.multi_model import archive, call, create_mme
from support.ray_cluster import TWO_NODES, RayCluster, module_fixtures
from support.servers import RunningServer, http_get

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.skipif(not RAY_INSTALLED, reason=NO_RAY)]

cluster, server = module_fixtures(TWO_NODES, "mme-ray")  # the fixtures the tests below take
MODELS = {"a": ("sum", 8), "b": ("max", 5), "c": ("negate", [-1, -5, -2]), "d": ("count", 3)}


@pytest.fixture(scope="module")
def endpoint(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A multi-model endpoint (one ml.m5.large instance) on a prefix of four models."""
    root = tmp_path_factory.mktemp("mme-ray-models")
    s3 = server.client("s3")
    bucket = unique("mme-ray")
    s3.create_bucket(Bucket=bucket)
    for name, (operation, _) in MODELS.items():
        s3.upload_file(str(archive(root, name, operation=operation)), bucket, f"models/{name}.tar.gz")
    yield create_mme(server.client("sagemaker"), f"s3://{bucket}/models/")


def answers(runtime: Any, endpoint: str, name: str) -> dict[str, Any]:
    answer = call(runtime, endpoint, f"{name}.tar.gz", x=[1, 5, 2])
    assert answer["model"] == name and answer["answer"] == MODELS[name][1], answer
    return answer


def answers_after_a_loss(runtime: Any, endpoint: str, name: str) -> dict[str, Any]:
    """A call whose model's actor was on the lost node fails once, as for any lost worker (424, saying
    the actor died); that unloads it, and the next call loads it again on a node that remains."""
    try:
        return answers(runtime, endpoint, name)
    except ClientError as exc:
        error = exc.response["Error"]
        assert error["Code"] == "ModelError" and "actor" in error["Message"] and "died" in error["Message"], (
            error
        )
    return answers(runtime, endpoint, name)


def test_each_model_answers_from_an_actor_that_holds_it(
    server: RunningServer, cluster: RayCluster, endpoint: str, tmp_path: Path
) -> None:
    runtime = server.client("sagemaker-runtime")
    first = {name: answers(runtime, endpoint, name) for name in MODELS}
    again = {name: answers(runtime, endpoint, name) for name in MODELS}
    # Every model is its own actor, and a second call goes to the one that loaded it (no reload).
    assert len({answer["pid"] for answer in first.values()}) == len(MODELS)
    assert {name: a["pid"] for name, a in again.items()} == {name: a["pid"] for name, a in first.items()}
    nodes = {name: cluster.node_of(answer["pid"]) for name, answer in first.items()}
    assert set(nodes.values()) == {"head", "side"}, nodes  # Ray spread the models' actors

    # Each actor measured its own memory on its node (its files are a few hundred bytes; a Ray worker
    # process holds megabytes of its own), and that is what the instance's budget counts.
    metrics = http_get(server.url + "/metrics")[1].decode()
    sizes = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("moorage_mme_model_bytes{") and f'EndpointName="{endpoint}"' in line
    ]
    assert len(sizes) == len(MODELS) and min(sizes) > 1024 * 1024, sizes

    sm = server.client("sagemaker")
    described = sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]
    assert described["CurrentInstanceCount"] == 1  # one instance, its models on both nodes


def test_a_lost_node_takes_only_its_models_and_they_load_again_elsewhere(
    server: RunningServer, cluster: RayCluster, endpoint: str
) -> None:
    runtime = server.client("sagemaker-runtime")
    before = {name: answers(runtime, endpoint, name)["pid"] for name in MODELS}
    on_side = {name for name, pid in before.items() if cluster.node_of(pid) == "side"}
    on_head = set(MODELS) - on_side
    assert on_side and on_head, before
    side_actors = [psutil.Process(before[name]) for name in on_side]
    cluster.remove("side")
    # The node's actor processes end once they see their raylet gone (as the machine's would with it).
    _, alive = psutil.wait_procs(side_actors, timeout=60)
    assert not alive, alive
    after = {name: answers_after_a_loss(runtime, endpoint, name)["pid"] for name in MODELS}
    assert {name: after[name] for name in on_head} == {name: before[name] for name in on_head}
    assert all(after[name] != before[name] for name in on_side)
    assert {cluster.node_of(pid) for pid in after.values()} == {"head"}
